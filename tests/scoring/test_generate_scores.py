"""``generate.py --score clap`` in process: scores in every record, resume scores without regenerating, errors."""

from __future__ import annotations

import json
import shutil

import pytest

from stable_audio_tools_ext.output.manifest import load_records
from stable_audio_tools_ext.run import cli, exits
from tests.scoring.conftest import RUN
from tests.support import audio_files


def test_every_written_item_gets_a_clap_score_in_range(scored_output) -> None:
    records = load_records(scored_output)
    assert sorted(records) == sorted(audio_files(scored_output)) and len(records) == 6
    for record in records.values():
        assert isinstance(record["clap_score"], float) and -1 <= record["clap_score"] <= 1


def test_adding_score_to_a_finished_output_scores_the_files_without_regenerating(
    small_hub, scored_tree, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    assert cli.main(["--cond-yaml-path", str(scored_tree), "--output-dir", str(out), *RUN]) == 0
    unscored = load_records(out)
    assert not any("clap_score" in record for record in unscored.values())  # off unless asked for
    files = {path: file.read_bytes() for path, file in audio_files(out).items()}
    capsys.readouterr()

    assert cli.main(["--cond-yaml-path", str(scored_tree), "--output-dir", str(out), *RUN, "--score", "clap"]) == 0
    printed = capsys.readouterr().out
    assert "0 items generated" in printed and "6 items written by an earlier run were scored from their files" in printed
    scored = load_records(out)
    assert {path: file.read_bytes() for path, file in audio_files(out).items()} == files
    for path, record in scored.items():
        assert -1 <= record.pop("clap_score") <= 1
        assert record == unscored[path]  # the rest of the record, its timestamp included, is unchanged


def test_the_scores_of_a_resumed_output_equal_those_of_a_scored_run(small_hub, scored_output, scored_tree, tmp_path) -> None:
    """Scoring the files after the run gives what the run gave: both score each file as written."""
    out = tmp_path / "out"
    shutil.copytree(scored_output, out)
    manifest = out / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "clap_score"}) + "\n" for r in records))
    assert cli.main(["--cond-yaml-path", str(scored_tree), "--output-dir", str(out), *RUN, "--score", "clap"]) == 0
    rescored = load_records(out)
    for record in records:
        # the same input; other batches (the run's vs 64 at a time) round differently in the 6th decimal
        assert abs(rescored[record["path"]]["clap_score"] - record["clap_score"]) <= 2e-6


def test_items_score_the_same_with_and_without_clip_length(small_hub, scored_output, scored_tree, tmp_path) -> None:
    """Without --clip-length the files hold the whole window; each item is still scored on its own seconds_total."""
    out = tmp_path / "out"
    run = [flag for flag in RUN if flag != "--clip-length"]
    assert cli.main(["--cond-yaml-path", str(scored_tree), "--output-dir", str(out), *run, "--score", "clap"]) == 0
    whole, clipped = load_records(out), load_records(scored_output)
    assert all(whole[path]["frames"] > clipped[path]["frames"] for path in clipped)  # the window is longer than each item
    assert {path: r["clap_score"] for path, r in whole.items()} == {path: r["clap_score"] for path, r in clipped.items()}


def test_a_clap_model_that_cannot_load_stops_the_run_before_generation(small_hub, scored_tree, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["--cond-yaml-path", str(scored_tree), "--output-dir", str(out), *RUN, "--score", "clap"]
    assert cli.main([*args, "--clap-model", "laion/no-such-clap"]) == exits.EXIT_USAGE
    err = capsys.readouterr().err
    assert "--score clap: cannot load the CLAP model 'laion/no-such-clap'" in err and "(--clap-model)" in err
    assert not out.exists()  # checked before the output dir is even created


def test_min_clap_score_needs_split_and_score(scored_tree, tmp_path, capsys) -> None:
    args = ["--cond-yaml-path", str(scored_tree), "--output-dir", str(tmp_path / "out"), *RUN, "--min-clap-score", "0.1"]
    assert cli.main(args) == exits.EXIT_USAGE
    err = capsys.readouterr().err
    assert "--min-clap-score needs --split" in err and "--min-clap-score needs --score clap" in err
    assert not (tmp_path / "out").exists()


def test_a_set_metric_in_score_names_the_commands_that_compute_it(scored_tree, tmp_path, capsys) -> None:
    args = ["--cond-yaml-path", str(scored_tree), "--output-dir", str(tmp_path / "out"), *RUN, "--score", "clap,fd_openl3"]
    with pytest.raises(SystemExit) as stopped:  # a flag error: argparse's exit
        cli.main(args)
    assert stopped.value.code == exits.EXIT_USAGE
    err = capsys.readouterr().err
    assert "fd_openl3: a distance between a whole set and a reference set, not a per-item score" in err
    assert "finetune.py score --audio-dir DIR --reference DIR" in err and "finetune.py evaluate --reference DIR" in err
    assert not (tmp_path / "out").exists()
