"""Which models ``finetune.py evaluate`` compares: each one's label (its folder under ``--output-dir``) and
``generate.py`` model flags, all checked before anything is generated.

A full fine-tuning run's checkpoints are ``--ckpt-path`` models. A LoRA run's checkpoints hold no
base weights: each is its base model (``lora_base.json``'s ``base_flags``) plus ``--lora`` its
adapter file, and the base alone is a column too, so the run is compared with what it adapts as a
full run is with ``--pretrained-name``. Adapter files given with ``--lora`` are the base model of
``--pretrained-name`` plus the file at each of its ``--lora-strengths``. Adapter headers are read
here (``model.lora_files``), torch-free, so a bad file is exit 2 before the first model generates;
whether an adapter's shapes fit the model is checked when ``generate.py`` loads it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..finetune.run_folder import LoraRunInfo, TrainingRun, adapter_file
from ..model.lora_files import LoraFileError, read_lora_file

BASE_LABEL = "base"
DEFAULT_STRENGTHS = (1.0,)


class EvaluateInputError(ValueError):
    """A flag that cannot work; the message names it. Found before anything is generated or written."""


@dataclass(frozen=True)
class Model:
    """One column of the comparison: its folder name under ``--output-dir`` and generate.py's model flags."""

    label: str
    flags: tuple[str, ...]
    source: str


def _check_adapter(path: Path, where: str) -> None:
    """The adapter file's header, as ``generate.py --lora`` checks it before loading anything."""
    try:
        read_lora_file(path)
    except LoraFileError as exc:
        raise EvaluateInputError(f"{where}: {exc}") from None


def _lora_info(run: TrainingRun, where: str) -> LoraRunInfo | None:
    """The run's ``lora_base.json``, or ``None`` for a full fine-tuning run; a broken record is an input error."""
    try:
        return run.lora_info()
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, a key missing, or not an object
        raise EvaluateInputError(f"{where}: {run.lora_base_path} is not a LoRA run record: expected a JSON object with "
                                 f"lora_config, base_flags and base_description ({type(exc).__name__}: {exc})") from None  # fmt: skip


def run_models(folder: Path) -> list[Model]:
    """A ``finetune.py train`` run's checkpoints by step (``step-<S>``); a LoRA run's base model first."""
    run, where = TrainingRun(folder), f"--run-dir {folder}"
    checkpoints = run.checkpoints()
    if not checkpoints:
        raise EvaluateInputError(f"{where}: no checkpoints (no {run.checkpoints_dir}/*step=N*.ckpt); "
                                 "train it with finetune.py train first")  # fmt: skip
    info = _lora_info(run, where)
    if info is None:
        return [Model(f"step-{step}", ("--ckpt-path", str(path)), str(path)) for step, path in checkpoints]
    models = [Model(BASE_LABEL, info.base_flags, info.base_description)]
    for step, path in checkpoints:
        adapter = adapter_file(path)
        if not adapter.exists():
            raise EvaluateInputError(f"{where}: LoRA checkpoint {path} has no adapter file beside it; write it with "
                                     f"finetune.py export-lora --ckpt-path {path} --output {adapter}")  # fmt: skip
        _check_adapter(adapter, where)
        models.append(Model(f"step-{step}", (*info.base_flags, "--lora", str(adapter)), f"{info.base_description} + LoRA {adapter}"))
    return models


def _strength_text(strength: float) -> str:
    """A strength as labels show it: ``0.5``, ``1`` (shortest exact form, no trailing ``.0``)."""
    return str(strength).removesuffix(".0")


def adapter_models(args: argparse.Namespace, base: Model | None) -> list[Model]:
    """``--lora FILE`` at each of its ``--lora-strengths`` on the ``--pretrained-name`` base: ``<stem>@<strength>``.

    ``--lora-strengths`` is given once (every file at those strengths) or once per ``--lora`` (in
    order); without it every file is at strength 1.
    """
    files, strengths = args.lora or [], args.lora_strengths or []
    if strengths and not files:
        raise EvaluateInputError("--lora-strengths needs --lora (the adapter files it applies to)")
    if len(strengths) > 1 and len(strengths) != len(files):
        raise EvaluateInputError(f"--lora-strengths: give it once for every --lora or once per --lora "
                                 f"({len(files)} --lora, {len(strengths)} --lora-strengths)")  # fmt: skip
    if files and base is None:
        raise EvaluateInputError("--lora needs the base model its adapters were trained on: --pretrained-name REPO_ID "
                                 "(and --revision); a LoRA run's own base comes with --run-dir")  # fmt: skip
    per_file = strengths if len(strengths) > 1 else (strengths or [DEFAULT_STRENGTHS]) * len(files)
    models = []
    for path, values in zip(files, per_file):
        _check_adapter(path, "--lora")
        for strength in values:
            text = _strength_text(strength)
            flags = (*base.flags, "--lora", str(path), "--lora-strength", text)
            models.append(Model(f"{path.stem}@{text}", flags, f"{base.source} + LoRA {path} at {text}"))
    return models


def hub_base(args: argparse.Namespace) -> Model | None:
    """``--pretrained-name`` (at ``--revision``) as the ``base`` column."""
    if args.revision is not None and args.pretrained_name is None:
        raise EvaluateInputError("--revision needs --pretrained-name (the hub model it pins)")
    if args.pretrained_name is None:
        return None
    revision = ("--revision", args.revision) if args.revision is not None else ()
    source = args.pretrained_name + (f" at {args.revision}" if args.revision is not None else "")
    return Model(BASE_LABEL, ("--pretrained-name", args.pretrained_name, *revision), source)


def models_of(args: argparse.Namespace) -> list[Model]:
    """Every model the flags name: the base, run checkpoints by step, ``--ckpt-path`` in order, then adapter files.

    A model whose ``generate.py`` flags equal an earlier one's is that model (e.g. the base of two
    LoRA runs): it is generated once, under the first label. Labels are folder names: ``base``,
    ``step-<S>``, the checkpoint's stem, ``<adapter stem>@<strength>``; a label taken already gets
    ``-2``, ``-3``... so two checkpoints of the same name still get a column each.
    """
    base = hub_base(args)
    models = [base] if base else []
    for run_folder in args.run_dir or []:
        models += run_models(run_folder)
    for path in args.ckpt_path or []:
        if not path.is_file():
            raise EvaluateInputError(f"--ckpt-path {path}: no such file")
        models.append(Model(path.stem, ("--ckpt-path", str(path)), str(path)))
    models += adapter_models(args, base)
    if not models:
        raise EvaluateInputError("no model to evaluate: give --run-dir SAVE_DIR/NAME, --ckpt-path FILE and/or --pretrained-name REPO_ID")
    seen: set[tuple[str, ...]] = set()
    taken: set[str] = set()
    unique = []
    for model in models:
        if model.flags in seen:
            continue
        seen.add(model.flags)
        name, count = model.label, 1
        while name in taken:
            count += 1
            name = f"{model.label}-{count}"
        taken.add(name)
        unique.append(Model(name, model.flags, model.source))
    return unique
