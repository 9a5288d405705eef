"""``finetune.py``'s dispatcher: one parser holding the subcommands of ``finetune/`` and ``evaluation/``.

Each package owns its subcommands' parsers and handlers (``add_commands``); this module sits above
both (the import rule: ``tests/test_layout.py``), so neither imports the other to be listed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .evaluation import cli as evaluation_cli
from .finetune import cli as finetune_cli
from .quiet import hide_library_banners, hide_library_warnings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune.py",
        description="Fine-tune Stable Audio models on captioned audio: `prepare` the dataset, then `train`; "
        "generate.py --ckpt-path takes the checkpoints. docs/finetuning.md.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    finetune_cli.add_commands(subparsers)
    evaluation_cli.add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    hide_library_warnings()  # before Lightning and stable-audio-tools are imported: some warn at import
    hide_library_banners()
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args, args.command_parser)
