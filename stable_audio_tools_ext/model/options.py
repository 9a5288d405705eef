"""The model flags shared by ``generate.py``, ``run_gradio.py`` and ``finetune.py merge-lora``.

One definition, so the entry points accept the same model flags and resolve them the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .spec import PRECISION_NAMES, ModelRequest, ModelSpec, read_model_spec

DEFAULT_MODEL = "stabilityai/stable-audio-open-1.0"


def add_model_arguments(parser: argparse.ArgumentParser, sampling: bool = True) -> None:
    """Add the "model" flag group: which model, from where, which weights, and (``sampling``) on which
    device and at which precision; ``merge-lora`` works in float32 on the CPU, so it leaves those out."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "--pretrained-name",
        "--model-name",
        dest="pretrained_name",
        default=DEFAULT_MODEL,
        help="Hugging Face hub model id (default: %(default)s; gated: needs HF_TOKEN); ignored with --ckpt-path",
    )
    model.add_argument("--revision", help="hub branch, tag or commit to pin (default: main); recorded in the manifest")
    model.add_argument(
        "--model-config",
        type=Path,
        help="local model_config.json of --ckpt-path (default: the one beside the checkpoint or in its "
        "finetune.py run folder)",
    )
    model.add_argument(
        "--ckpt-path",
        type=Path,
        help="local weights: .safetensors, a state dict .ckpt/.pt, or a Lightning checkpoint written by "
        "finetune.py train or stable-audio-tools' train.py",
    )
    model.add_argument(
        "--weights",
        choices=("ema", "online"),
        help="for a training checkpoint: EMA or online weights (default: EMA when present, as unwrap_model.py)",
    )
    model.add_argument("--pretransform-ckpt-path", type=Path, help="replace the VAE weights with these")
    model.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow checkpoints that need full unpickling (can run arbitrary code; default: tensors only)",
    )
    if not sampling:
        return
    model.add_argument(
        "--precision",
        choices=PRECISION_NAMES,
        help="DiT precision (default: bf16 on CUDA GPUs that support it, else fp16 on CUDA; fp32 on CPU)",
    )
    model.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto (default): cuda:LOCAL_RANK when CUDA is available, else CPU",
    )


GENERATE_LORA_HELP = ("apply this LoRA adapter (.safetensors with lora_config metadata, as stable-audio-tools >= 0.0.20 "
                      "writes) to every item; repeat for several, applied in order; part of each item's fingerprint by "
                      "the file's content hash")  # fmt: skip


def add_lora_arguments(parser: argparse.ArgumentParser, lora_help: str = GENERATE_LORA_HELP, required: bool = False) -> None:
    """Add the "LoRA adapters" flag group (``generate.py``, ``run_gradio.py``; ``merge-lora`` with its own ``--lora`` help, required)."""
    lora = parser.add_argument_group("LoRA adapters (stable-audio-tools' format; docs/models.md#lora-adapters-generation)")
    lora.add_argument(
        "--lora",
        type=Path,
        action="append",
        default=[],
        required=required,
        metavar="PATH",
        help=lora_help,
    )
    lora.add_argument(
        "--lora-strength",
        type=float,
        action="append",
        default=[],
        metavar="S",
        help="adapter strength: once for every --lora, or once per --lora in the same order (default: 1; "
        "0 gives exactly the model without the adapter)",
    )


def model_request_from_args(args: argparse.Namespace) -> ModelRequest:
    return ModelRequest(
        pretrained_name=args.pretrained_name,
        revision=args.revision,
        model_config=args.model_config,
        ckpt_path=args.ckpt_path,
        weights=args.weights,
        pretransform_ckpt_path=args.pretransform_ckpt_path,
        trust_checkpoint=args.trust_checkpoint,
        lora=tuple(vars(args).get("lora", ())),  # generate.py, run_gradio.py and merge-lora have the LoRA flags
        lora_strength=tuple(vars(args).get("lora_strength", ())),
    )


def model_spec_from_args(args: argparse.Namespace) -> ModelSpec:
    """Resolve the parsed model flags to a model spec (config only; raises ``ModelLoadError``)."""
    return read_model_spec(model_request_from_args(args))
