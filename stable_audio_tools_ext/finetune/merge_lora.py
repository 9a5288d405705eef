"""``finetune.py merge-lora``: LoRA adapters baked, at their strengths, into a full-weight checkpoint.

The result loads wherever a Stable Audio checkpoint does: ``generate.py --ckpt-path OUT`` alone (its
``model_config.json`` is written beside it), and tools without adapter support, such as
stable-audio-tools 0.0.19's own scripts (a plain state dict with the keys of a hub
``model.safetensors``, which ``create_model_from_config(config).load_state_dict`` takes strictly).

There is no second copy of the merge: the base model is read as ``generate.py`` reads it
(``model.loading``) and ``model.lora.apply_adapters`` merges the updates in float32 on the CPU, as
at generation, so generating with the result gives the audio of ``generate.py --lora`` with the same
adapters and strengths (bit for bit in float32). Each tensor is then written in the dtype the base
stored it in. The file's metadata records what was merged (``merged_lora``: the base's source and
revision, each adapter's file name, sha256 and strength). Every input problem is found before
anything is written (exit 2); both files are written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..model.options import add_lora_arguments, add_model_arguments, model_request_from_args
from ..model.spec import (
    MODEL_CONFIG_NAME,
    ModelLoadError,
    ModelRequest,
    ModelSpec,
    config_of_checkpoint,
    read_adapters,
    read_model_spec,
)
from ..output.atomic import atomic_open, atomic_write_text
from ..run.exits import EXIT_OK, EXIT_USAGE

MERGED_LORA_KEY = "merged_lora"  # the safetensors metadata entry recording the base and the adapters merged
SUFFIX = ".safetensors"  # generate.py --ckpt-path reads a file as safetensors by its suffix


@dataclass(frozen=True)
class MergePlan:
    """A checked merge: the base with its adapters, and where the weights and their config go."""

    spec: ModelSpec
    output: Path
    config_path: Path  # where generate.py --ckpt-path OUTPUT will look for the config
    write_config: bool  # False: the same config is already there


def add_merge_lora(subparsers: argparse._SubParsersAction) -> None:
    """The ``merge-lora`` subcommand: generate.py's model and LoRA flags, and ``--output``."""
    parser = subparsers.add_parser(
        "merge-lora",
        help="bake LoRA adapters at their strengths into a full-weight checkpoint (for generate.py --ckpt-path and "
        "tools without adapter support)",
        description="Merge LoRA adapters into a base model's weights and write them as one .safetensors checkpoint "
        f"with its {MODEL_CONFIG_NAME} beside it: generate.py --ckpt-path OUTPUT then gives the audio of generate.py "
        "--lora with the same base, adapters and strengths. Bad input: exit 2, nothing written (docs/finetuning.md).",
    )
    add_model_arguments(parser, sampling=False)
    add_lora_arguments(parser, lora_help="a LoRA adapter to merge (.safetensors with lora_config metadata, as "
                       "stable-audio-tools >= 0.0.20 writes); repeat for several, added in order",
                       required=True)  # fmt: skip
    parser.add_argument("--output", type=Path, required=True, metavar=f"FILE{SUFFIX}", help="the merged checkpoint to "
                        f"write (replaced if it exists); {MODEL_CONFIG_NAME} goes beside it, unless the same config "
                        "is already where generate.py --ckpt-path looks for it (a different one there: exit 2)")  # fmt: skip
    parser.set_defaults(handler=merge_lora_command, command_parser=parser)


def _check_output(output: Path, request: ModelRequest) -> None:
    """Refuse an output path that cannot be written or would overwrite an input (``ModelLoadError``)."""
    where = f"--output {output}"
    if output.is_dir():
        raise ModelLoadError(f"{where}: is a directory; give the file to write, e.g. {output / ('model' + SUFFIX)}")
    if output.suffix != SUFFIX:
        raise ModelLoadError(f"{where}: must end in {SUFFIX} (generate.py --ckpt-path reads a file as safetensors by its suffix)")
    folder = next(parent for parent in output.parents if parent.exists())
    if not folder.is_dir():
        raise ModelLoadError(f"{where}: {folder} is a file, not a folder")
    inputs = [("--ckpt-path", request.ckpt_path), ("--pretransform-ckpt-path", request.pretransform_ckpt_path)]
    for flag, path in inputs + [("--lora", path) for path in request.lora]:
        if path is not None and output.exists() and path.exists() and os.path.samefile(output, path):
            raise ModelLoadError(f"{where}: is the input {flag} {path}; write the merged checkpoint to another file")


def _config_there(path: Path) -> Any:
    """The JSON in ``path``, or ``None`` when it is not readable JSON (so differs from any config)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def plan_merge(request: ModelRequest, output: Path) -> MergePlan:
    """Check everything that can be checked before weights are read: output, adapters, base model, config
    (torch-free). Raises ``ModelLoadError`` naming the flag or file."""
    _check_output(output, request)
    adapters = read_adapters(request)
    base = read_model_spec(replace(request, lora=(), lora_strength=()))  # the base's identity, without the adapters
    config_path = config_of_checkpoint(output) or output.parent / MODEL_CONFIG_NAME
    write_config = not config_path.exists()
    if not write_config and _config_there(config_path) != base.config:
        raise ModelLoadError(f"--output {output}: {config_path} holds a different model config, and generate.py "
                             f"--ckpt-path {output} would read that one; write the merged checkpoint to another folder")  # fmt: skip
    return MergePlan(replace(base, adapters=adapters), output, config_path, write_config)


def merge(plan: MergePlan) -> None:
    """Load the base, merge its adapters (float32, CPU), and write the weights in the base's dtypes, then the config."""
    import torch
    from safetensors.torch import save

    from ..model.loading import model_with_weights, read_weights
    from ..model.lora import apply_adapters

    spec = plan.spec
    state, weights_read = read_weights(spec)
    stored = {key: tensor.dtype for key, tensor in state.items()}
    model = model_with_weights(spec, state)
    del state  # in the model now: free it before the merge keeps base copies and the file is serialized
    apply_adapters(model, spec.adapters, torch.device("cpu"))  # raises ModelLoadError for an adapter of another model
    merged = {key: tensor.detach().to(stored[key]).contiguous() for key, tensor in model.state_dict().items()}
    record = {"base": {"source": spec.source, "revision": spec.revision, "weights": weights_read},
              "adapters": [adapter.record() for adapter in spec.adapters]}  # fmt: skip
    with atomic_open(plan.output) as handle:
        handle.write(save(merged, metadata={"format": "pt", MERGED_LORA_KEY: json.dumps(record)}))
    if plan.write_config:
        atomic_write_text(plan.config_path, json.dumps(spec.config, indent=2) + "\n")


def merge_lora_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``finetune.py merge-lora``; bad input is one line and exit 2, with nothing written."""
    try:
        plan = plan_merge(model_request_from_args(args), args.output)
        merge(plan)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    spec = plan.spec
    adapters = ", ".join(f"{use.file.path.name} at {use.strength:g}" for use in spec.adapters)
    config = "written beside it" if plan.write_config else "already there"
    print(f"merged {adapters} into {spec.source} ({spec.revision}) -> {plan.output} ({plan.config_path} {config})")
    print(f"next: python generate.py --ckpt-path {plan.output} --cond-yaml-path TREE --output-dir DIR")
    return EXIT_OK
