"""Per-file audio statistics and --normalize: measured values, edge cases, and what the manifest records."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from stable_audio_tools_ext.output.normalize import Normalization, normalization_from_args, normalize
from stable_audio_tools_ext.output.stats import CLIP_LEVEL, audio_stats, dbfs
from stable_audio_tools_ext.run import cli, exits
from tests.support import audio_files, write

SR = 44100


def sine(amplitude: float, seconds: float = 2.0, channels: int = 2, freq: float = 997.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return np.repeat((amplitude * np.sin(2 * np.pi * freq * t))[:, None], channels, axis=1).astype(np.float32)


def test_levels_of_a_known_sine() -> None:
    # BS.1770: a full-scale 997 Hz sine in one channel reads -3.01 LUFS, in both channels 0 LUFS.
    stats = audio_stats(sine(10 ** (-20 / 20)), SR)
    assert stats["lufs"] == pytest.approx(-20.0, abs=0.1) and stats["lufs_note"] is None
    assert stats["peak"] == pytest.approx(0.1, rel=1e-4)
    assert stats["rms"] == pytest.approx(0.1 / np.sqrt(2), rel=1e-3)
    assert audio_stats(sine(1.0, channels=1), SR)["lufs"] == pytest.approx(-3.01, abs=0.1)
    assert stats["silent_fraction"] == 0.0 and stats["clipped_samples"] == 0
    assert abs(stats["dc_offset"]) < 1e-4


def test_silence_clipping_and_dc_offset() -> None:
    half_silent = sine(0.5, seconds=2.0)
    half_silent[SR:] = 0.0
    assert audio_stats(half_silent, SR)["silent_fraction"] == pytest.approx(0.5, abs=0.03)

    square = np.sign(sine(1.0)).astype(np.float32)  # a clipped waveform: every nonzero sample at full scale
    assert audio_stats(square, SR)["clipped_samples"] == int(np.count_nonzero(np.abs(square) >= CLIP_LEVEL))
    assert audio_stats(square, SR)["clipped_samples"] > 0.9 * square.size

    shifted = sine(0.1) + np.array([0.25, -0.5], dtype=np.float32)
    assert audio_stats(shifted, SR)["dc_offset"] == pytest.approx(-0.5, abs=1e-3)  # the larger channel mean, signed


def test_loudness_is_null_with_a_reason_when_it_cannot_be_measured() -> None:
    short = audio_stats(sine(0.5, seconds=0.3), SR)
    assert short["lufs"] is None and "0.4 s" in short["lufs_note"]
    silent = audio_stats(np.zeros((SR, 2), np.float32), SR)
    assert silent["lufs"] is None and "silent" in silent["lufs_note"]
    assert silent["silent_fraction"] == 1.0 and silent["peak"] == 0.0
    empty = audio_stats(np.zeros((0, 2), np.float32), SR)
    assert empty["lufs"] is None and empty["silent_fraction"] == 1.0
    json.dumps(silent, allow_nan=False)  # records stay strict JSON: no -inf/NaN


def test_peak_and_loudness_normalization() -> None:
    quiet = sine(0.05)
    peaked, fields = normalize(quiet, SR, Normalization("peak", -1.0))
    assert float(np.abs(peaked).max()) == pytest.approx(10 ** (-1 / 20), rel=1e-5)
    assert fields["normalize_gain_db"] == pytest.approx(-1.0 - dbfs(0.05), abs=1e-3)
    assert (fields["normalize"], fields["normalize_target"], fields["normalize_clipped"]) == ("peak", -1.0, 0)

    levelled, fields = normalize(quiet, SR, Normalization("lufs", -23.0))
    assert pyloudnorm.Meter(SR).integrated_loudness(levelled.astype(np.float64)) == pytest.approx(-23.0, abs=0.05)
    assert levelled.dtype == np.float32 and fields["normalize_note"] is None


def test_loudness_gain_that_clips_is_clipped_and_counted() -> None:
    spiky = sine(0.01)
    spiky[1000] = 0.9  # one peak far above the body of the signal
    out, fields = normalize(spiky, SR, Normalization("lufs", -6.0))
    assert fields["normalize_clipped"] > 0
    assert float(np.abs(out).max()) <= 1.0
    assert audio_stats(out, SR)["clipped_samples"] >= fields["normalize_clipped"]


def test_silent_or_unmeasurable_clips_are_left_unchanged() -> None:
    silent = np.full((SR, 2), 1e-6, np.float32)
    out, fields = normalize(silent, SR, Normalization("peak", -1.0))
    assert out is silent and fields["normalize_gain_db"] == 0.0 and "silent" in fields["normalize_note"]
    short = sine(0.5, seconds=0.2)
    out, fields = normalize(short, SR, Normalization("lufs", -23.0))
    assert out is short and "0.4 s" in fields["normalize_note"]
    out, fields = normalize(short, SR, Normalization())
    assert out is short and fields["normalize"] == "none" and fields["normalize_target"] is None


def test_normalize_flags() -> None:
    def parse(mode: str, target: float | None) -> Normalization:
        return normalization_from_args(argparse.Namespace(normalize=mode, normalize_target=target))

    assert parse("none", None) == Normalization()
    assert parse("peak", None) == Normalization("peak", -1.0)
    assert parse("lufs", None) == Normalization("lufs", -23.0)
    assert parse("lufs", -14) == Normalization("lufs", -14.0)
    with pytest.raises(ValueError, match="needs --normalize peak or --normalize lufs"):
        parse("none", -3.0)
    with pytest.raises(ValueError, match="between -60 and 0"):
        parse("peak", 3.0)
    with pytest.raises(ValueError, match="LUFS between -70 and 0"):
        parse("lufs", float("nan"))


TREE = """\
kick: {prompt: kick drum, seconds_total: 1.0}
rain: {prompt: rain on a roof, seconds_total: 1.2}
click: {prompt: a click, seconds_total: 0.3}
"""


def generate(tmp_path, out, *extra: str) -> int:
    return cli.main(["--cond-yaml-path", str(write(tmp_path, TREE)), "--output-dir", str(out), "--clip-length",
                     "--sample-steps", "6", "--batch-size", "3", *extra])  # fmt: skip


def test_generated_files_carry_their_stats_and_normalization(small_model, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert generate(tmp_path, out, "--normalize", "peak", "--normalize-target", "-3") == exits.EXIT_OK
    records = {json.loads(line)["path"]: json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()}
    assert set(records) == set(audio_files(out)) == {"kick_item-1.wav", "rain_item-1.wav", "click_item-1.wav"}
    for path, record in records.items():
        data, _ = sf.read(out / path, dtype="float32", always_2d=True)
        measured = audio_stats(data, SR)
        assert record["peak"] == pytest.approx(10 ** (-3 / 20), abs=1e-4)  # at the target, up to 16-bit rounding
        assert measured["peak"] == pytest.approx(record["peak"], abs=1e-4)
        assert (record["normalize"], record["normalize_target"]) == ("peak", -3.0)
        assert record["clipped_samples"] == 0 and 0.0 <= record["silent_fraction"] <= 1.0
        assert record["dc_offset"] == pytest.approx(measured["dc_offset"], abs=1e-3)
        if path == "click_item-1.wav":
            assert record["lufs"] is None and "0.4 s" in record["lufs_note"]
        else:
            assert record["lufs"] == pytest.approx(measured["lufs"], abs=0.05)

    capsys.readouterr()
    assert generate(tmp_path, out, "--normalize", "lufs") == exits.EXIT_OK  # another level: every file changes
    assert "3 regenerated (parameters changed)" in capsys.readouterr().out
    levelled = json.loads((out / "manifest.jsonl").read_text().splitlines()[1])
    assert (levelled["path"], levelled["normalize"]) == ("kick_item-1.wav", "lufs")
    assert levelled["lufs"] == pytest.approx(-23.0, abs=0.05)


def test_normalize_target_without_a_mode_is_refused_before_generating(small_hub, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert generate(tmp_path, out, "--normalize-target", "-14") == exits.EXIT_USAGE
    assert "--normalize-target -14.0 needs --normalize peak or --normalize lufs" in capsys.readouterr().err
    assert not out.exists()
