"""Which model config fine-tuning works on and where its starting weights come from, from the flags.

``finetune.py train`` and ``encode`` take the same model flags (``--pretrained-name`` with
``--revision``, ``--pretrained-ckpt-path``, ``--model-config``, ``--pretransform-ckpt-path``), held
in ``generate.py``'s own ``model.spec.ModelRequest`` (``--pretrained-ckpt-path`` is its
``ckpt_path``), and resolve them here into a ``model.spec.ModelSpec``, the same object
``generate.py`` loads from. Fine-tuning reads them differently from ``generate.py``: a hub model
with ``--model-config`` trains that config on the hub weights, ``--model-config`` alone trains from
random weights, and a training checkpoint gives its EMA DiT (``finetune.py`` has no ``--weights``).
Torch-free: only configs are read, so every flag problem is found before the training stack loads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..model.spec import (
    MODEL_CONFIG_NAME,
    ModelLoadError,
    ModelRequest,
    ModelSpec,
    config_of_checkpoint,
    read_model_config,
    read_model_spec,
)


class FinetuneInputError(ValueError):
    """Input ``finetune.py train`` or ``encode`` cannot use: one line naming the flag, what is wrong and what to do."""


@dataclass(frozen=True)
class ModelChoice:
    """The config to train and where its starting weights come from (``spec`` is ``None``: random weights)."""

    config: dict[str, Any]
    spec: ModelSpec | None
    ckpt_flag: str
    description: str


def choose_model(request: ModelRequest) -> ModelChoice:
    """The config and starting weights the flags name (torch-free: only configs are read). Raises ``FinetuneInputError``."""
    try:
        local_config = read_model_config(request.model_config) if request.model_config else None
        if request.pretrained_name and request.ckpt_path:
            raise FinetuneInputError("--pretrained-name and --pretrained-ckpt-path both name starting weights; give one")
        if request.pretrained_name:
            spec = read_model_spec(replace(request, model_config=None))
            if local_config is not None:
                spec = replace(spec, config=local_config)
            source = f"{spec.source} at {spec.revision}" + (f" with --model-config {request.model_config}" if local_config else "")
            return ModelChoice(spec.config, spec, "--pretrained-ckpt-path", source)
        if request.revision:
            raise FinetuneInputError("--revision applies to --pretrained-name")
        if request.ckpt_path:
            ckpt = request.ckpt_path
            if not ckpt.is_file():
                raise FinetuneInputError(f"--pretrained-ckpt-path {ckpt}: file not found")
            config_path = request.model_config or config_of_checkpoint(ckpt)
            if config_path is None:
                raise FinetuneInputError(
                    f"--pretrained-ckpt-path {ckpt} needs --model-config: no {MODEL_CONFIG_NAME} beside it or in its run folder"
                )
            spec = read_model_spec(replace(request, model_config=config_path))
            return ModelChoice(spec.config, spec, "--pretrained-ckpt-path", f"{ckpt} with {config_path}")
        if local_config is None:
            raise FinetuneInputError(
                "no model: give --pretrained-name (a hub model), --pretrained-ckpt-path (a checkpoint), "
                "or --model-config alone to train from random weights"
            )
        if request.pretransform_ckpt_path:
            raise FinetuneInputError("--pretransform-ckpt-path replaces the VAE of starting weights; give those too")
        return ModelChoice(local_config, None, "", f"random weights, {request.model_config}")
    except ModelLoadError as exc:
        raise FinetuneInputError(str(exc)) from None
