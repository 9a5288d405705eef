"""CLAP scores in the dataset writer (``--min-clap-score``) and in ``report.html``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stable_audio_tools_ext.datasets import training
from stable_audio_tools_ext.datasets.report import LOWEST_SCORED_ROWS, render_report
from stable_audio_tools_ext.datasets.report import main as report_main
from stable_audio_tools_ext.output.manifest import load_records
from tests.support import parse_tables

SPLITS = {"train": 0.5, "val": 0.5}


def linked(out: Path) -> set[str]:
    """The generated files the split folders link, as manifest paths."""
    return {str(link.resolve().relative_to(out.resolve())) for link in (out / "splits").rglob("*.wav")}


def test_min_clap_score_leaves_the_low_scoring_items_out_of_the_splits(scored_output, tmp_path) -> None:
    out = tmp_path / "out"
    shutil.copytree(scored_output, out)
    scores = {path: record["clap_score"] for path, record in load_records(out).items()}
    threshold = sorted(scores.values())[3]  # the 3 lowest fall below it
    result = training.write_dataset(out, SPLITS, min_clap_score=threshold)
    assert linked(out) == {path for path, score in scores.items() if score >= threshold}
    assert result.low_score == 3 and sum(result.files.values()) == 3
    lines = training.describe(result, SPLITS, threshold)
    assert f"3 items left out of the splits (clap_score below --min-clap-score {threshold:g})" in lines


def test_module_command_refuses_min_clap_score_without_scores(scored_output, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(scored_output, out)
    manifest = out / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    records[0].pop("clap_score")
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    before = sorted(p.name for p in out.iterdir())
    assert training.main([str(out), "--split", "train=0.5,val=0.5", "--min-clap-score", "0"]) == 2
    err = capsys.readouterr().err
    assert f"--min-clap-score: 1 of the 6 items have no clap_score (e.g. {records[0]['path']})" in err
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written
    assert training.main([str(out), "--min-clap-score", "0"]) == 2
    assert "--min-clap-score needs --split" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["1.5", "x"])
def test_min_clap_score_must_be_a_cosine(value, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        training.main(["somewhere", "--min-clap-score", value])
    assert exit_info.value.code == 2 and "--min-clap-score" in capsys.readouterr().err


def test_report_shows_the_score_histogram_branch_means_and_lowest_items(scored_output) -> None:
    page = render_report(scored_output, samples_per_branch=0)
    records = load_records(scored_output)
    assert 'alt="CLAP score histogram" src="data:image/png;base64,' in page
    assert "<th>mean CLAP score</th>" in page
    for branch in ("drums", "fx"):
        mean = sum(r["clap_score"] for p, r in records.items() if p.startswith(branch)) / sum(p.startswith(branch) for p in records)
        assert f"{mean:.3f}</td>" in page
    lowest = page.split('<section id="lowest-clap">')[1].split("</section>")[0]
    assert f"Lowest CLAP scores ({min(6, LOWEST_SCORED_ROWS)} of 6)" in lowest
    in_order = sorted(records.values(), key=lambda r: r["clap_score"])
    positions = [lowest.index(r["path"]) for r in in_order]
    assert positions == sorted(positions)  # lowest first


def test_report_without_scores_has_no_score_parts(scored_output, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(scored_output, out)
    manifest = out / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "clap_score"}) + "\n" for r in records))
    assert report_main([str(out), "--samples-per-branch", "0"]) == 0
    page = (out / "report.html").read_text()
    assert "CLAP" not in page and "lowest-clap" not in page


def test_report_with_a_reference_shows_the_distances_file_counts_and_warnings_once(scored_output, standins,
                                                                                    tmp_path, capsys) -> None:  # fmt: skip
    """The report command against the generated files themselves (PaSST: the stand-in; FD_openl3 takes the same
    path through scoring.sets, tested in tests/evaluation/test_score.py)."""
    out = tmp_path / "out"
    shutil.copytree(scored_output, out)
    assert report_main([str(out), "--samples-per-branch", "0", "--reference", str(scored_output),
                        "--metrics", "kl_passt,fd_clap"]) == 0  # fmt: skip
    assert capsys.readouterr().out.strip() == f"report: {out / 'report.html'}"
    page = parse_tables(out / "report.html")
    header, row = page.tables["reference"]
    assert [cell["text"] for cell in header] == ["mean CLAP score (items)", "KL_passt", "FD_clap",
                                                 "files (generated / reference)"]  # fmt: skip
    scores = [record["clap_score"] for record in load_records(out).values()]
    assert row[0]["text"] == f"{sum(scores) / 6:.4f} (6)"
    assert dict((cells[0]["text"], cells[1]["text"]) for cells in page.tables["summary"])["mean CLAP score (items)"] == row[0]["text"]
    # each item against its own file: KL only the +1e-6 stable-audio-metrics adds, FD round-off
    assert -527e-6 <= float(row[1]["text"]) <= 0 and abs(float(row[2]["text"])) < 1e-9
    assert row[3]["text"] == "6 / 6"
    # too few files for 32-d CLAP embeddings: once per side, each once on the page
    assert [w.split(", fewer than the 32 dimensions")[0] for w in page.warnings] == [
        f"FD_clap: {out}: 6 files", f"FD_clap: --reference {scored_output}: 6 files"]


def test_report_reference_problems_are_listed_and_exit_2_with_nothing_written(scored_output, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    shutil.copytree(scored_output, out)
    (tmp_path / "silent").mkdir()
    assert report_main([str(out), "--reference", str(tmp_path / "silent"), "--metrics", "kl_passt",
                        "--passt-weights", str(tmp_path / "missing.pt")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"error: --reference {tmp_path / 'silent'}: no audio files" in err
    assert f"error: --passt-weights: cannot read the PaSST weights {tmp_path / 'missing.pt'}" in err
    assert report_main([str(tmp_path / "silent"), "--metrics", "fd_openl3"]) == 2
    err = capsys.readouterr().err
    assert "no manifest.jsonl records" in err and "--metrics/--openl3-*/--passt-weights: distances to --reference DIR" in err
    assert not (out / "report.html").exists() and not (tmp_path / "silent" / "report.html").exists()
