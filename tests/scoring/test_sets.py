"""``scoring.sets``: a set embedded in shares (torchrun ranks) joined back, and the ids KL_passt pairs files by.

No models: the shares hold random embeddings, as ``finetune.py score``'s ranks would hand them over.
"""

from __future__ import annotations

import numpy as np
import pytest

from stable_audio_tools_ext.run.distributed import shard
from stable_audio_tools_ext.scoring.frechet import Moments, gaussian_of
from stable_audio_tools_ext.scoring.sets import SetEmbeddings, duplicate_ids, file_id, unpaired


def test_shares_joined_are_the_whole_set_in_file_order() -> None:
    rng = np.random.default_rng(0)
    relpaths = [f"b/{index:02d}.wav" for index in range(7)]
    clap, passt = rng.standard_normal((7, 4)), rng.dirichlet(np.ones(527), 7)
    frames = {relpath: rng.standard_normal((index + 2, 8)) + 3.0 for index, relpath in enumerate(relpaths)}
    shares = []
    for rank in range(3):
        mine = shard(relpaths, 3, rank)
        rows = [relpaths.index(relpath) for relpath in mine]
        shares.append(SetEmbeddings(mine, clap[rows], Moments.of(np.concatenate([frames[r] for r in mine])), passt[rows]))
    joined = SetEmbeddings.join(shares[::-1], relpaths)  # the order the parts come in does not matter
    assert joined.relpaths == relpaths
    np.testing.assert_array_equal(joined.clap, clap)
    np.testing.assert_array_equal(joined.passt, passt)
    whole = gaussian_of(np.concatenate(list(frames.values())))
    fitted = joined.gaussians()["fd_openl3"]
    assert fitted.count == whole.count == sum(index + 2 for index in range(7))
    np.testing.assert_allclose(fitted.mean, whole.mean, atol=1e-12)
    np.testing.assert_allclose(fitted.cov, whole.cov, atol=1e-12)
    assert set(joined.probabilities_by_id()) == {f"b/{index:02d}" for index in range(7)}


def test_files_pair_by_path_without_extension() -> None:
    assert file_id("rain/0001.wav") == file_id("rain/0001.flac") == "rain/0001"
    assert file_id("a.b.wav") == "a.b"
    assert duplicate_ids(["a.wav", "b.wav", "a.flac"]) == ["'a.wav' and 'a.flac'"]
    assert unpaired(["a.wav", "sub/b.wav", "c.wav"], ["a.flac", "b.wav", "c.mp3"]) == (["sub/b.wav"], ["b.wav"])
    with pytest.raises(ValueError, match="at least 2"):
        Moments.of(np.zeros((1, 3))).gaussian()
