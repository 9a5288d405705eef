"""What fine-tuning Stable Audio Open 1.0 needs on a GPU: peak memory and step time per precision and batch.

    # on a CUDA machine (see docs/BENCHMARKS.md for the device command and its wheels)
    PYTHONPATH=. python bench/finetune_memory.py --device cuda --output finetune_memory.json
    # the same code path on the CPU with the tiny model, 2 steps, batch 1 (a smoke run)
    PYTHONPATH=. .venv/bin/python bench/finetune_memory.py --tiny

It builds SAO 1.0's real architecture with random weights (``bench/sao_models.py``: DiT 1536 wide,
24 layers; VAE 128 channels; the T5 conditioner gets a t5-base-sized encoder with random weights, see
``use_t5_base_size``), wraps it with stable-audio-tools' own ``create_training_wrapper_from_config``
from the config's ``training`` section (AdamW, InverseLR, EMA), and runs a few optimisation steps
through PyTorch Lightning's ``Trainer`` on synthetic batches shaped like stable-audio-tools'
dataloader output (its ``collation_fn``): full 47.55 s stereo windows at 44.1 kHz, or with
``pre_encoded`` (the training section's switch) latents of 64 x 1024.

Per configuration (precision, batch, audio or latents) it records the peak of
``torch.cuda.max_memory_allocated`` (reset per configuration), the median step time after a warm-up
step (from the start of ``training_step`` to the end of the optimiser and EMA update; data loading
excluded), the optimiser steps actually applied (fp16's GradScaler skips steps whose gradients
overflow), and which parameters the wrapper trains. Memory and speed do not depend on the weights'
values, so random weights measure what the real checkpoint needs. An OOM is recorded, not raised.

stable-audio-tools' training modules import wandb, auraloss, ema-pytorch, descript-audiotools and
webdataset at import time; a GPU image without them needs them as wheels (the list that worked on
the H100 image is in docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import statistics
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.sao_models import full_size_config, use_offline_tiny_hub
from stable_audio_tools_ext.finetune.upstream import encode_text_as_in_generation, use_torch_compatible_inverse_lr

GIB = 1024**3
SAMPLE_RATE = 44100
LATENT_CHANNELS = 64
DOWNSAMPLING = 2048
FULL_WINDOW = 2097152  # SAO 1.0's sample_size: 47.55 s, 1024 latent frames
TINY_WINDOW = 131072  # 64 latent frames: a CPU step in well under a second
PROMPT = "128 BPM tech house drum loop with a deep kick"
# t5-base's encoder (what SAO 1.0's conditioner loads): the tiny cache's T5 has one layer and a small vocab.
T5_BASE = {"vocab_size": 32128, "d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_heads": 12}


@dataclass
class Outcome:
    """One configuration's measurement (``status`` is ``ok``, ``OOM``, or why it did not run)."""

    precision: str
    batch_size: int
    inputs: str  # "audio" or "latents"
    status: str = "not run"
    peak_allocated_gib: float | None = None
    peak_reserved_gib: float | None = None
    allocated_at_start_gib: float | None = None
    optimizer_state_gib: float | None = None
    median_step_s: float | None = None
    step_times_s: list[float] = field(default_factory=list)
    optimizer_steps_applied: int | None = None
    error: str | None = None


def model_config(tiny: bool) -> dict:
    """SAO 1.0's config: the tiny widths (``--tiny``, short window) or the published ones (full window)."""
    from stable_audio_tools_ext.model.tiny import tiny_model_config

    if tiny:
        return tiny_model_config(TINY_WINDOW)
    return full_size_config(tiny_model_config(FULL_WINDOW))


def use_t5_base_size(model) -> None:
    """Give the prompt conditioner an encoder of t5-base's size (random weights), frozen in fp16.

    The conditioner loads ``t5-base`` from the offline cache in its constructor, and the cache holds a
    one-layer T5; t5-base's 12 layers are what the real model runs on every step. The encoder is
    built and stored exactly as ``T5Conditioner.__init__`` stores the one it loads (no grad, eval,
    fp16, outside the registered modules).
    """
    import torch
    from transformers import T5Config, T5EncoderModel

    conditioner = model.conditioner.conditioners["prompt"]
    encoder = T5EncoderModel(T5Config(**T5_BASE)).train(False).requires_grad_(False).to(torch.float16)
    conditioner.__dict__["model"] = encoder


def count(parameters, trainable: bool | None = None) -> int:
    """Number of elements of ``parameters`` (only those with ``requires_grad == trainable`` if given)."""
    return sum(p.numel() for p in parameters if trainable is None or p.requires_grad == trainable)


def parameter_report(wrapper) -> dict[str, int]:
    """What the training wrapper holds and trains, by part (counts of parameters).

    The optimiser is built over all of ``wrapper.diffusion.parameters()``; frozen ones get no
    gradient and so no optimiser state, which is what the trainable counts predict and
    ``Outcome.optimizer_state_gib`` confirms. The T5 encoder is not a registered module.
    """
    diffusion = wrapper.diffusion
    t5 = diffusion.conditioner.conditioners["prompt"].model
    report = {
        "dit_total": count(diffusion.model.parameters()),
        "dit_trainable": count(diffusion.model.parameters(), True),
        "conditioner_registered_total": count(diffusion.conditioner.parameters()),
        "conditioner_registered_trainable": count(diffusion.conditioner.parameters(), True),
        "t5_encoder_total": count(t5.parameters()),
        "t5_encoder_trainable": count(t5.parameters(), True),
        "vae_total": count(diffusion.pretransform.parameters()),
        "vae_trainable": count(diffusion.pretransform.parameters(), True),
        "optimizer_covers_trainable": count(diffusion.parameters(), True),
    }
    report["ema_total"] = count(wrapper.diffusion_ema.ema_model.parameters()) if wrapper.diffusion_ema else 0
    return report


class SyntheticClips:
    """A map-style dataset of what stable-audio-tools' datasets yield: ``(signal, metadata)``.

    ``signal`` is stereo audio ``(2, window)`` or, for pre-encoded training, latents
    ``(64, window / 2048)``. ``padding_mask`` is a one-element list holding the mask (what
    pre-encoded datasets already return; DESIGN.md's workaround for audio datasets).
    """

    def __init__(self, length: int, window: int, latents: bool):
        self.length, self.window, self.latents = length, window, latents

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        import torch

        generator = torch.Generator().manual_seed(index)
        frames = self.window // DOWNSAMPLING
        if self.latents:
            signal, mask_length = torch.randn(LATENT_CHANNELS, frames, generator=generator), frames
        else:
            signal, mask_length = 0.1 * torch.randn(2, self.window, generator=generator), self.window
        seconds = self.window / SAMPLE_RATE
        return signal, {
            "prompt": PROMPT,
            "seconds_start": 0,
            "seconds_total": int(seconds),
            "padding_mask": [torch.ones(mask_length)],
        }


def step_timer_callback(device: str, outcome: Outcome):
    """A Lightning callback recording each step's wall time and the memory held when training starts."""
    import pytorch_lightning as pl
    import torch

    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    class StepTimer(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            if device.startswith("cuda"):
                outcome.allocated_at_start_gib = torch.cuda.memory_allocated() / GIB

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            synchronize()
            self.started = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            synchronize()
            outcome.step_times_s.append(time.perf_counter() - self.started)

        def on_train_end(self, trainer, pl_module):
            optimizer = trainer.optimizers[0]
            states = list(optimizer.state.values())
            outcome.optimizer_state_gib = sum(
                t.numel() * t.element_size() for s in states for t in s.values() if torch.is_tensor(t) and t.ndim
            ) / GIB
            outcome.optimizer_steps_applied = max((int(s["step"]) for s in states if "step" in s), default=0)

    return StepTimer()


def train_steps(config: dict, model, outcome: Outcome, device: str, steps: int, window: int) -> dict[str, int]:
    """Run ``steps`` optimisation steps of the upstream training wrapper; fill ``outcome``; return its parameter report."""
    import pytorch_lightning as pl
    import torch
    from stable_audio_tools.data.dataset import collation_fn
    from stable_audio_tools.training.factory import create_training_wrapper_from_config

    config = copy.deepcopy(config)
    config["training"]["pre_encoded"] = outcome.inputs == "latents"
    encode_text_as_in_generation(model)
    wrapper = create_training_wrapper_from_config(config, model)
    report = parameter_report(wrapper)
    clips = SyntheticClips(steps * outcome.batch_size, window, latents=config["training"]["pre_encoded"])
    loader = torch.utils.data.DataLoader(clips, batch_size=outcome.batch_size, collate_fn=collation_fn)
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            accelerator="gpu" if device.startswith("cuda") else "cpu",
            devices=1,
            precision=outcome.precision,
            max_steps=steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=root,
            callbacks=[step_timer_callback(device, outcome)],
        )
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        trainer.fit(wrapper, loader)
    if device.startswith("cuda"):
        outcome.peak_allocated_gib = torch.cuda.max_memory_allocated() / GIB
        outcome.peak_reserved_gib = torch.cuda.max_memory_reserved() / GIB
    if len(outcome.step_times_s) > 1:
        outcome.median_step_s = statistics.median(outcome.step_times_s[1:])
    outcome.status = "ok"
    return report


def measure(config: dict, model, outcome: Outcome, device: str, steps: int, window: int) -> dict[str, int] | None:
    """``train_steps``, with an out-of-memory recorded as ``OOM`` (other failures as ``error``), the GPU emptied afterwards."""
    import torch

    report = None
    try:
        report = train_steps(config, model, outcome, device, steps, window)
    except torch.cuda.OutOfMemoryError as error:
        outcome.status = "OOM"
        outcome.error = str(error).splitlines()[0]
        if device.startswith("cuda"):
            outcome.peak_allocated_gib = torch.cuda.max_memory_allocated() / GIB
    except Exception as error:  # one broken configuration must not cost the others' device time
        traceback.print_exc()
        outcome.status, outcome.error = "error", f"{type(error).__name__}: {error}"
    # Lightning's teardown has moved the wrapper and optimiser state back to the CPU (after an
    # exception too); what is left on the GPU is the unregistered T5 encoder, which every step uses.
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return report


def plan(args: argparse.Namespace) -> list[Outcome]:
    """The configurations in the order of ``--precisions``, latents after audio (the run may stop at its time limit)."""
    outcomes = []
    for precision in dict.fromkeys(args.precisions + args.latent_precisions):
        if precision in args.precisions:
            outcomes += [Outcome(precision, batch, "audio") for batch in args.batch_sizes]
        if precision in args.latent_precisions:
            outcomes += [Outcome(precision, batch, "latents") for batch in args.latent_batch_sizes]
    return outcomes


def describe_machine(device: str) -> dict[str, Any]:
    """Versions and the device, as the benchmark table names them."""
    import pytorch_lightning as pl
    import stable_audio_tools
    import torch
    import transformers

    machine = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
        "transformers": transformers.__version__,
        "stable_audio_tools": getattr(stable_audio_tools, "__version__", "0.0.19"),
        "device": "CPU",
    }
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(0)
        machine.update(device=properties.name, cuda=torch.version.cuda, total_memory_gib=properties.total_memory / GIB)
    return machine


def table(outcomes: list[Outcome]) -> str:
    """The results as a Markdown table."""

    def gib(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    lines = [
        "| inputs | precision | batch | peak allocated GiB | peak reserved GiB | held at start GiB | optimizer state GiB | median step s | steps applied | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        step = "" if o.median_step_s is None else f"{o.median_step_s:.3f}"
        applied = "" if o.optimizer_steps_applied is None else f"{o.optimizer_steps_applied}/{len(o.step_times_s)}"
        lines.append(
            f"| {o.inputs} | {o.precision} | {o.batch_size} | {gib(o.peak_allocated_gib)} | {gib(o.peak_reserved_gib)} | "
            f"{gib(o.allocated_at_start_gib)} | {gib(o.optimizer_state_gib)} | {step} | {applied} | {o.status} |"
        )
    return "\n".join(lines)


def write_results(path: Path, machine: dict, parameters: dict | None, outcomes: list[Outcome]) -> None:
    """Write everything measured so far (after every configuration, so a cut-off run keeps its results)."""
    from stable_audio_tools_ext.output.atomic import atomic_write_text

    document = {"machine": machine, "parameters": parameters, "results": [asdict(o) for o in outcomes]}
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")


def run(args: argparse.Namespace) -> list[Outcome]:
    """Build the model once, then train each planned configuration on it; print and write the results."""
    import torch
    from stable_audio_tools.models.factory import create_model_from_config

    use_torch_compatible_inverse_lr()
    config = model_config(args.tiny)
    torch.manual_seed(0)
    model = create_model_from_config(config)
    if not args.tiny:
        use_t5_base_size(model)
    machine = describe_machine(args.device)
    print(json.dumps(machine), flush=True)
    outcomes, parameters, started = plan(args), None, time.monotonic()
    too_big: set[tuple[str, str]] = set()
    for outcome in outcomes:
        key = (outcome.inputs, outcome.precision)
        if key in too_big:
            outcome.status = "not run (a smaller batch ran out of memory)"
        elif args.time_limit_s and time.monotonic() - started > args.time_limit_s:
            outcome.status = "not run (time limit)"
        else:
            parameters = measure(config, model, outcome, args.device, args.steps, config["sample_size"]) or parameters
            if outcome.status == "OOM":
                too_big.add(key)
            print(json.dumps(asdict(outcome)), flush=True)
        if args.output:
            write_results(args.output, machine, parameters, outcomes)
    print(json.dumps({"parameters": parameters}))
    print(table(outcomes))
    return outcomes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def names(text: str) -> list[str]:
        return [part for part in text.split(",") if part]

    def numbers(text: str) -> list[int]:
        return [int(part) for part in names(text)]

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model, 64-frame window, CPU, 2 steps, batch 1, precision 32")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precisions", type=names, default=["bf16-mixed", "16-mixed", "32"], help="Lightning precisions (audio)")
    parser.add_argument("--batch-sizes", type=numbers, default=[1, 2, 4, 8], help="batch sizes with audio input")
    parser.add_argument("--latent-precisions", type=names, default=["bf16-mixed"], help="precisions with pre-encoded latents ('' for none)")
    parser.add_argument("--latent-batch-sizes", type=numbers, default=[1, 2, 4, 8, 16], help="batch sizes with pre-encoded latents")
    parser.add_argument("--steps", type=int, default=4, help="optimisation steps per configuration (the first is the warm-up)")
    parser.add_argument("--time-limit-s", type=float, default=0, help="start no new configuration after this many seconds (0: no limit)")
    parser.add_argument("--output", type=Path, help="JSON file for the results (rewritten after each configuration)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.precisions, args.batch_sizes, args.steps = ["32"], [1], 2
        args.latent_precisions, args.latent_batch_sizes = ["32"], [1]
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is the warm-up)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    use_offline_tiny_hub()
    outcomes = run(args)
    return 1 if any(o.status == "error" for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
