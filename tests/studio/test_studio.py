"""The studio without a browser: its helpers, its safety rules, and its API against ``generate.py``.

The API tests run ``run_gradio.py`` as a subprocess with a password, on the small-window tiny
model, and drive it with ``gradio_client`` as a script would.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
import soundfile as sf

import run_gradio
from stable_audio_tools_ext.quiet import KNOWN_LIBRARY_WARNINGS
from stable_audio_tools_ext.request import GenerationRequest
from stable_audio_tools_ext.run import cli, exits
from stable_audio_tools_ext.run.inprocess import plan_tree, sampling_defaults
from stable_audio_tools_ext.studio.actions import (
    RANDOM_SEED_RANGE,
    Audition,
    audition_tree,
    generate_items,
    leaf_path,
    resolve_seed,
    tree_yaml,
    write_tree,
)
from stable_audio_tools_ext.studio.files import (
    MARKER_NAME,
    OutsideTmpDirError,
    clean_tmp_dir,
    confined,
    new_run_dir,
    prepare_tmp_dir,
    zip_folder,
)
from stable_audio_tools_ext.studio.ranks import LocalRunner
from stable_audio_tools_ext.studio.settings import (
    StudioSettings,
    is_url_file_request,
    launch_options,
    names_a_url_file,
    read_auth_file,
)
from stable_audio_tools_ext.tree.conditions import ConditionTreeError
from stable_audio_tools_ext.tree.plan import build_plan
from stable_audio_tools_ext.tree.reader import parse_condition_tree
from tests.studio.browser import server_log, studio_server
from tests.support import audio_files, free_port

AUDITION = Audition(
    prompt='rain: "heavy", # not a comment',  # YAML-significant characters must survive the export
    negative_prompt="music",
    seconds_start=0.25,
    seconds_total=1.5,
    steps=8,
    cfg_scale=6.5,
    sampler_type="dpmpp-2m-sde",
)


# --- seeds, export and validation ---------------------------------------------------------------


def test_seed_minus_one_draws_a_random_seed_and_others_are_kept() -> None:
    drawn = {resolve_seed(-1) for _ in range(8)}
    assert all(0 <= seed < RANDOM_SEED_RANGE for seed in drawn) and len(drawn) > 1
    assert resolve_seed(None) >= 0
    assert resolve_seed(7) == 7 and resolve_seed(7.0) == 7
    for bad in (-2, 1.5):
        with pytest.raises(ValueError, match="seed must be an integer"):
            resolve_seed(bad)


def test_exported_yaml_plans_to_exactly_the_auditioned_requests(small_model) -> None:
    """The hand-off: generate.py's parser and planner read the export back as the UI's requests."""
    text = tree_yaml(audition_tree(AUDITION, seed=41, variations=3, name="sfx/rain/heavy"), small_model)
    spec = small_model.spec
    leaves = parse_condition_tree(text, spec.family.samplers)
    items = build_plan(leaves, sampling_defaults(spec), spec.window_seconds, "wav")
    expected = [
        GenerationRequest(
            prompt=AUDITION.prompt, negative_prompt="music", seed=seed, seconds_start=0.25, seconds_total=1.5,
            steps=8, cfg_scale=6.5, sampler_type="dpmpp-2m-sde", sigma_min=0.3, sigma_max=500.0,
        )
        for seed in (41, 42, 43)
    ]  # fmt: skip
    assert [item.request for item in items] == expected
    assert [item.relpath for item in items] == [f"sfx/rain/heavy_item-{k}.wav" for k in (1, 2, 3)]
    assert "--clip-length" in text and f"--revision {spec.revision}" in text and "--precision fp32" in text
    braced = dataclasses.replace(AUDITION, prompt="a {door} slams", negative_prompt="{{music}}")
    (leaf,) = parse_condition_tree(tree_yaml(audition_tree(braced, seed=41, variations=1), small_model),
                                   spec.family.samplers)  # fmt: skip
    assert (leaf.prompt, leaf.negative_prompt) == ("a {door} slams", "{{music}}")  # typed text is not a template


def test_leaf_names_must_be_usable_as_paths() -> None:
    assert leaf_path(" music/drums/kick ") == ("music", "drums", "kick")
    for bad in ("a//b", "../x", "a/./b", ""):
        with pytest.raises(ValueError, match="leaf name"):
            leaf_path(bad)


def test_plan_tree_reports_every_problem_with_its_yaml_path(small_model, tmp_path) -> None:
    tree = "a:\n  x: {prompt: one, seconds_total: 99}\n  y: {prompt: two, stpes: 3}\nb: {prompt: three, n_samples: 5}\n"
    spec = small_model.spec
    with pytest.raises(ConditionTreeError) as caught:
        plan_tree(write_tree(tree, tmp_path, tmp_path), spec, sampling_defaults(spec), max_items=100)
    rendered = [p.render("tree.yaml") for p in caught.value.problems]
    assert any(r.startswith("tree.yaml:2: a/x:") and "longer than the model's 2.97 s window" in r for r in rendered)
    assert any(r.startswith("tree.yaml:3: a/y/stpes:") for r in rendered)
    with pytest.raises(ConditionTreeError, match="more than the limit of 4"):
        plan_tree(write_tree("b: {prompt: three, n_samples: 5}\n", new_run_dir(tmp_path, "b"), tmp_path), spec,
                  sampling_defaults(spec), max_items=4)  # fmt: skip


def test_plan_tree_returns_the_warnings_generate_py_prints(small_model, tmp_path) -> None:
    spec = small_model.spec  # cfg 7 by default: only the leaf that sets cfg_scale 1 loses its negative prompt
    tree = tmp_path / "tree.yaml"
    tree.write_text("kit:\n  kick: {prompt: kick, negative_prompt: hum, cfg_scale: 1}\n  snare: {prompt: snare, negative_prompt: hum}\n")
    items, warnings = plan_tree(tree, spec, sampling_defaults(spec), max_items=10)
    assert len(items) == 2
    assert warnings.splitlines() == [
        "warning: tree.yaml:2: kit/kick: negative_prompt is ignored: the cfg_scale this leaf gets is 1, which "
        "switches off the classifier-free guidance a negative prompt works through; set cfg_scale above 1 to use it"
    ]


def test_tags_are_refused_not_executed(small_model, tmp_path) -> None:
    tree = "a: {prompt: !!python/object/apply:os.system [touch pwned]}\n"
    spec = small_model.spec
    with pytest.raises(ConditionTreeError):
        plan_tree(write_tree(tree, tmp_path, tmp_path), spec, sampling_defaults(spec), max_items=10)
    assert not Path("pwned").exists()


def test_generate_items_writes_clipped_wavs_and_a_manifest(small_model, tmp_path) -> None:
    spec = small_model.spec
    text = tree_yaml(audition_tree(AUDITION, seed=5, variations=2), small_model)
    items, _ = plan_tree(write_tree(text, tmp_path, tmp_path), spec, sampling_defaults(spec), max_items=2)
    progress: list[tuple[int, int]] = []
    records = generate_items(LocalRunner(small_model), items, tmp_path, tmp_path, batch_size=2,
                             on_advance=lambda d, t: progress.append((d, t)))  # fmt: skip
    assert progress == [(2, 2)]  # both variations in one batch
    assert sorted(records) == ["audition_item-1.wav", "audition_item-2.wav"]
    for relpath, record in records.items():
        info = sf.info(tmp_path / relpath)
        assert (info.samplerate, info.channels, info.frames) == (44100, 2, int(1.5 * 44100))
        assert record["status"] == "ok" and record["clip_length"] is True
    assert not (tmp_path / ".progress").exists()


def test_progress_follows_model_passes_and_never_claims_done_early() -> None:
    from stable_audio_tools_ext.studio.handlers import ProgressReporter

    shown: list[tuple[float, str]] = []
    reporter = ProgressReporter(lambda fraction, desc: shown.append((fraction, desc)), total=2, steps=4)
    for calls in range(1, 7):  # a sampler with two passes per step overshoots the step count
        reporter.calls(calls)
    reporter.items(2, 2)
    assert [fraction for fraction, _ in shown] == [0.0, 0.25, 0.5, 0.75, 0.99, 0.99, 0.99, 1.0]
    assert shown[2][1] == "sampling 2 clip(s): step 2 of 4"
    batch: list[tuple[float, str]] = []
    reporter = ProgressReporter(lambda fraction, desc: batch.append((fraction, desc)), total=4)
    reporter.calls(3)
    reporter.items(2, 4)
    reporter.calls(5)
    assert batch[-1] == (0.5, "2 of 4 clips; 2 model passes in this batch")


# --- the tmp dir: cleaning, confinement, zips ---------------------------------------------------


def test_tmp_dir_cleaning_removes_only_old_files(tmp_path) -> None:
    root = prepare_tmp_dir(tmp_path / "studio")
    assert clean_tmp_dir(root, 3600) == 0
    old, new = root / "generate/run-a/old.wav", root / "generate/run-b/new.wav"
    for path in (old, new):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    day_ago = time.time() - 86400
    os.utime(old, (day_ago, day_ago))
    os.utime(root / MARKER_NAME, (day_ago, day_ago))
    assert prepare_tmp_dir(root) == root and clean_tmp_dir(root, 3600) == 1
    assert not old.exists() and not old.parent.exists() and new.exists() and (root / MARKER_NAME).exists()
    assert clean_tmp_dir(root, 3600, now=time.time() + 7200) == 1 and not new.exists()


def test_tmp_dir_refuses_a_folder_it_did_not_create(tmp_path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a studio tmp dir"):
        prepare_tmp_dir(tmp_path)
    assert (tmp_path / "precious.txt").exists()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_tmp_dir_is_made_private_and_links_to_it_are_resolved_once(tmp_path) -> None:
    root = prepare_tmp_dir(tmp_path / "new" / "studio")
    assert root == (tmp_path / "new" / "studio").resolve()
    assert _mode(root) == 0o700 and root.stat().st_uid == os.geteuid()
    run = new_run_dir(root, "batch")
    assert run.parent == root / "batch" and _mode(run) == _mode(run.parent) == 0o700
    link = tmp_path / "link"
    link.symlink_to(root, target_is_directory=True)
    assert prepare_tmp_dir(link) == root  # the app works on the real path from then on


OTHER_UID = 65534  # nobody
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user (chown) needs root")


def _refusal(tmp_dir: Path, capsys) -> str:
    """What ``run_gradio.py --tmp-dir tmp_dir`` prints when it refuses the folder (exit 2, one line)."""
    assert run_gradio.main(["--tmp-dir", str(tmp_dir)]) == run_gradio.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    return captured.err


@needs_root
def test_tmp_dir_of_another_user_is_refused(tmp_path, capsys) -> None:
    """Made first by someone else (who would read every clip), even with mode 700: refused, left alone."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    error = _refusal(theirs, capsys)
    assert error.startswith(f"error: --tmp-dir {theirs}: is owned by nobody (uid {OTHER_UID}), not by you")
    assert "choose another --tmp-dir" in error and list(theirs.iterdir()) == []
    mine = prepare_tmp_dir(tmp_path / "mine")
    link = tmp_path / "their-link"  # someone else's link, even to a private folder of ours
    link.symlink_to(mine, target_is_directory=True)
    os.lchown(link, OTHER_UID, OTHER_UID)
    assert _refusal(link, capsys).startswith(f"error: --tmp-dir {link}: is a symbolic link owned by nobody (uid {OTHER_UID})")


def test_tmp_dir_open_to_others_is_refused_with_the_chmod_to_run(tmp_path, capsys) -> None:
    wide = tmp_path / "wide"
    wide.mkdir()
    os.chmod(wide, 0o755)
    error = _refusal(wide, capsys)
    assert "mode 0755" in error and f"run 'chmod 700 {wide}'" in error
    assert _mode(wide) == 0o755 and list(wide.iterdir()) == []  # neither changed nor written to
    os.chmod(wide, 0o700)
    assert prepare_tmp_dir(wide) == wide


def test_a_run_folder_swapped_for_a_link_gets_no_writes(small_model, tmp_path) -> None:
    root = prepare_tmp_dir(tmp_path / "studio")
    outside = tmp_path / "outside"
    outside.mkdir()
    spec = small_model.spec
    items, _ = plan_tree(write_tree("a: {prompt: x, seconds_total: 1}\n", new_run_dir(root, "plan"), root), spec,
                         sampling_defaults(spec), max_items=1)  # fmt: skip
    run = new_run_dir(root, "batch")
    run.rmdir()
    run.symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutsideTmpDirError):
        write_tree("a: {prompt: x}\n", run, root)
    with pytest.raises(OutsideTmpDirError):
        generate_items(LocalRunner(small_model), items, run, root, batch_size=1)
    with pytest.raises(OutsideTmpDirError):
        zip_folder(run, root, run / "results.zip")
    (root / "generate").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutsideTmpDirError, match="is not a directory"):
        new_run_dir(root, "generate")
    assert list(outside.iterdir()) == []
    victim = outside / "victim.txt"  # a link left where a file will be written is not followed either
    victim.write_text("keep me")
    export = new_run_dir(root, "export")
    (export / "tree.yaml").symlink_to(victim)
    with pytest.raises(FileExistsError):
        write_tree("a: {prompt: x}\n", export, root)
    assert victim.read_text() == "keep me"


def test_files_outside_the_tmp_dir_are_neither_served_nor_zipped(tmp_path) -> None:
    root = tmp_path / "studio"
    run = root / "batch/run"
    (run / "a").mkdir(parents=True)
    (run / "a/x_item-1.wav").write_bytes(b"wav")
    (run / "manifest.jsonl").write_text("{}\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (run / "link.txt").symlink_to(secret)
    with pytest.raises(OutsideTmpDirError):
        confined(secret, root)
    with pytest.raises(OutsideTmpDirError):
        confined(run / "link.txt", root)  # resolves outside
    with pytest.raises(OutsideTmpDirError):
        confined(root / "../secret.txt", root)
    archive = zip_folder(run, root, run / "results.zip")
    assert sorted(zipfile.ZipFile(archive).namelist()) == ["a/x_item-1.wav", "manifest.jsonl"]
    with pytest.raises(OutsideTmpDirError):
        zip_folder(tmp_path, root, run / "all.zip")


# --- launch settings -----------------------------------------------------------------------------


def test_auth_file(tmp_path) -> None:
    path = tmp_path / "users"
    path.write_text("# studio users\nalice:pa:ss\n\n bob :secret\n")
    assert read_auth_file(path) == [("alice", "pa:ss"), ("bob", "secret")]
    path.write_text("alice\n")
    with pytest.raises(ValueError, match="users:1: expected 'username:password'"):
        read_auth_file(path)


def test_defaults_are_private_and_share_the_generate_model_flags(tmp_path) -> None:
    args = run_gradio.build_parser().parse_args([])
    assert (args.host, args.share, args.username, args.auth_file) == ("127.0.0.1", False, None, None)
    generate_flags = {a.dest for a in cli.build_parser()._actions}
    studio_flags = {a.dest for a in run_gradio.build_parser()._actions}
    assert {"pretrained_name", "model_config", "ckpt_path", "precision", "device"} <= generate_flags & studio_flags
    options = launch_options(StudioSettings(tmp_path, max_upload_bytes=1000), "127.0.0.1", 7860, False, None)
    assert options["allowed_paths"] == [str(tmp_path.resolve())] and options["max_file_size"] == 1000
    assert (options["share"], options["auth"], options["enable_monitoring"]) == (False, None, False)
    assert (options["num_workers"], options["quiet"]) == (0, True)  # no worker bypasses the URL refusal below
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"  # set by importing the UI


def test_username_needs_a_password(capsys) -> None:
    assert run_gradio.main(["--username", "alice"]) == run_gradio.EXIT_USAGE
    assert "--username and --password must be given together" in capsys.readouterr().err


def test_under_torchrun_rank_0_gives_up_on_ranks_that_never_join_after_the_dist_timeout(monkeypatch, capsys) -> None:
    """Only rank 0 of two: the studio's process group takes --dist-timeout (torch's own: 10 min with nccl)."""
    launched = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    for name, value in launched.items():
        monkeypatch.setenv(name, value)
    assert run_gradio.main(["--device", "cpu", "--dist-timeout", "0.02"]) == exits.EXIT_JOB_FAILED
    assert "error: the 2 ranks did not all join within --dist-timeout 0.02 min" in capsys.readouterr().err


# --- the running app, through its API ------------------------------------------------------------

USER, PASSWORD = "tester", "correct horse battery"
MAX_BATCH_ITEMS = 6
MAX_UPLOAD_BYTES = 20_000


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with a small body and records it as ``"METHOD target"``."""

    def _record(self) -> None:
        self.server.hits.append(f"{self.command} {self.path}")
        body = b"fetched by the studio"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_CONNECT = _record

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def url_sink() -> Iterator[tuple[str, list[str]]]:
    """A tiny HTTP server on 127.0.0.1 that records every request it gets: its URL and the record."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        assert httpx.get(f"{url}check", timeout=30).text == "fetched by the studio"
        assert server.hits == ["GET /check"]  # it counts what reaches it
        server.hits.clear()
        yield url, server.hits
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def studio(small_hub_env, url_sink, tmp_path_factory) -> tuple[str, Path]:
    """The app with a password and small limits; its HTTP proxy is ``url_sink``.

    Through the proxy, any request the server makes to another host (Gradio looks names up through
    dns.google when they resolve to a private address) reaches the sink instead of leaving the
    machine, and is counted; only 127.0.0.1 is reached directly.
    """
    base = tmp_path_factory.mktemp("api")
    auth_file = base / "users"
    auth_file.write_text(f"{USER}:{PASSWORD}\n")
    tmp_dir = base / "studio-tmp"
    limits = ["--max-batch-items", str(MAX_BATCH_ITEMS), "--max-upload-mb", str(MAX_UPLOAD_BYTES / 1e6)]
    proxy = {name: url_sink[0] for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")}
    env = {**small_hub_env, **proxy, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    with studio_server(env, tmp_dir, "--auth-file", str(auth_file), *limits) as url:
        yield url, tmp_dir


@pytest.fixture(scope="module")
def client(studio):
    from gradio_client import Client

    return Client(studio[0], auth=(USER, PASSWORD), verbose=False, download_files=str(studio[1].parent / "downloads"))


@contextmanager
def _logged_in(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as session:
        response = session.post("/login", data={"username": USER, "password": PASSWORD})
        assert response.status_code == 200, response.text
        yield session


@pytest.mark.slow
def test_requests_without_login_are_rejected(studio) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    url, tmp_dir = studio
    for path in ("/config", "/gradio_api/info", f"/gradio_api/file={tmp_dir / MARKER_NAME}"):
        assert httpx.get(url + path.lstrip("/"), timeout=30).status_code == 401, path
    assert httpx.post(url + "login", data={"username": USER, "password": "wrong"}, timeout=30).status_code == 400
    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        Client(url, verbose=False)
    with pytest.raises(ValueError, match="Could not login"):
        Client(url, auth=(USER, "wrong"), verbose=False)


@pytest.mark.slow
def test_only_files_in_the_tmp_dir_are_served(studio) -> None:
    url, tmp_dir = studio
    with _logged_in(url) as session:
        assert session.get(f"/gradio_api/file={tmp_dir / MARKER_NAME}").status_code == 200
        for outside in ("/etc/passwd", str(Path(run_gradio.__file__).resolve()), f"{tmp_dir}/../users"):
            assert session.get(f"/gradio_api/file={outside}").status_code == 403, outside


def test_requests_for_urls_are_recognised() -> None:
    for url in ("http://127.0.0.1/x", "https://example.org/a.wav", "HTTP://a", " http://a", "ftp://a", "file:///etc/passwd"):
        assert is_url_file_request(f"/gradio_api/file={url}") and is_url_file_request(f"/gradio_api/file/{url}")
        assert names_a_url_file(json.dumps({"data": [[{"path": url, "meta": {"_type": "gradio.FileData"}}]], "fn_index": 2}))
    for path in ("/gradio_api/file=/tmp/studio/a.wav", "/gradio_api/file=/tmp/a:b.wav", "/assets/http://x.js", "/"):
        assert not is_url_file_request(path), path
    uploaded = {"path": "/tmp/studio/gradio/ab/tree.yaml", "url": "http://127.0.0.1:7860/gradio_api/file=/tmp/studio/gradio/ab/tree.yaml"}
    for body in (json.dumps({"data": [uploaded, "http://a prompt"]}), "username=a&password=http://b", "[" * 100_000, b"\xff"):
        assert not names_a_url_file(body.encode() if isinstance(body, str) else body), body[:40]


@pytest.mark.slow
def test_the_file_route_fetches_no_url(studio, url_sink) -> None:
    """Server-side request forgery: a logged-in user asks the server for a URL; nothing is fetched."""
    url, tmp_dir = studio
    sink, hits = url_sink
    target = f"{sink}probe.wav"
    paths = [f"/gradio_api/file={target}", f"/gradio_api/file/{target}", f"/gradio_api/file={target.upper()}",
             "/gradio_api/file=" + quote(target, safe="")]  # fmt: skip
    with _logged_in(url) as session:
        for path in paths:
            for method in ("GET", "HEAD"):
                response = session.request(method, path)
                assert response.status_code == 403, (method, path, response.text)
            assert "does not fetch URLs" in session.get(path).text
        assert session.get(f"/gradio_api/file={tmp_dir / MARKER_NAME}").status_code == 200  # its own files still are
    assert hits == []


def _upload_event(session: httpx.Client) -> dict[str, int]:
    """The ids that start the batch tab's upload event (private: not callable through gradio_client)."""
    config = session.get("/config").json()
    for index, dependency in enumerate(config["dependencies"]):
        for target, event in dependency["targets"]:
            if event == "upload":
                return {"fn_index": dependency.get("id", index), "trigger_id": target}
    raise AssertionError("no upload event in the app's config")


@pytest.mark.slow
def test_an_event_input_given_as_a_url_is_not_downloaded(studio, url_sink) -> None:
    """The other way to make Gradio fetch: an input file given by URL, which it downloads before the handler."""
    url, _ = studio
    sink, hits = url_sink
    with _logged_in(url) as session:
        event = _upload_event(session)
        remote = {"path": f"{sink}tree.yaml", "orig_name": "tree.yaml", "meta": {"_type": "gradio.FileData"}}
        refused = session.post("/gradio_api/queue/join", json={**event, "data": [remote], "session_hash": "url"})
        assert refused.status_code == 403 and "does not fetch URLs" in refused.text
        uploaded = session.post("/gradio_api/upload", files={"files": ("tree.yaml", b"a: {prompt: x}\n")}).json()[0]
        local = {"path": uploaded, "orig_name": "tree.yaml", "meta": {"_type": "gradio.FileData"}}
        accepted = session.post("/gradio_api/queue/join", json={**event, "data": [local], "session_hash": "local"})
        assert accepted.status_code == 200 and "event_id" in accepted.json()  # an uploaded file still goes through
    assert hits == []


@pytest.mark.slow
def test_uploads_are_limited_in_size(studio) -> None:
    with _logged_in(studio[0]) as session:
        small = session.post("/gradio_api/upload", files={"files": ("tree.yaml", b"a: {prompt: x}\n")})
        assert small.status_code == 200, small.text
        large = session.post("/gradio_api/upload", files={"files": ("tree.yaml", b"#" * (MAX_UPLOAD_BYTES + 1))})
        assert large.status_code == 413, large.text


def _generate(client, seed: int, variations: int) -> tuple:
    return client.predict(
        AUDITION.prompt, AUDITION.negative_prompt, AUDITION.seconds_start, AUDITION.seconds_total, AUDITION.steps,
        AUDITION.cfg_scale, AUDITION.sampler_type, seed, variations, api_name="/generate",
    )  # fmt: skip


@pytest.mark.slow
def test_audition_exported_and_run_by_generate_py_gives_identical_audio(client, tmp_path) -> None:
    """Audition in the UI, export, run the export with generate.py: the same WAVs (max diff <= 1e-4)."""
    status, seed_used, *slots = _generate(client, seed=1234, variations=2)
    assert seed_used == "1234" and "seeds 1234..1235" in status
    ui_files = [slots[0], slots[4]]  # the audio of variations 1 and 2 (4 API outputs per variation)
    assert slots[8] is None  # variation 3 is empty
    for index, path in enumerate(ui_files):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (44100, 2, int(AUDITION.seconds_total * 44100))
        assert json.loads(slots[4 * index + 3])["seed"] == 1234 + index
        assert Path(slots[4 * index + 1]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the spectrogram

    text, _ = client.predict(
        AUDITION.prompt, AUDITION.negative_prompt, AUDITION.seconds_start, AUDITION.seconds_total, AUDITION.steps,
        AUDITION.cfg_scale, AUDITION.sampler_type, -1, 2, seed_used, "sfx/rain", api_name="/export",
    )  # fmt: skip
    tree = tmp_path / "tree.yaml"
    tree.write_text(text)
    out = tmp_path / "sweep"
    assert cli.main(["--cond-yaml-path", str(tree), "--output-dir", str(out), "--clip-length"]) == exits.EXIT_OK
    sweep = audio_files(out)
    assert sorted(sweep) == ["sfx/rain_item-1.wav", "sfx/rain_item-2.wav"]
    for ui_file, relpath in zip(ui_files, sorted(sweep), strict=True):
        ui_audio, _ = sf.read(ui_file, dtype="float32")
        cli_audio, _ = sf.read(sweep[relpath], dtype="float32")
        assert ui_audio.shape == cli_audio.shape
        assert np.abs(ui_audio - cli_audio).max() <= 1e-4


@pytest.mark.slow
def test_random_seed_is_reported_and_used(client) -> None:
    _, seed_used, *slots = _generate(client, seed=-1, variations=1)
    assert 0 <= int(seed_used) < RANDOM_SEED_RANGE
    assert json.loads(slots[3])["seed"] == int(seed_used)


@pytest.mark.slow
def test_invalid_settings_are_refused_with_the_reason(client) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="longer than the model's 2.97 s window"):
        client.predict("x", "", 2.0, 2.0, 8, 7.0, "dpmpp-3m-sde", 1, 1, api_name="/generate")
    with pytest.raises(AppError, match="prompt: must not be empty"):
        client.predict("  ", "", 0, 1.0, 8, 7.0, "dpmpp-3m-sde", 1, 1, api_name="/generate")


def test_batch_tab_status_shows_the_trees_warnings(client) -> None:
    tree = "fx:\n  door: {prompt: door, seconds_total: 1, negative_prompt: hum}\n"
    status, _ = client.predict(tree, 8, 1.0, "dpmpp-3m-sde", 1, 0, api_name="/validate_batch")  # cfg 1: no guidance
    assert status.startswith("valid: 1 items")
    assert "\nwarning: tree.yaml:2: fx/door: negative_prompt is ignored" in status
    status, _ = client.predict(tree, 8, 7.0, "dpmpp-3m-sde", 1, 0, api_name="/validate_batch")
    assert status.startswith("valid: 1 items") and "warning" not in status


def test_batch_tab_accepts_sweep_trees_and_reads_no_server_files(client) -> None:
    sweep = "loops:\n  _sweep: {genre: [techno, jazz], bpm: [90, 120]}\n  prompt: '{bpm} BPM {genre}'\n  seconds_total: 1\n"
    status, preview = client.predict(sweep, 8, 7.0, "dpmpp-3m-sde", 1, 0, api_name="/validate_batch")
    assert status.startswith("valid: 4 items") and "loops/\n" in preview and "jazz-120_item-1.wav" in preview
    status, _ = client.predict("a: {prompt: x, init_audio: /etc/hostname}\n", 8, 7.0, "dpmpp-3m-sde", 1, 0,
                               api_name="/validate_batch")  # fmt: skip
    assert "a/init_audio: init audio files are not read here" in status
    for field in ("lora: /etc/hostname", "lora: [a.safetensors], lora_strength: 2"):  # this studio has no --lora
        status, _ = client.predict(f"a: {{prompt: x, {field}}}\n", 8, 7.0, "dpmpp-3m-sde", 1, 0, api_name="/validate_batch")
        assert "a/lora: no LoRA adapters here (the studio was started without --lora); a tree sent here names " \
               "adapters by name, never by path" in status  # fmt: skip


@pytest.mark.slow
def test_batch_tab_validates_generates_and_zips(client) -> None:
    too_many = "a: {prompt: x, seconds_total: 1, n_samples: 7}\n"
    status, preview = client.predict(too_many, 8, 7.0, "dpmpp-3m-sde", 1, 0, api_name="/validate_batch")
    assert f"more than the limit of {MAX_BATCH_ITEMS} (raise it with run_gradio.py --max-batch-items)" in status
    assert preview == ""
    tree = (
        "music:\n  _defaults: {seconds_total: 1, steps: 8}\n  kick: {prompt: kick, n_samples: 2}\n"
        "fx:\n  door: {prompt: door, seconds_total: 1}\n"
    )
    status, preview = client.predict(tree, 8, 7.0, "dpmpp-3m-sde", 1, 0, api_name="/validate_batch")
    assert status.startswith("valid: 3 items") and "3 items, 3.0 s of audio" in preview
    status, _, archive, choice = client.predict(tree, 6, 7.0, "dpmpp-3m-sde", 1, 0, api_name="/generate_batch")
    assert status == "done: 3 files" and choice["value"] == "music/kick_item-1.wav"
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        assert {"music/kick_item-1.wav", "music/kick_item-2.wav", "fx/door_item-1.wav", "tree.yaml", "manifest.jsonl"} <= names
        records = [json.loads(line) for line in zipped.read("manifest.jsonl").decode().splitlines()]
        door = sf.read(io.BytesIO(zipped.read("fx/door_item-1.wav")))[0]
    # the leaves' own steps win; the door leaf takes the --sample-steps value given to the tab
    assert {r["path"]: r["steps"] for r in records} == {
        "fx/door_item-1.wav": 6, "music/kick_item-1.wav": 8, "music/kick_item-2.wav": 8,
    }  # fmt: skip
    assert door.shape == (44100, 2)


@pytest.mark.slow
def test_output_names_the_share_flag_and_hides_upstream_warnings(client, studio) -> None:
    """The launched studio's own output (stdout and stderr), after a generation ran the T5 conditioner."""
    _generate(client, seed=3, variations=1)
    log = server_log(studio[1]).read_text()
    assert "* To create a public link, add --share" in log and "share=True" not in log
    for _, message, _ in KNOWN_LIBRARY_WARNINGS:
        assert not re.search(message, log), log
