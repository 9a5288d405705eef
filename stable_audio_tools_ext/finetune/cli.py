"""Command line of ``finetune.py``: ``prepare`` (captioned audio -> stable-audio-tools dataset).

Every input problem (flags, caption files, audio, the output folder, the model config) is found
before anything is written and printed at once, one ``file:line: what`` line each, with exit code 2.
``train`` (fine-tuning on the prepared dataset) is coming; docs/finetuning.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..datasets.training import parse_split_spec
from ..model.spec import ModelLoadError, ModelRequest, read_model_config, read_model_spec
from .captions import CAPTION_COLUMNS, FILE_COLUMNS, counted
from .metadata import CAPTION_POLICIES
from .prepare import SAO_1_0, CaptionSet, ModelWindow, PrepareRequest, check, summary_rows, window_from_config, write_prepared

EXIT_OK = 0
EXIT_USAGE = 2  # bad input: nothing was written (as generate.py)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune.py",
        description="Fine-tune Stable Audio models on captioned audio. Step 1: `prepare` the dataset. "
        "Training (`train`) is coming; docs/finetuning.md.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_prepare(subparsers)
    return parser


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
    console.print(f"next: fine-tune with {flags} (finetune.py train is coming; stable-audio-tools' train.py takes "
                  "the same flags)", soft_wrap=True, markup=False)  # fmt: skip


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args, args.command_parser)
