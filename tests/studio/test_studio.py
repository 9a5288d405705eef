"""The studio without a browser: its helpers, its safety rules, and its API against ``generate.py``.

The API tests run ``run_gradio.py`` as a subprocess with a password, on the small-window tiny
model, and drive it with ``gradio_client`` as a script would.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

import run_gradio
from stable_audio_tools_ext.request import GenerationRequest
from stable_audio_tools_ext.run import cli
from stable_audio_tools_ext.studio.actions import (
    RANDOM_SEED_RANGE,
    Audition,
    audition_tree,
    generate_items,
    leaf_path,
    plan_tree,
    resolve_seed,
    sampling_defaults,
    tree_yaml,
    write_tree,
)
from stable_audio_tools_ext.studio.files import (
    MARKER_NAME,
    OutsideTmpDirError,
    clean_tmp_dir,
    confined,
    prepare_tmp_dir,
    zip_folder,
)
from stable_audio_tools_ext.studio.settings import StudioSettings, launch_options, read_auth_file
from stable_audio_tools_ext.tree.conditions import ConditionTreeError
from stable_audio_tools_ext.tree.plan import build_plan
from stable_audio_tools_ext.tree.reader import parse_condition_tree
from tests.studio.browser import studio_server
from tests.support import audio_files

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


def test_leaf_names_must_be_usable_as_paths() -> None:
    assert leaf_path(" music/drums/kick ") == ("music", "drums", "kick")
    for bad in ("a//b", "../x", "a/./b", ""):
        with pytest.raises(ValueError, match="leaf name"):
            leaf_path(bad)


def test_plan_tree_reports_every_problem_with_its_yaml_path(small_model, tmp_path) -> None:
    tree = "a:\n  x: {prompt: one, seconds_total: 99}\n  y: {prompt: two, stpes: 3}\nb: {prompt: three, n_samples: 5}\n"
    spec = small_model.spec
    with pytest.raises(ConditionTreeError) as caught:
        plan_tree(write_tree(tree, tmp_path), spec, sampling_defaults(spec), max_items=100)
    rendered = [p.render("tree.yaml") for p in caught.value.problems]
    assert any(r.startswith("tree.yaml:2: a/x:") and "longer than the model's 2.97 s window" in r for r in rendered)
    assert any(r.startswith("tree.yaml:3: a/y/stpes:") for r in rendered)
    with pytest.raises(ConditionTreeError, match="more than the limit of 4"):
        plan_tree(write_tree("b: {prompt: three, n_samples: 5}\n", tmp_path), spec, sampling_defaults(spec), max_items=4)


def test_tags_are_refused_not_executed(small_model, tmp_path) -> None:
    tree = "a: {prompt: !!python/object/apply:os.system [touch pwned]}\n"
    spec = small_model.spec
    with pytest.raises(ConditionTreeError):
        plan_tree(write_tree(tree, tmp_path), spec, sampling_defaults(spec), max_items=10)
    assert not Path("pwned").exists()


def test_generate_items_writes_clipped_wavs_and_a_manifest(small_model, tmp_path) -> None:
    spec = small_model.spec
    text = tree_yaml(audition_tree(AUDITION, seed=5, variations=2), small_model)
    items = plan_tree(write_tree(text, tmp_path), spec, sampling_defaults(spec), max_items=2)
    progress: list[tuple[int, int]] = []
    records = generate_items(small_model, items, tmp_path, batch_size=2, on_advance=lambda d, t: progress.append((d, t)))
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
    root = tmp_path / "studio"
    assert prepare_tmp_dir(root, 3600) == 0
    old, new = root / "generate/run-a/old.wav", root / "generate/run-b/new.wav"
    for path in (old, new):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    day_ago = time.time() - 86400
    os.utime(old, (day_ago, day_ago))
    os.utime(root / MARKER_NAME, (day_ago, day_ago))
    assert prepare_tmp_dir(root, 3600) == 1
    assert not old.exists() and not old.parent.exists() and new.exists() and (root / MARKER_NAME).exists()
    assert clean_tmp_dir(root, 3600, now=time.time() + 7200) == 1 and not new.exists()


def test_tmp_dir_refuses_a_folder_it_did_not_create(tmp_path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a studio tmp dir"):
        prepare_tmp_dir(tmp_path, 0)
    assert (tmp_path / "precious.txt").exists()


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
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"  # set by importing the UI


def test_username_needs_a_password(capsys) -> None:
    assert run_gradio.main(["--username", "alice"]) == run_gradio.EXIT_USAGE
    assert "--username and --password must be given together" in capsys.readouterr().err


# --- the running app, through its API ------------------------------------------------------------

USER, PASSWORD = "tester", "correct horse battery"
MAX_BATCH_ITEMS = 6
MAX_UPLOAD_BYTES = 20_000


@pytest.fixture(scope="module")
def studio(small_hub_env, tmp_path_factory) -> tuple[str, Path]:
    base = tmp_path_factory.mktemp("api")
    auth_file = base / "users"
    auth_file.write_text(f"{USER}:{PASSWORD}\n")
    tmp_dir = base / "studio-tmp"
    limits = ["--max-batch-items", str(MAX_BATCH_ITEMS), "--max-upload-mb", str(MAX_UPLOAD_BYTES / 1e6)]
    with studio_server(small_hub_env, tmp_dir, "--auth-file", str(auth_file), *limits) as url:
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
    assert cli.main(["--cond-yaml-path", str(tree), "--output-dir", str(out), "--clip-length"]) == cli.EXIT_OK
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


@pytest.mark.slow
def test_batch_tab_validates_generates_and_zips(client) -> None:
    too_many = "a: {prompt: x, seconds_total: 1, n_samples: 7}\n"
    status, preview = client.predict(too_many, 8, 7.0, "dpmpp-3m-sde", 1, 0, api_name="/validate_batch")
    assert f"more than the limit of {MAX_BATCH_ITEMS}" in status and preview == ""
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
