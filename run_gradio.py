#!/usr/bin/env python
"""Interactive studio: audition prompts on the same engine as generate.py, then export them as a sweep.

    python run_gradio.py --pretrained-name stabilityai/stable-audio-open-1.0
    # then open http://127.0.0.1:7860 (on a cluster node: ssh -L 7860:127.0.0.1:7860 NODE)
    torchrun --nproc_per_node gpu --master_port 29501 run_gradio.py --pretrained-name ...
    # every GPU of the node: rank 0 serves the page, each request is split over all ranks

Argument parsing and the checks of the flags only, answered before torch and Gradio are imported;
the run is ``stable_audio_tools_ext.studio.launch``, the app ``stable_audio_tools_ext.studio.app``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from stable_audio_tools_ext.model.options import add_lora_arguments, add_model_arguments, model_spec_from_args
from stable_audio_tools_ext.model.spec import ModelLoadError
from stable_audio_tools_ext.run.argtypes import add_dist_timeout_argument, positive_float, positive_int
from stable_audio_tools_ext.run.exits import EXIT_USAGE, ConciseArgumentParser, launched_as, where
from stable_audio_tools_ext.studio.files import clean_tmp_dir, prepare_tmp_dir
from stable_audio_tools_ext.studio.settings import read_auth_file


def build_parser() -> argparse.ArgumentParser:
    parser = ConciseArgumentParser(
        prog="run_gradio.py",
        description="Interactive Stable Audio studio (Gradio) on the same engine as generate.py.",
    )
    add_model_arguments(parser)
    add_lora_arguments(parser)  # each adapter gets a strength control on the page, starting at --lora-strength
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    server.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    server.add_argument("--share", action="store_true", help="also open a public *.gradio.live link (off by default)")
    server.add_argument("--username", help="require this user name (with --password)")
    server.add_argument("--password", help="password for --username (visible in the process list: prefer --auth-file)")
    server.add_argument("--auth-file", type=Path, help="file of 'username:password' lines; any of them may log in")
    files = parser.add_argument_group("files and limits")
    files.add_argument(
        "--tmp-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / f"stable-audio-studio-{os.getuid()}",
        help="where generated files go, the only folder the app serves files from: a directory of yours with mode 700, made so when missing (default: %(default)s)",
    )
    files.add_argument(
        "--tmp-max-age-hours", type=positive_float, default=24.0,
        help="at start, delete files in --tmp-dir older than this (default: %(default)s)",
    )  # fmt: skip
    for flag, kind, default, meaning in (
        ("--max-variations", positive_int, 8, "most variations per generation"),
        ("--max-batch-items", positive_int, 64, "refuse batch trees with more items"),
        ("--batch-size", positive_int, 4, "items per forward pass in the batch tab"),
        ("--max-upload-mb", positive_float, 1.0, "largest upload (or pasted tree) accepted"),
    ):
        files.add_argument(flag, type=kind, default=default, help=f"{meaning} (default: %(default)s)")
    add_dist_timeout_argument(parser, "the longest wait is a request's: ranks that finish their share first wait "
                              "for the slowest, so size it by the longest Generate or Batch run")  # fmt: skip
    return parser


def _auth(args: argparse.Namespace) -> list[tuple[str, str]] | None:
    if args.auth_file and (args.username or args.password):
        raise ValueError("give either --auth-file or --username/--password, not both")
    if bool(args.username) != bool(args.password):
        raise ValueError("--username and --password must be given together")
    if args.auth_file:
        return read_auth_file(args.auth_file)
    return [(args.username, args.password)] if args.username else None


def main(argv: Sequence[str] | None = None) -> int:
    """Check the flags (rank 0: also the tmp dir) and the model config, then start the studio.

    Every refusal comes before torch, stable-audio-tools and Gradio are imported (seconds), with exit
    code 2; under torchrun a rank that refuses ends the job before any rank loads the model.
    """
    args = build_parser().parse_args(argv)
    rank, world_size = launched_as()
    try:
        auth, tmp_dir, removed = _check(args) if rank == 0 else (None, args.tmp_dir, 0)
        spec = model_spec_from_args(args)  # on every rank: each node reads its own hub cache
    except (ValueError, OSError, ModelLoadError) as exc:
        print(f"{where(rank, world_size)}error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from stable_audio_tools_ext.quiet import hide_library_warnings

    hide_library_warnings()  # before the imports below, which import the libraries that warn
    from stable_audio_tools_ext.studio.launch import run_studio  # torch, Gradio: only once the inputs are known good

    return run_studio(args, spec, auth, tmp_dir, removed)


def _check(args: argparse.Namespace) -> tuple[list[tuple[str, str]] | None, Path, int]:
    """Rank 0's checks of the flags and the tmp dir: (auth, tmp dir, files removed); ``ValueError``/``OSError``."""
    auth = _auth(args)
    tmp_dir = prepare_tmp_dir(args.tmp_dir)
    return auth, tmp_dir, clean_tmp_dir(tmp_dir, args.tmp_max_age_hours * 3600)


if __name__ == "__main__":
    sys.exit(main())
