#!/usr/bin/env python
"""Interactive studio: audition prompts on the same engine as generate.py, then export them as a sweep.

    python run_gradio.py --pretrained-name stabilityai/stable-audio-open-1.0
    # then open http://127.0.0.1:7860 (on a cluster node: ssh -L 7860:127.0.0.1:7860 NODE)
    torchrun --nproc_per_node gpu --master_port 29501 run_gradio.py --pretrained-name ...
    # every GPU of the node: rank 0 serves the page, each request is split over all ranks

Argument parsing and wiring only; the app lives in ``stable_audio_tools_ext.studio.app``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from stable_audio_tools_ext.quiet import hide_library_warnings

hide_library_warnings()  # before the imports below, which import the libraries that warn

from stable_audio_tools_ext.model.loading import load_model  # noqa: E402
from stable_audio_tools_ext.model.options import add_model_arguments, model_spec_from_args  # noqa: E402
from stable_audio_tools_ext.model.spec import ModelLoadError  # noqa: E402
from stable_audio_tools_ext.run.argtypes import add_dist_timeout_argument, positive_float, positive_int  # noqa: E402
from stable_audio_tools_ext.run.distributed import DistContext, broadcast_from_main, join_job, shutdown  # noqa: E402
from stable_audio_tools_ext.run.exits import EXIT_JOB_FAILED, ConciseArgumentParser  # noqa: E402
from stable_audio_tools_ext.studio.app import build_app  # noqa: E402
from stable_audio_tools_ext.studio.files import clean_tmp_dir, prepare_tmp_dir  # noqa: E402
from stable_audio_tools_ext.studio.ranks import LocalRunner, RankPool, serve_requests  # noqa: E402
from stable_audio_tools_ext.studio.settings import StudioSettings, launch_options, read_auth_file  # noqa: E402

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = ConciseArgumentParser(
        prog="run_gradio.py",
        description="Interactive Stable Audio studio (Gradio) on the same engine as generate.py.",
    )
    add_model_arguments(parser)
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


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = join_job(args.device, args.dist_timeout)
    if ctx is None:
        return EXIT_JOB_FAILED
    try:
        return _serve(args, ctx) if ctx.is_main else _work(args, ctx)
    finally:
        shutdown(ctx)


def _check(args: argparse.Namespace) -> tuple[list[tuple[str, str]] | None, Path, int]:
    """Rank 0's checks of the flags and the tmp dir: (auth, tmp dir, files removed); ``ValueError``/``OSError``."""
    auth = _auth(args)
    tmp_dir = prepare_tmp_dir(args.tmp_dir)
    return auth, tmp_dir, clean_tmp_dir(tmp_dir, args.tmp_max_age_hours * 3600)


def _work(args: argparse.Namespace, ctx: DistContext) -> int:
    """Ranks other than 0 (under torchrun): load the model on this rank's device and serve rank 0's requests."""
    if not broadcast_from_main(ctx, None):  # rank 0's verdict on the flags: it prints the error itself
        return EXIT_USAGE
    try:
        loaded = load_model(model_spec_from_args(args), ctx.device, args.precision)
    except (ValueError, OSError, ModelLoadError) as exc:
        print(f"error: rank {ctx.rank}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    serve_requests(ctx, loaded)
    return 0


def _serve(args: argparse.Namespace, ctx: DistContext) -> int:
    try:
        auth, tmp_dir, removed = _check(args)
        spec = model_spec_from_args(args)
    except (ValueError, OSError, ModelLoadError) as exc:
        broadcast_from_main(ctx, False)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    broadcast_from_main(ctx, True)
    try:
        loaded = load_model(spec, ctx.device, args.precision)
    except (ValueError, OSError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if removed:
        print(f"removed {removed} files older than {args.tmp_max_age_hours:g} h from {tmp_dir}")
    if auth is None and (args.share or not _is_loopback(args.host)):
        print("warning: the studio is reachable from other machines without a password: add --auth-file", file=sys.stderr)
    settings = StudioSettings(
        tmp_dir=tmp_dir, max_age_seconds=args.tmp_max_age_hours * 3600, max_variations=args.max_variations,
        max_batch_items=args.max_batch_items, batch_size=args.batch_size,
        max_upload_bytes=int(args.max_upload_mb * 1_000_000),
    )  # fmt: skip
    runner = RankPool(ctx, loaded) if ctx.world_size > 1 else LocalRunner(loaded)
    app = build_app(loaded, settings, runner)
    try:
        _, local_url, _ = app.queue().launch(**launch_options(settings, args.host, args.port, args.share, auth))
        ranks = f" ({ctx.world_size} ranks generate)" if ctx.world_size > 1 else ""
        print(f"* Running on local URL:  {local_url}{ranks}", flush=True)  # Gradio prints the public one itself
        if not args.share:
            print("* To create a public link, add --share (with --auth-file: anyone with the link can use the studio)",
                  flush=True)  # fmt: skip
        app.block_thread()  # until Ctrl-C, which it turns into closing the server
    finally:
        if isinstance(runner, RankPool):
            runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
