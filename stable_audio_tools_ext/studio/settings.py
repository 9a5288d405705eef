"""Limits, locations and server options of one running studio: the safety-relevant choices in one place."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

# Gradio's file routes, ``/gradio_api/file=<target>`` and the older ``/gradio_api/file/<target>``.
FILE_ROUTE = re.compile(r"(?:/gradio_api)?/file[=/](?P<target>.*)\Z", re.DOTALL)
URL_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*:")  # http:, HTTPS:, ftp:, ...: anything that is not a path
# The server's flag that raises ``max_batch_items``: the batch tab's item-limit message names it.
BATCH_LIMIT_FLAG = "run_gradio.py --max-batch-items"


@dataclass(frozen=True)
class StudioSettings:
    """Limits and locations of one running studio."""

    tmp_dir: Path
    max_age_seconds: float = 24 * 3600  # Gradio's copies of outputs are deleted after this, while it runs
    max_variations: int = 8
    max_batch_items: int = 64
    batch_size: int = 4  # items per forward pass in the batch tab
    max_upload_bytes: int = 1_000_000


def read_auth_file(path: Path) -> list[tuple[str, str]]:
    """``user:password`` lines (blank lines and ``#`` comments ignored) -> Gradio's ``auth`` list.

    A file keeps passwords out of the process list and shell history, unlike ``--password``.
    """
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError(f"{path}:{number}: expected 'username:password'")
        pairs.append((user.strip(), password))
    if not pairs:
        raise ValueError(f"{path}: no 'username:password' line")
    return pairs


def is_url_file_request(path: str) -> bool:
    """Whether a request path asks Gradio's file route for a URL rather than a file."""
    route = FILE_ROUTE.match(path)
    return bool(route and URL_SCHEME.match(route["target"]))


def names_a_url_file(body: bytes) -> bool:
    """Whether a JSON request body hands Gradio a file by URL: ``{"path": "http://..."}`` at any depth.

    That is how an event's file input arrives (``FileData``), and Gradio downloads such a file
    into its cache before the handler runs. A body that is not JSON names nothing.
    """
    try:
        pending = [json.loads(body)]
    except (ValueError, RecursionError):
        return False
    while pending:  # a loop, not recursion: any nesting depth the JSON parser accepted
        value = pending.pop()
        if isinstance(value, dict):
            path = value.get("path")
            if isinstance(path, str) and URL_SCHEME.match(path):
                return True
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (event requests are small; uploads are multipart and not read here)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then passes on what follows (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replay


class RefuseUrlFetches:
    """ASGI middleware: a request that would make Gradio fetch a URL gets 403 before Gradio sees it.

    Gradio fetches URLs on the server in two places a logged-in user can reach: the file route
    (``/gradio_api/file=<http(s) URL>`` is fetched and streamed back) and an event's file input
    given as a URL (downloaded into the cache, then handed to the handler). It only lets public
    addresses through and looks names that resolve to private ones up with dns.google, but either
    way a user could make a cluster node fetch what they like. The studio only ever reads files
    uploaded to it and serves its own, so no URL is let through at all.
    """

    REFUSAL = "the studio serves and reads only its own files; it does not fetch URLs"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if is_url_file_request(scope["path"]):
            await PlainTextResponse(self.REFUSAL, status_code=403)(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"").lower()
        if scope["method"] == "POST" and not content_type.startswith(b"multipart/"):  # any body FastAPI may read as JSON
            body = await _read_body(receive)
            if names_a_url_file(body):
                await PlainTextResponse(self.REFUSAL, status_code=403)(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


def launch_options(
    settings: StudioSettings, host: str, port: int | None, share: bool, auth: list[tuple[str, str]] | None
) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``.

    Gradio's own start-up lines are silenced (``quiet``) because they name ``launch()`` arguments
    rather than the studio's flags; ``run_gradio.py`` prints its own, then blocks.
    """
    return {
        "server_name": host,
        "server_port": port,
        "share": share,
        "auth": auth or None,
        "max_file_size": settings.max_upload_bytes,
        "allowed_paths": [str(settings.tmp_dir.resolve())],
        "enable_monitoring": False,
        "ssr_mode": False,  # client-side rendering: no Node.js server beside Python
        "show_error": True,
        "footer_links": ["api", "settings"],
        "app_kwargs": {"middleware": [Middleware(RefuseUrlFetches)]},
        "num_workers": 0,  # no static-file worker processes: they would answer file requests without the middleware
        "quiet": True,
        "prevent_thread_lock": True,
    }
