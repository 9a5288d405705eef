"""``--decode-chunk``: values upstream's chunked decoder cannot handle are refused before anything runs."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from stable_audio_tools_ext.run import cli
from stable_audio_tools_ext.sampling.chunking import DECODE_OVERLAP_PER_SIDE, MIN_DECODE_CHUNK
from stable_audio_tools_ext.sampling.engine import decode
from tests.support import audio_files, write

TREE = "kit:\n  kick: {prompt: kick drum, seconds_total: 2}\n"  # 48 latent frames: longer than the minimum chunk
FLAGS = ["--sample-steps", "2", "--clip-length"]


def parse(*extra: str):
    return cli.build_parser().parse_args(["--cond-yaml-path", "tree.yaml", "--output-dir", "out", *extra])


def test_minimum_follows_from_the_overlap() -> None:
    assert MIN_DECODE_CHUNK == 2 * DECODE_OVERLAP_PER_SIDE + 1 == 33


@pytest.mark.parametrize("value", ["0", "1", "16", str(MIN_DECODE_CHUNK - 1), "many"])
def test_values_below_the_minimum_exit_2_naming_it(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("--decode-chunk", value)
    assert exit_info.value.code == 2
    assert f"--decode-chunk: expected an integer >= {MIN_DECODE_CHUNK}" in capsys.readouterr().err


def test_upstream_decoder_fails_one_below_the_minimum_and_works_at_it(small_model) -> None:
    """Pins the minimum to upstream's behaviour, so that a change of either shows here."""
    latents = torch.randn(1, 64, 64, generator=torch.Generator().manual_seed(0))
    whole = decode(small_model, latents)
    try:
        small_model.decode_chunk = MIN_DECODE_CHUNK - 1
        with pytest.raises(ValueError, match="range"):
            decode(small_model, latents)
        small_model.decode_chunk = MIN_DECODE_CHUNK
        chunked = decode(small_model, latents)
    finally:
        small_model.decode_chunk = None
    assert (chunked - whole).abs().max() <= 1e-4


def test_cli_refuses_a_small_chunk_before_loading_or_writing(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--cond-yaml-path", str(write(tmp_path, TREE)), "--output-dir", str(out), *FLAGS, "--decode-chunk", "32"])
    assert exit_info.value.code == 2
    assert "got 32" in capsys.readouterr().err
    assert not out.exists()


def test_minimum_chunk_works_end_to_end(small_hub, tmp_path, capsys) -> None:
    tree = write(tmp_path, TREE)
    for name, extra in (("whole", []), ("chunked", ["--decode-chunk", str(MIN_DECODE_CHUNK)])):
        code = cli.main(["--cond-yaml-path", str(tree), "--output-dir", str(tmp_path / name), *FLAGS, *extra])
        assert code == 0, capsys.readouterr().err
    whole, chunked = (sf.read(audio_files(tmp_path / name)["kit/kick_item-1.wav"], dtype="int16")[0] for name in ("whole", "chunked"))
    assert whole.shape == chunked.shape == (2 * 44100, 2)
    assert np.abs(whole.astype(int) - chunked.astype(int)).max() <= 1  # within one 16-bit step
