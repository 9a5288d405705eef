"""The subcommands of ``finetune.py`` this package owns: ``prepare`` (captioned audio -> stable-audio-tools
dataset), ``train`` (fine-tune a model on it) and ``encode``; ``finetune_main`` is the dispatcher.

Every input problem is found before anything is written and printed with exit code 2: for
``prepare`` all at once, one ``file:line: what`` line each; for ``train`` one line (its checks run in
order, the cheap ones before the model is built). docs/finetuning.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..datasets.training import parse_split_spec
from ..model.spec import ModelLoadError, ModelRequest, read_model_config, read_model_spec
from ..run.argtypes import add_dist_timeout_argument, finite_float, positive_int
from ..run.exits import EXIT_OK, EXIT_USAGE
from ..tree.conditions import segment_problem
from .captions import CAPTION_COLUMNS, FILE_COLUMNS, counted
from .lora_settings import LoraSettings
from .metadata import CAPTION_POLICIES
from .merge_lora import add_merge_lora
from .prepare import (
    SAO_1_0,
    CaptionSet,
    ModelWindow,
    PrepareRequest,
    check,
    summary_rows,
    window_from_config,
    write_prepared,
)
from .run_folder import TrainingRun
from .training import LIGHTNING_PRECISIONS, LOGGERS, TrainRequest, default_workers, train
from .weights import FinetuneInputError

DEFAULT_SPLIT = "train=0.9,val=0.1"
LOG_WIDTH = 160  # columns when writing to a log file rather than a terminal


def _add_prepare(subparsers: argparse._SubParsersAction) -> None:
    """The ``prepare`` subcommand and its flags (docs/finetuning.md)."""
    parser = subparsers.add_parser(
        "prepare",
        help="captioned audio -> stable-audio-tools dataset configs, split links and metadata module",
        description="Check captioned audio and write a stable-audio-tools training dataset (docs/finetuning.md). "
        "Every problem is reported before anything is written (exit code 2).",
    )
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--audio-dir", type=Path, required=True, metavar="DIR", help="folder of the training audio (scanned recursively)")
    inputs.add_argument(
        "--captions",
        type=Path,
        metavar="FILE",
        help="CSV (Clotho's file_name,caption_1,...,caption_5 or another header) or JSON Lines (.jsonl) file naming "
        "each audio file relative to --audio-dir and its captions (default: a sidecar .txt beside each audio file, "
        "one caption per line)",
    )
    inputs.add_argument(
        "--file-column",
        metavar="NAME",
        help=f"the column naming the audio file (default: the first of {', '.join(FILE_COLUMNS)}, in any case)",
    )
    inputs.add_argument(
        "--caption-column",
        metavar="NAME",
        action="append",
        help="a column holding captions; repeat for several (default: every caption_<n> column, else the first of "
        f"{', '.join(CAPTION_COLUMNS)})",
    )
    inputs.add_argument(
        "--caption-policy",
        choices=CAPTION_POLICIES,
        default="random",
        help="with several captions per file, the prompt of each read: a random one (default), or always the first",
    )
    splits = parser.add_argument_group("splits")
    splits.add_argument("--val-captions", type=Path, metavar="FILE", help="captions of the validation set (its audio: --val-audio-dir)")
    splits.add_argument(
        "--val-audio-dir",
        type=Path,
        metavar="DIR",
        help="folder of the validation audio (default: --audio-dir); without --val-captions its captions are sidecar .txt files",
    )
    splits.add_argument(
        "--split",
        type=parse_split_spec,
        metavar="NAME=FRACTION,...",
        help=f"without a validation set: split the files by a hash of their path (default: {DEFAULT_SPLIT})",
    )
    model = parser.add_argument_group("model (for the summary: the rate, channels and window files are read at)")
    which = model.add_mutually_exclusive_group()
    which.add_argument("--model-config", type=Path, metavar="FILE", help="the model_config.json of the model to fine-tune")
    which.add_argument(
        "--pretrained-name",
        metavar="REPO_ID",
        help="a Hugging Face hub model whose config to read (gated models need HF_TOKEN); "
        "default without either flag: Stable Audio Open 1.0's values, with no download",
    )
    parser.add_argument("--output-dir", type=Path, required=True, metavar="DATA", help="where the dataset files are written")
    parser.set_defaults(handler=prepare, command_parser=parser)


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The model flags ``train`` and ``encode`` share (resolved by ``weights.choose_model``)."""
    model = parser.add_argument_group("model and starting weights")
    model.add_argument("--pretrained-name", metavar="REPO_ID", help="start from a hub model (gated models need HF_TOKEN), "
                       "e.g. stabilityai/stable-audio-open-1.0; its config is trained unless --model-config is given")  # fmt: skip
    model.add_argument("--revision", help="hub branch, tag or commit of --pretrained-name (default: main)")
    model.add_argument("--pretrained-ckpt-path", type=Path, metavar="FILE", help="start from a checkpoint: .safetensors, a "
                       "state dict, or a training checkpoint of an earlier run (its EMA weights); loaded strictly")  # fmt: skip
    model.add_argument("--model-config", type=Path, metavar="FILE", help="the model config to train (default: that of the "
                       "starting weights); alone, training starts from random weights")  # fmt: skip
    model.add_argument("--pretransform-ckpt-path", type=Path, metavar="FILE", help="replace the starting weights' VAE with these")
    model.add_argument("--trust-checkpoint", action="store_true", help="allow full unpickling of a checkpoint that needs it (runs its code)")


def _model_flags(args: argparse.Namespace) -> ModelRequest:
    """The model flags of ``train`` and ``encode`` as ``generate.py``'s request (``--pretrained-ckpt-path`` is its ``ckpt_path``)."""
    return ModelRequest(
        model_config=args.model_config, pretrained_name=args.pretrained_name, revision=args.revision,
        ckpt_path=args.pretrained_ckpt_path, pretransform_ckpt_path=args.pretransform_ckpt_path,
        trust_checkpoint=args.trust_checkpoint,
    )  # fmt: skip


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    """The ``train`` subcommand: stable-audio-tools' train.py flags where they exist (docs/finetuning.md)."""
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a model with stable-audio-tools' training stack; rerun to continue",
        description="Fine-tune a Stable Audio model on a dataset config (finetune.py prepare writes one). Checkpoints go "
        "to SAVE_DIR/NAME/checkpoints/; rerunning the same command continues from the last one. Bad input: exit 2.",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset-config", type=Path, required=True, metavar="FILE", help="stable-audio-tools dataset config of the training set")
    data.add_argument("--val-dataset-config", type=Path, metavar="FILE", help="dataset config of the validation set (validation losses)")
    data.add_argument("--num-workers", type=positive_int, default=default_workers(),
                      help="dataloader worker processes per rank (default: %(default)s, at most 6 as upstream)")  # fmt: skip
    _add_model_flags(parser)
    run = parser.add_argument_group("run")
    run.add_argument("--save-dir", type=Path, required=True, metavar="SAVE_DIR", help="folder of training runs")
    run.add_argument("--name", required=True, help="the run: its files go to SAVE_DIR/NAME/ (also the wandb project)")
    run.add_argument("--max-steps", type=positive_int, metavar="N", help="stop after this many optimizer steps, with a "
                     "checkpoint (default: train until stopped; Ctrl-C/SIGTERM saves a checkpoint first)")  # fmt: skip
    run.add_argument("--checkpoint-every", type=positive_int, default=1000, metavar="N", help="steps between checkpoints (default: %(default)s)")
    run.add_argument("--keep-checkpoints", type=positive_int, metavar="N", help="keep only the N latest checkpoints, "
                     "deleting older ones as new ones are written (default: keep all, as upstream)")  # fmt: skip
    run.add_argument("--val-every", type=int, default=-1, metavar="N", help="optimizer steps between validation runs, whatever --accum-batches (default: once per epoch)")
    run.add_argument("--restart", action="store_true", help="start the run over; its old files are moved into SAVE_DIR/NAME/restarted-<time>/")
    run.add_argument("--seed", type=int, default=42, help="random seed (default: %(default)s; each rank adds its rank, as upstream)")
    run.add_argument("--logger", choices=LOGGERS, default="csv", help="where losses go (default: csv, in SAVE_DIR/NAME/logs/; wandb needs an account)")
    optim = parser.add_argument_group("batch and precision")
    optim.add_argument("--batch-size", type=positive_int, default=4, help="clips per step and rank (default: %(default)s)")
    optim.add_argument("--accum-batches", type=positive_int, default=1, metavar="N", help="batches per optimizer step (default: %(default)s)")
    optim.add_argument("--precision", choices=LIGHTNING_PRECISIONS, default="auto",
                       help="Lightning precision (default auto: bf16-mixed on GPUs with bfloat16, else 16-mixed; 32 on CPU)")  # fmt: skip
    optim.add_argument("--gradient-clip-val", type=float, default=0.0, metavar="X", help="clip gradients at this norm (default: off)")
    optim.add_argument("--devices", default="auto", help="devices per node: a count, a comma list of GPU ids, or auto (all GPUs; 1 on CPU)")
    optim.add_argument("--num-nodes", type=positive_int, default=1, metavar="N", help="nodes (Lightning's SLURM/torchrun environment)")
    lora = parser.add_argument_group("LoRA adapters (instead of every weight; docs/finetuning.md#lora-adapters)")
    lora.add_argument("--lora-rank", type=positive_int, metavar="R", help="train rank-R adapters on a frozen base, in "
                      "stable-audio-tools' LoRA format (an adapter file is written beside each checkpoint)")  # fmt: skip
    lora.add_argument("--lora-alpha", type=finite_float, metavar="A", help="update scale alpha / rank (default: the rank)")
    lora.add_argument("--lora-include", action="append", metavar="PATTERN", help="adapt only layers whose path contains "
                      "this (repeatable; ranges as layers.[0-11]; default: every Linear and Conv1d of the DiT and conditioner)")  # fmt: skip
    lora.add_argument("--lora-exclude", action="append", metavar="PATTERN", help="leave out layers whose path contains this (repeatable)")
    demos = parser.add_argument_group("demos")
    demos.add_argument("--demo-yaml", type=Path, metavar="TREE", help="generate this condition tree with every checkpoint "
                       "into SAVE_DIR/NAME/demos/step-N/ (as generate.py --clip-length --precision fp32)")  # fmt: skip
    parser.add_argument("--check", action="store_true", help="check the flags, dataset configs, model config, run folder and "
                        "demo tree, then exit (0: fine, 2: a problem) without training")  # fmt: skip
    demos.add_argument("--demo-batch-size", type=positive_int, default=4, metavar="N", help="demo clips per batch (default: %(default)s)")
    parser.set_defaults(handler=train_command, command_parser=parser)


def _add_encode(subparsers: argparse._SubParsersAction) -> None:
    """The ``encode`` subcommand: a prepared dataset -> pre-encoded latents (docs/finetuning.md)."""
    parser = subparsers.add_parser(
        "encode",
        help="run the VAE encoder once over a dataset: stable-audio-tools pre_encoded latents for faster training",
        description="Encode every audio file of an audio_dir dataset config with the model's VAE into stable-audio-tools' "
        "pre_encoded format (OUTPUT_DIR/dataset_config.json; train with it as --dataset-config). Run under torchrun "
        "to shard files over GPUs; rerunning skips finished files. Bad input: exit 2.",
    )
    parser.add_argument("--dataset-config", type=Path, required=True, metavar="FILE", help="an audio_dir dataset config (finetune.py prepare writes one per split)")
    parser.add_argument("--output-dir", type=Path, required=True, metavar="DIR", help="where the latents and their dataset config go")
    _add_model_flags(parser)
    parser.add_argument("--num-workers", type=positive_int, default=default_workers(),
                        help="audio-loading worker processes per rank (default: %(default)s)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=42, help="base of the per-file seeds of the VAE's latent sample (default: %(default)s)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto (default): cuda:LOCAL_RANK when CUDA is available")
    add_dist_timeout_argument(parser, "the longest wait is at the end, the other ranks' for the slowest to "
                              "finish its files (shares are balanced by duration; one long file is one rank's)")  # fmt: skip
    parser.set_defaults(handler=encode_command, command_parser=parser)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """The subcommands this package owns, added to ``finetune.py``'s parser (``finetune_main``)."""
    _add_prepare(subparsers)
    _add_train(subparsers)
    _add_encode(subparsers)
    _add_export_lora(subparsers)
    add_merge_lora(subparsers)


def _request(args: argparse.Namespace, parser: argparse.ArgumentParser) -> PrepareRequest:
    """The prepare request the flags describe; flag combinations that cannot work exit 2 here."""
    has_val = args.val_captions is not None or args.val_audio_dir is not None
    if has_val and args.split is not None:
        parser.error("--split splits one set of files; with --val-captions/--val-audio-dir the validation set is given")
    if args.captions is None and args.val_captions is None and (args.file_column or args.caption_column):
        parser.error("--file-column and --caption-column apply to --captions/--val-captions files, and none is given")
    train = CaptionSet(args.audio_dir, args.captions, "train" if has_val else None)
    sets = (train,)
    if has_val:
        val = CaptionSet(args.val_audio_dir or args.audio_dir, args.val_captions, "val",
                         "--val-audio-dir" if args.val_audio_dir else "--audio-dir")  # fmt: skip
        if (val.audio_dir, val.captions) == (train.audio_dir, train.captions):
            parser.error("the validation set would be the training set: give --val-captions or another --val-audio-dir")
        sets += (val,)
    return PrepareRequest(
        sets=sets,
        splits=args.split or parse_split_spec(DEFAULT_SPLIT),
        output_dir=args.output_dir,
        caption_policy=args.caption_policy,
        file_column=args.file_column,
        caption_columns=tuple(args.caption_column) if args.caption_column else None,
    )


def _window(args: argparse.Namespace) -> ModelWindow:
    """The model the summary speaks of (raises ``ModelLoadError``)."""
    if args.model_config is not None:
        return window_from_config(read_model_config(args.model_config), str(args.model_config))
    if args.pretrained_name is not None:
        return window_from_config(read_model_spec(ModelRequest(pretrained_name=args.pretrained_name)).config, args.pretrained_name)
    return SAO_1_0


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = LOG_WIDTH
    return console


def _print_summary(rows: list[tuple[str, str]], output_dir: Path, configs: dict[str, Path]) -> None:
    """The summary table, the configs written, and the command line they go into."""
    table = Table(title=Text(f"Fine-tuning dataset: {output_dir}"), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, Text(value))  # Text: a path or name holding [brackets] is not markup
    console = _console()
    console.print(table)
    for config in configs.values():
        console.print(f"dataset config: {config}", soft_wrap=True, markup=False)
    train, val = configs.get("train", next(iter(configs.values()))), configs.get("val")
    flags = f"--dataset-config {train}" + (f" --val-dataset-config {val}" if val else "")
    console.print(f"next: python finetune.py train {flags} --pretrained-name stabilityai/stable-audio-open-1.0 "
                  "--save-dir runs --name NAME --max-steps N", soft_wrap=True, markup=False)  # fmt: skip


def prepare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``finetune.py prepare``: check everything, then write the dataset and print its summary."""
    request = _request(args, parser)
    errors = []
    window = SAO_1_0
    try:
        window = _window(args)
    except ModelLoadError as exc:
        errors.append(str(exc))
    files, problems = check(request)
    errors += [problem.render() for problem in problems]
    if errors:
        print(f"error: {counted(len(errors), 'problem')}; nothing was written:", file=sys.stderr)
        print("\n".join(f"  {error}" for error in errors), file=sys.stderr)
        return EXIT_USAGE
    configs = write_prepared(files, request)
    _print_summary(summary_rows(files, request, window), request.output_dir, configs)
    return EXIT_OK


def train_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``finetune.py train``: the request from the flags; bad input is one line and exit 2."""
    problem = segment_problem(args.name)
    if problem:
        parser.error(f"--name {args.name!r}: {problem} (it names the folder SAVE_DIR/NAME)")
    request = TrainRequest(
        dataset_config=args.dataset_config, val_dataset_config=args.val_dataset_config, model=_model_flags(args),
        run=TrainingRun(args.save_dir / args.name), name=args.name, precision=args.precision,
        batch_size=args.batch_size, accum_batches=args.accum_batches, num_workers=args.num_workers,
        checkpoint_every=args.checkpoint_every, val_every=args.val_every, max_steps=args.max_steps,
        devices=args.devices, num_nodes=args.num_nodes, seed=args.seed, gradient_clip_val=args.gradient_clip_val,
        logger=args.logger, restart=args.restart, demo_yaml=args.demo_yaml, demo_batch_size=args.demo_batch_size,
        keep_checkpoints=args.keep_checkpoints or 0, check=args.check, lora=_lora_settings(args, parser),
    )  # fmt: skip
    try:
        return train(request)
    except FinetuneInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _lora_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> LoraSettings | None:
    """``--lora-*`` as settings; ``None`` for full fine-tuning (the other ``--lora-*`` flags then need ``--lora-rank``)."""
    if args.lora_rank is None:
        given = [flag for flag, value in (("--lora-alpha", args.lora_alpha), ("--lora-include", args.lora_include),
                                          ("--lora-exclude", args.lora_exclude)) if value is not None]  # fmt: skip
        if given:
            parser.error(f"{given[0]} applies to LoRA training: add --lora-rank R")
        return None
    alpha = float(args.lora_rank) if args.lora_alpha is None else args.lora_alpha
    as_tuple = lambda values: tuple(values) if values else None  # noqa: E731
    return LoraSettings(args.lora_rank, alpha, as_tuple(args.lora_include), as_tuple(args.lora_exclude))


def _add_export_lora(subparsers: argparse._SubParsersAction) -> None:
    """The ``export-lora`` subcommand: a LoRA run's checkpoint -> a stable-audio-tools adapter file."""
    parser = subparsers.add_parser(
        "export-lora",
        help="write a LoRA checkpoint's adapter as a stable-audio-tools LoRA .safetensors file",
        description="Write the adapter of a LoRA checkpoint (finetune.py train --lora-rank) as a stable-audio-tools LoRA "
        "file, for generate.py --lora, run_gradio.py --lora and stable-audio-tools >= 0.0.20. A LoRA run already "
        "writes one beside each checkpoint; this makes one from any checkpoint of it. Bad input: exit 2.",
    )
    parser.add_argument("--ckpt-path", type=Path, required=True, metavar="CKPT", help="a checkpoint of a LoRA run")
    parser.add_argument("--output", type=Path, required=True, metavar="FILE.safetensors", help="the adapter file to write")
    parser.set_defaults(handler=export_lora_command, command_parser=parser)


def export_lora_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``finetune.py export-lora``: one line and exit 2 for a checkpoint that is not a LoRA one."""
    from .lora_training import LoraExportError, export_lora

    if args.output.suffix != ".safetensors":
        parser.error(f"--output {args.output}: an adapter file is a .safetensors file")
    if args.output.is_dir():
        parser.error(f"--output {args.output}: is a folder")
    try:
        layers = export_lora(args.ckpt_path, args.output)
    except LoraExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {args.output}: adapters of {layers} layers", file=sys.stderr)
    return EXIT_OK


def encode_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``finetune.py encode``; bad input is one line and exit 2 (on every rank that finds it)."""
    from .encode import EncodeRequest, encode

    request = EncodeRequest(dataset_config=args.dataset_config, output_dir=args.output_dir, model=_model_flags(args),
                            num_workers=args.num_workers, seed=args.seed, device=args.device,
                            dist_timeout=args.dist_timeout)  # fmt: skip
    if request.output_dir.exists() and not request.output_dir.is_dir():
        parser.error(f"--output-dir {request.output_dir}: exists and is not a folder")
    try:
        return encode(request)
    except FinetuneInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
