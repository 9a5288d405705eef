"""The shard writer's pieces: sample keys WebDataset readers split back correctly, records only for renamed shards."""

from __future__ import annotations

import json

import pytest
from webdataset.tariterators import base_plus_ext

from stable_audio_tools_ext.output.shards import ShardWriter, read_member, relpath_of_key, sample_key, shard_samples
from stable_audio_tools_ext.tree.reserved import PARTIAL_SUFFIX


@pytest.mark.parametrize("relpath", [
    "sfx/rain_item-1.wav", "music/drum/sample-1.5_item-2.flac", "v1.2/a.b.c_item-10.wav", "odd/100%2E_item-1.wav",
    "odd/%25.x_item-1.wav", "top_item-1.wav",
])  # fmt: skip
def test_sample_keys_survive_webdatasets_first_dot_split_and_invert(relpath: str) -> None:
    key, extension = sample_key(relpath), relpath.rsplit(".", 1)[1]
    assert base_plus_ext(f"{key}.{extension}") == (key, extension)  # upstream's and Hugging Face's split
    assert base_plus_ext(f"{key}.json") == (key, "json")
    assert relpath_of_key(key, extension) == relpath


def test_records_come_only_from_renamed_shards(tmp_path) -> None:
    writer = ShardWriter(tmp_path, rank=3, shard_size=2)
    record = {"path": "a/x.y_item-1.wav", "leaf": "a/x.y", "prompt": "p", "negative_prompt": None}
    assert writer.add("a/x.y_item-1.wav", "a/x.y", b"RIFF-one", record) == []
    shards = tmp_path / "shards"
    assert [p.name.endswith(PARTIAL_SUFFIX) and p.name.startswith(".") for p in shards.iterdir()] == [True]
    done = writer.add("a/x.y_item-2.wav", "a/x.y", b"RIFF-two", {**record, "path": "a/x.y_item-2.wav"})
    assert [r["path"] for r in done] == ["a/x.y_item-1.wav", "a/x.y_item-2.wav"]
    (final,) = shards.iterdir()  # renamed, the temporary gone
    assert final.name.endswith("-r00003-000001.tar") and {r["shard"] for r in done} == {f"shards/{final.name}"}
    assert {r["shard_bytes"] for r in done} == {final.stat().st_size}
    assert [read_member(tmp_path, r) for r in done] == [b"RIFF-one", b"RIFF-two"]
    samples = list(shard_samples(final))
    assert [key for key, _ in samples] == ["a/x%2Ey_item-1", "a/x%2Ey_item-2"]
    meta = json.loads(samples[0][1]["json"])
    assert meta["shard"] == done[0]["shard"] and "negative_prompt" not in meta  # nulls left out (torch's collate)
    assert writer.add("b_item-1.wav", "b", b"three", {**record, "path": "b_item-1.wav"}) == []
    (rest,) = writer.close()  # end of work or a graceful stop: the open shard is completed, not lost
    assert rest["shard"].endswith("-000002.tar") and (tmp_path / rest["shard"]).stat().st_size == rest["shard_bytes"]
    assert not [p for p in shards.iterdir() if p.name.startswith(".")]
