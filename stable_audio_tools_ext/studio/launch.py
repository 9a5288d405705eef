"""The studio's run, once its flags checked out: join the ranks, load the model, serve the page.

``run_gradio.py`` imports this module only after its flags, its tmp dir and the model config passed
their checks, because it pulls in torch, stable-audio-tools and Gradio (several seconds): ``-h`` and a
refused flag never wait for them, as with ``generate.py`` (``run/launch.py``).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from ..model.loading import load_model
from ..model.spec import ModelLoadError, ModelSpec
from ..run.distributed import DistContext, join_job, shutdown
from ..run.exits import EXIT_JOB_FAILED, EXIT_USAGE
from .app import build_app
from .ranks import LocalRunner, RankPool, serve_requests
from .settings import StudioSettings, launch_options

Auth = list[tuple[str, str]] | None


def run_studio(args: argparse.Namespace, spec: ModelSpec, auth: Auth, tmp_dir: Path, removed: int) -> int:
    """Rank 0 serves the page; under torchrun the other ranks generate their share of its requests.

    ``auth``, ``tmp_dir`` and ``removed`` are rank 0's checked flags (the other ranks get ``None``,
    ``args.tmp_dir`` and 0 and do not use them).
    """
    ctx = join_job(args.device, args.dist_timeout)
    if ctx is None:
        return EXIT_JOB_FAILED
    try:
        return _serve(args, ctx, spec, auth, tmp_dir, removed) if ctx.is_main else _work(args, ctx, spec)
    finally:
        shutdown(ctx)


def _work(args: argparse.Namespace, ctx: DistContext, spec: ModelSpec) -> int:
    """Ranks other than 0 (under torchrun): load the model on this rank's device and serve rank 0's requests."""
    try:
        loaded = load_model(spec, ctx.device, args.precision)
    except (ValueError, OSError, ModelLoadError) as exc:
        print(f"error: rank {ctx.rank}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    serve_requests(ctx, loaded)
    return 0


def _serve(args: argparse.Namespace, ctx: DistContext, spec: ModelSpec, auth: Auth, tmp_dir: Path, removed: int) -> int:
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


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
