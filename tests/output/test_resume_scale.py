"""Resume over a large output folder: every finished item recognised, exactly the broken ones redone."""

from __future__ import annotations

from bench.resume_scan import finished_output
from stable_audio_tools_ext.output.manifest import load_records
from stable_audio_tools_ext.output.resume import resume_state


def test_a_large_resume_finds_exactly_the_missing_and_damaged_items(tmp_path) -> None:
    items, settings = finished_output(tmp_path, 2000)
    state = resume_state(items, load_records(tmp_path), tmp_path, settings)
    assert (state.done, len(state.pending)) == (2000, 0)

    (tmp_path / items[7].relpath).unlink()
    damaged = tmp_path / items[1500].relpath
    damaged.write_bytes(damaged.read_bytes()[:100])
    state = resume_state(items, load_records(tmp_path), tmp_path, settings)
    assert [item.relpath for item in state.pending] == [items[7].relpath, items[1500].relpath]
    assert (state.done, state.damaged) == (1998, 2)
