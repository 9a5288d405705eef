"""The model-selection flags shared by ``generate.py`` and ``run_gradio.py``.

One definition, so both entry points accept the same model flags and resolve them the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .models import ModelSpec, read_model_spec

DEFAULT_MODEL = "stabilityai/stable-audio-open-1.0"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the "model" flag group: which model, from where, on which device."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "--pretrained-name",
        "--model-name",
        dest="pretrained_name",
        default=DEFAULT_MODEL,
        help="Hugging Face hub model id (default: %(default)s; gated: needs HF_TOKEN); ignored with --model-config",
    )
    model.add_argument("--model-config", type=Path, help="local model_config.json (use with --ckpt-path)")
    model.add_argument("--ckpt-path", type=Path, help="local checkpoint: .safetensors or .ckpt (use with --model-config)")
    model.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto (default): cuda:LOCAL_RANK when CUDA is available, else CPU",
    )


def model_spec_from_args(args: argparse.Namespace) -> ModelSpec:
    """Resolve the parsed model flags to a model spec (config only; raises ``ModelLoadError``)."""
    return read_model_spec(args.pretrained_name, args.model_config, args.ckpt_path)
