"""What stable-audio-tools 0.0.19's training code needs to run under the torch and Lightning we pin.

Two traps, each fixed without editing installed files or forking upstream's training wrapper:

* ``InverseLR`` (the scheduler of Stable Audio Open 1.0's ``training`` section) ends its constructor
  with ``super().__init__(optimizer, last_epoch, verbose)``; torch's ``LRScheduler`` no longer takes
  ``verbose`` and raises ``TypeError``. ``use_torch_compatible_inverse_lr`` puts a subclass with
  upstream's schedule (its ``get_lr``) and the current base constructor where
  ``create_scheduler_from_config`` looks the name up at call time: a global of
  ``stable_audio_tools.training.utils``.
* The T5 prompt encoder is kept in float16 outside the module tree, and the conditioner's
  ``with autocast(fp16) and set_grad_enabled(...)`` enters only the second context. Lightning's
  ``bf16-mixed`` autocast then reached the float16 encoder and overflowed ("value cannot be
  converted to type c10::Half without overflow", H100, docs/BENCHMARKS.md); any mixed precision
  would also compute it unlike generation, which runs it in float16 with no autocast.
  ``encode_text_as_in_generation`` runs it outside autocast, in its own float16: the DiT trains on
  the very prompt embeddings ``generate.py`` feeds it, under every precision, and the demos use the
  encoder exactly as loaded (a bfloat16 copy of it rounds about 87% of its weights, in the tiny
  models' T5, enough to move a demo by 1.8e-4).
"""

from __future__ import annotations

from typing import Any

import torch


def use_torch_compatible_inverse_lr() -> None:
    """Make ``create_scheduler_from_config`` build ``InverseLR`` without the ``verbose`` argument (idempotent)."""
    from stable_audio_tools.training import utils

    if getattr(utils.InverseLR, "torch_compatible", False):
        return

    class InverseLR(utils.InverseLR):
        torch_compatible = True

        def __init__(self, optimizer, inv_gamma=1.0, power=1.0, warmup=0.0, final_lr=0.0, last_epoch=-1):
            if not 0.0 <= warmup < 1:
                raise ValueError("Invalid value for warmup")
            self.inv_gamma, self.power, self.warmup, self.final_lr = inv_gamma, power, warmup, final_lr
            torch.optim.lr_scheduler.LRScheduler.__init__(self, optimizer, last_epoch)

    utils.InverseLR = InverseLR


class WithoutAutocast(torch.nn.Module):
    """A frozen text encoder run in its own dtype outside any autocast, as generation runs it.

    It stands where the conditioner keeps its encoder (outside the module tree: never trained,
    never in a checkpoint) and takes the call the conditioner makes.
    """

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        with torch.autocast(input_ids.device.type, enabled=False):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask)


def encode_text_as_in_generation(model: torch.nn.Module) -> None:
    """Run the conditioners' half-precision text encoders (T5's) outside Lightning's autocast (idempotent)."""
    for conditioner in model.conditioner.conditioners.values():
        encoder = conditioner.__dict__.get("model")
        if (
            isinstance(encoder, torch.nn.Module) and not isinstance(encoder, WithoutAutocast)
            and next(encoder.parameters()).dtype in (torch.float16, torch.bfloat16)
        ):  # fmt: skip
            conditioner.__dict__["model"] = WithoutAutocast(encoder)
