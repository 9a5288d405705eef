"""``finetune.py score``: any folder of audio scored with the tiny CLAP of the offline hub.

Real WAV files written here, real embeddings (the tiny random CLAP of the real architecture; the tiny
OpenL3 and PaSST stand-ins, read from torch hub's cache of the offline hub by the real loaders), the
JSON and stats files read back; one torchrun run against the one-process result.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stable_audio_tools_ext import finetune_main
from stable_audio_tools_ext.run.exits import EXIT_USAGE
from stable_audio_tools_ext.scoring.clap import ClapScorer, read_clip
from stable_audio_tools_ext.scoring.frechet import gaussian_of
from stable_audio_tools_ext.scoring.stats_file import EmbeddingSpace, StoredStats, load_stats, save_stats
from tests.conftest import REPO_ROOT
from tests.support import free_port

# relpath -> captions (sidecar .txt lines); one file with two captions (its score is their mean)
CAPTIONS = {"rain.wav": ["rain on a roof"], "dog.flac": ["a dog barks", "a barking dog"], "sub/wind.wav": ["wind"],
            "sub/deep/sea.wav": ["waves on a beach"], "hum.wav": ["an electric hum"]}  # fmt: skip


def noise(path: Path, seconds: float, seed: int, rate: int = 44100, channels: int = 2, tone: float | None = None) -> None:
    """White noise (or a tone with a little noise) of ``seconds`` at ``rate``."""
    rng = np.random.default_rng(seed)
    frames = int(seconds * rate)
    samples = 0.1 * rng.standard_normal((frames, channels))
    if tone is not None:
        samples = 0.02 * samples + 0.5 * np.sin(2 * np.pi * tone * np.arange(frames) / rate)[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples.astype(np.float32), rate)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """``gen/``: captioned noise (sidecar .txt); ``ref/``: tones, a different set."""
    root = tmp_path_factory.mktemp("score")
    for index, (relpath, captions) in enumerate(CAPTIONS.items()):
        noise(root / "gen" / relpath, 1 + 0.4 * index, seed=index, rate=48000 if relpath.endswith("flac") else 44100)
        (root / "gen" / relpath).with_suffix(".txt").write_text("\n".join(captions) + "\n")
        noise(root / "ref" / f"tone-{index}.wav", 1.5, seed=10 + index, tone=220.0 * (index + 1), channels=1)
    return root


def score(*args: str | Path) -> int:
    return finetune_main.main(["score", *map(str, args)])


@pytest.fixture(scope="module")
def scored(folders, small_hub) -> dict:
    """One run with every output: gen against ref, the JSON and ref's saved statistics."""
    code = score("--audio-dir", folders / "gen", "--reference", folders / "ref", "--output", folders / "scores.json",
                 "--save-stats", folders / "ref.npz")  # fmt: skip
    assert code == 0
    return json.loads((folders / "scores.json").read_text())


@pytest.fixture(scope="module")
def paired(folders) -> Path:
    """``pair/``: tones at ``gen/``'s paths, every other one in another format: a different set paired with gen/ by id."""
    for index, relpath in enumerate(CAPTIONS):
        noise((folders / "pair" / relpath).with_suffix(".flac" if index % 2 else ".wav"), 1.2, seed=20 + index,
              tone=330.0 * (index + 1))  # fmt: skip
    return folders / "pair"


@pytest.fixture(scope="module")
def all_four(folders, paired, standins) -> dict:
    """gen against pair with every metric (OpenL3 and PaSST: the stand-ins), pair's statistics saved; the JSON, and
    the terminal's table under ``"table"``."""
    with contextlib.redirect_stdout(io.StringIO()) as table:
        code = score("--audio-dir", folders / "gen", "--reference", paired, "--metrics", "clap,fd_clap,fd_openl3,kl_passt",
                     "--output", folders / "all.json", "--save-stats", folders / "pair.npz")  # fmt: skip
    assert code == 0
    return {**json.loads((folders / "all.json").read_text()), "table": table.getvalue()}


@pytest.fixture(scope="module")
def scorer(small_hub) -> ClapScorer:
    return ClapScorer.load()


def test_the_json_holds_each_files_clap_score_and_the_set_metrics(scored, folders, scorer) -> None:
    assert set(scored) == {"files", "sets"}
    assert sorted(scored["files"]) == sorted(CAPTIONS)
    for relpath, captions in CAPTIONS.items():
        clip = read_clip(folders / "gen" / relpath)  # the whole file
        expected = np.mean(scorer.scores(captions, [clip] * len(captions)))
        assert scored["files"][relpath] == {"clap": pytest.approx(expected, abs=1e-6)}
    assert set(scored["sets"]) == {"clap", "fd_clap"}
    assert scored["sets"]["clap"] == pytest.approx(np.mean([f["clap"] for f in scored["files"].values()]), abs=1e-12)


def test_a_set_against_itself_gives_fd_0_and_a_different_set_more(scored, folders, capsys) -> None:
    out = folders / "self.json"
    assert score("--audio-dir", folders / "gen", "--reference", folders / "gen", "--metrics", "fd_clap", "--output", out) == 0
    itself = json.loads(out.read_text())
    assert itself == {"files": {relpath: {} for relpath in itself["files"]}, "sets": {"fd_clap": pytest.approx(0, abs=1e-9)}}
    assert scored["sets"]["fd_clap"] > 1e-4  # tones against noise (the tiny CLAP's embeddings move little)
    table = capsys.readouterr().out
    assert "FD_clap" in table and "5 files vs 5 reference files" in table and "fewer than the 32 dimensions" in table


def test_fd_openl3_and_kl_passt_of_a_set_against_itself_are_0_and_of_a_different_set_more(all_four, folders) -> None:
    table = all_four["table"]  # gen (noise) against pair (tones), paired by id
    assert all_four["sets"]["fd_openl3"] > 1e-3 and all_four["sets"]["kl_passt"] > 1e-3
    assert "20 frames of 5 files vs 15 reference frames" in table  # 1 s, 1.4 s, ... clips: 2, 3, 4, 5, 6 frames; 1.2 s: 3
    assert "5 pairs by file id" in table and "fewer than the 1024 dimensions" in table  # frames of left and right
    out = folders / "self.json"
    # pair/ against its own saved statistics (the Gaussian of its frames), and against itself for the paired KL
    assert score("--audio-dir", folders / "pair", "--reference-stats", folders / "pair.npz", "--metrics", "fd_openl3",
                 "--output", out) == 0  # fmt: skip
    assert json.loads(out.read_text())["sets"] == {"fd_openl3": pytest.approx(0, abs=1e-4)}
    assert score("--audio-dir", folders / "pair", "--reference", folders / "pair", "--metrics", "kl_passt",
                 "--output", out) == 0  # fmt: skip
    # a clip against itself: slightly below 0 from stable-audio-metrics' +1e-6 on the reference, at least -527e-6
    assert json.loads(out.read_text())["sets"] == {"kl_passt": pytest.approx(-527e-6 / 2, abs=527e-6 / 2)}


def test_saved_statistics_give_the_same_fd_and_hold_the_reference_gaussian(scored, folders, scorer) -> None:
    stats = load_stats(folders / "ref.npz")
    assert set(stats) == {"fd_clap"}
    reference = gaussian_of(scorer.file_embeddings([(path, None) for path in sorted((folders / "ref").glob("*.wav"))]))
    stored = stats["fd_clap"]
    assert stored.gaussian.count == 5
    np.testing.assert_allclose(stored.gaussian.mean, reference.mean, atol=1e-7)
    np.testing.assert_allclose(stored.gaussian.cov, reference.cov, atol=1e-7)
    assert stored.space == EmbeddingSpace(scorer.model_id, scorer.revision, stored.space.recipe) and scorer.revision
    out = folders / "from-stats.json"
    assert score("--audio-dir", folders / "gen", "--reference-stats", folders / "ref.npz", "--output", out) == 0
    assert json.loads(out.read_text()) == scored


def test_all_four_metrics_in_the_json_and_the_statistics_of_both_frechet_distances(all_four, scored, folders) -> None:
    assert set(all_four) == {"files", "sets", "table"} and set(all_four["sets"]) == {"fd_openl3", "kl_passt", "fd_clap", "clap"}
    assert all_four["files"] == {relpath: {"clap": pytest.approx(value["clap"], abs=1e-6)}
                                 for relpath, value in scored["files"].items()}  # fmt: skip
    stats = load_stats(folders / "pair.npz")
    assert set(stats) == {"fd_clap", "fd_openl3"}
    space = stats["fd_openl3"].space
    assert space.model == "torchopenl3 mel256 music 512-d" and space.revision.startswith("sha256:") and "openl3" in space.recipe
    assert stats["fd_openl3"].gaussian.mean.shape == (1024,) and stats["fd_openl3"].gaussian.count == 15  # frames


def test_statistics_of_another_metric_or_openl3_model_and_unpaired_files_are_exit_2(all_four, scored, folders, tmp_path,
                                                                                     capsys) -> None:  # fmt: skip
    outputs = ["--output", tmp_path / "scores.json"]
    # a CLAP statistics file for fd_openl3; the music OpenL3's statistics for the env one
    assert score("--audio-dir", folders / "gen", "--reference-stats", folders / "ref.npz", "--metrics", "fd_openl3",
                 *outputs) == EXIT_USAGE  # fmt: skip
    err = capsys.readouterr().err
    assert f"--reference-stats {folders / 'ref.npz'}: holds no statistics for fd_openl3 (it has fd_clap)" in err
    assert score("--audio-dir", folders / "gen", "--reference-stats", folders / "pair.npz", "--metrics", "fd_openl3",
                 "--openl3-content-type", "env", *outputs) == EXIT_USAGE  # fmt: skip
    err = capsys.readouterr().err
    assert "fd_openl3 statistics were made with torchopenl3 mel256 music 512-d" in err
    assert "not with torchopenl3 mel256 env 512-d" in err
    # KL_passt pairs by id: ref/'s tones have other names; statistics hold no files; weights that are not there
    (tmp_path / "gen2").mkdir()
    for name in ("a.wav", "a.flac"):
        noise(tmp_path / "gen2" / name, 1, seed=0)
    assert score("--audio-dir", folders / "gen", "--reference", folders / "ref", "--metrics", "kl_passt",
                 "--save-stats", tmp_path / "stats.npz", *outputs) == EXIT_USAGE  # fmt: skip
    err = capsys.readouterr().err
    assert f"--metrics kl_passt: 5 files of --audio-dir {folders / 'gen'} without a file of the same id" in err
    assert "'dog.flac', 'hum.wav'" in err and f"5 files of --reference {folders / 'ref'} without a file" in err
    assert "--save-stats: a statistics file holds fd_openl3 and fd_clap, and --metrics kl_passt asks for neither" in err
    assert score("--audio-dir", tmp_path / "gen2", "--reference-stats", folders / "pair.npz", "--metrics",
                 "kl_passt,fd_openl3", "--openl3-weights", tmp_path / "missing.pth.tar", *outputs) == EXIT_USAGE  # fmt: skip
    err = capsys.readouterr().err
    assert "--metrics kl_passt: pairs each file with the reference file of its id, so it needs --reference DIR" in err
    assert f"--openl3-weights: cannot read the OpenL3 weights {tmp_path / 'missing.pth.tar'}" in err
    assert score("--audio-dir", tmp_path / "gen2", "--reference", tmp_path / "gen2", "--metrics", "kl_passt",
                 *outputs) == EXIT_USAGE  # fmt: skip
    assert "two files with one id (KL_passt pairs by path without extension): 'a.flac' and 'a.wav'" in capsys.readouterr().err
    assert not any(path.name.startswith(("scores", "stats")) for path in tmp_path.iterdir())


def test_statistics_of_another_model_or_recipe_are_refused_by_name(scored, folders, small_hub, tmp_path, capsys) -> None:
    stats = load_stats(folders / "ref.npz")["fd_clap"]
    other_recipe = tmp_path / "other-recipe.npz"
    save_stats(other_recipe, {"fd_clap": StoredStats(stats.gaussian, EmbeddingSpace(stats.space.model, stats.space.revision,
                                                                                    "older-recipe/0"))}, "ref")  # fmt: skip
    # the same tiny CLAP as a local folder: another model id, as a user's own checkpoint folder would be
    snapshot = next((small_hub / "hub" / "models--laion--clap-htsat-fused" / "snapshots").iterdir())
    out = tmp_path / "scores.json"
    assert score("--audio-dir", folders / "gen", "--reference-stats", other_recipe, "--output", out) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "fd_clap statistics were made with" in err and "recipe older-recipe/0" in err
    assert score("--audio-dir", folders / "gen", "--reference-stats", folders / "ref.npz", "--clap-model", snapshot,
                 "--output", out) == EXIT_USAGE  # fmt: skip
    err = capsys.readouterr().err
    assert f"made with {stats.space.model} (revision {stats.space.revision})" in err and f"not with {snapshot.resolve()}" in err
    assert not out.exists()


def test_bad_inputs_are_all_listed_with_exit_2_and_nothing_written(folders, small_hub, tmp_path, capsys) -> None:
    audio = tmp_path / "audio"
    noise(audio / "ok.wav", 1, seed=0)
    (audio / "ok.txt").write_text("fine\n")
    noise(audio / "uncaptioned.wav", 1, seed=1)
    (audio / "broken.wav").write_bytes(b"not audio")
    (audio / "broken.txt").write_text("broken\n")
    (audio / "lonely.txt").write_text("a caption without audio\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-stats.npz").write_text("text")
    outputs = ["--output", tmp_path / "scores.json", "--save-stats", tmp_path / "stats.npz"]
    assert score("--audio-dir", audio, "--reference", tmp_path / "empty", *outputs) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "error: 4 problems; nothing was written:" in err
    assert "'broken.wav': unreadable audio" in err
    assert "no audio file beside 1 caption file" in err and "'lonely.txt'" in err
    assert "no caption for 1 audio file (no .txt beside them): 'uncaptioned.wav'" in err
    assert f"--reference {tmp_path / 'empty'}: no audio files" in err
    captions = tmp_path / "captions.csv"
    captions.write_text("file_name,caption\nok.wav,fine\nmissing.wav,gone\n")
    assert score("--audio-dir", audio, "--captions", captions, "--reference-stats", tmp_path / "not-stats.npz",
                 "--clap-model", "nobody/no-such-clap", *outputs) == EXIT_USAGE  # fmt: skip
    err = capsys.readouterr().err
    assert "--clap-model nobody/no-such-clap: cannot load it" in err
    assert f"{captions}: no audio in --audio-dir {audio} for 1 row: line 3 'missing.wav'" in err
    assert f"no caption for 2 audio files (not in {captions}): 'broken.wav', 'uncaptioned.wav'" in err
    assert f"--reference-stats {tmp_path / 'not-stats.npz'}: not an embedding statistics file" in err
    assert "--save-stats: saves the statistics of --reference DIR's audio" in err
    assert score("--audio-dir", tmp_path / "empty", "--metrics", "clap", *outputs[:2]) == EXIT_USAGE
    assert "no audio files" in capsys.readouterr().err
    assert score("--audio-dir", audio, "--metrics", "fd_clap") == EXIT_USAGE
    assert "--metrics fd_clap: needs --reference DIR or --reference-stats FILE" in capsys.readouterr().err
    assert not any(path.name.startswith(("scores", "stats")) for path in tmp_path.iterdir())


@pytest.mark.slow
def test_two_torchrun_ranks_give_what_one_process_gives(scored, folders, small_hub_env) -> None:
    out = folders / "two-ranks.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               str(REPO_ROOT / "finetune.py"), "score", "--audio-dir", str(folders / "gen"), "--reference",
               str(folders / "ref"), "--output", str(out)]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=small_hub_env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "5 files and 5 reference files on 2 ranks" in result.stdout
    two = json.loads(out.read_text())
    assert list(two["files"]) == list(scored["files"])  # file order, whatever rank embedded a file
    for relpath, values in scored["files"].items():
        assert two["files"][relpath]["clap"] == pytest.approx(values["clap"], abs=1e-5)
    assert two["sets"] == {name: pytest.approx(value, abs=1e-6) for name, value in scored["sets"].items()}
