"""``report.html`` for an output dir: what was generated, how it sounds, and what looks broken.

``python -m stable_audio_tools_ext.datasets.report OUTPUT_DIR`` (or ``generate.py --report``) reads the
manifest and writes ``OUTPUT_DIR/report.html``: a summary (items, hours of audio, statuses), a table
per top-level branch, a table per sweep variable (value by value), histograms of duration, loudness and peak, every flagged item (silent, clipped,
NaN/Inf), and for a few items per branch a spectrogram thumbnail with an audio player. When items have a
``clap_score`` (``generate.py --score clap``), also its histogram, its mean overall and per branch, and the
lowest-scoring items. With ``--reference DIR`` (the report command only; ``datasets.reference``), also the
written files' distances to that audio, FD_openl3, KL_passt and FD_clap as ``--metrics`` asks, with the file
counts they rest on and their warnings once: the summary ``comparison.html`` shows per model, drawn by
the same helpers (``distance_*`` below).

The page is self-contained so it opens offline, from a cluster's shared filesystem or a copied
folder: plots are PNGs inlined as data URIs, styles are inline, there is no script, and players
link the audio files by relative path (inlining audio would make the page as large as the dataset).
In a sharded output (``--output-format wds``) a browser cannot play a member of a tar: the thumbnails
are drawn from the members read into memory, and each card names its shard instead of a player.
Plots use matplotlib's object API (no pyplot), so no global backend is switched in the caller.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import soundfile as sf
from matplotlib import mlab
from matplotlib.figure import Figure

from ..output.atomic import atomic_write_text
from ..output.manifest import MANIFEST_NAME, Record, load_records
from ..output.resume import VALID_STATUSES  # the statuses of items whose file was written
from ..output.shards import is_sharded, read_member
from ..output.stats import dbfs
from ..scoring.options import (DEFAULT_CLAP_MODEL, DISTANCES, NAMES, add_set_model_arguments, metric_names,
                               reference_flags_problem)  # fmt: skip
from ..tree.reserved import REPORT_NAME

if TYPE_CHECKING:  # the metrics' code imports torch: only the report command with --reference loads it
    from .reference import SetResults

SAMPLES_PER_BRANCH = 4
MAX_FLAGGED_ROWS = 500  # beyond this the table would bury the page; the count is still given
TOP_LEVEL = "(top level)"  # branch name of leaves at the root of the tree
LOWEST_SCORED_ROWS = 20  # the items whose audio matches its prompt least, by CLAP score

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1200px;
       padding: 0 16px; color: #1d1d1f; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.muted { color: #666; } table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.flag { color: #b00020; font-weight: 600; } .ok { color: #1b7f3b; font-weight: 600; }
.plots img { width: 370px; margin-right: 8px; border: 1px solid #eee; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px; width: 260px; }
.card img { width: 260px; height: 100px; display: block; } .card audio { width: 260px; margin-top: 6px; }
.path { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
.warning { color: #8a5a00; }
"""


def branch_of(record: Record) -> str:
    """Top-level branch of an item's leaf (the first path segment)."""
    leaf = str(record.get("leaf", ""))
    return leaf.split("/", 1)[0] if "/" in leaf else TOP_LEVEL


def seconds_of(record: Record) -> float:
    """Duration of the written file (0 when nothing was written)."""
    return record.get("frames", 0) / record["sample_rate"] if record.get("sample_rate") else 0.0


def flags_of(record: Record) -> list[str]:
    """Why an item needs a look, or [] if it does not."""
    status = record.get("status")
    flags = []
    if status == "nonfinite":
        flags.append("NaN/Inf output: not written")
    elif status == "silent":
        flags.append(f"silent (peak {_db(record.get('peak'))})")
    elif status not in VALID_STATUSES:
        flags.append(f"status {status!r}")
    if record.get("clipped_samples"):
        flags.append(f"clipped: {record['clipped_samples']} samples at full scale")
    if record.get("normalize_clipped"):
        flags.append(f"--normalize gain clipped {record['normalize_clipped']} samples")
    return flags


def _db(peak: float | None) -> str:
    return "-" if peak is None else f"{dbfs(peak):.1f} dBFS"


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def histogram(values: Sequence[float], title: str, xlabel: str) -> str:
    """A histogram as a PNG data URI (with a note instead of bars when there is nothing to plot)."""
    figure = Figure(figsize=(3.7, 2.5), layout="constrained")
    axes = figure.add_subplot()
    finite = [v for v in values if np.isfinite(v)]
    if finite:
        # At least one unit wide: normalized sets put every value on the target, and matplotlib
        # would otherwise label a 1e-8 wide axis with an offset.
        low, high = min(finite), max(finite)
        middle, half = (low + high) / 2, max((high - low) / 2, 0.5)
        bins = min(30, max(5, len(finite) // 2))
        axes.hist(finite, bins=bins, range=(middle - half, middle + half), color="#3b6fb6", edgecolor="white")
        axes.ticklabel_format(axis="x", useOffset=False)
    else:
        axes.text(0.5, 0.5, "no values", ha="center", va="center", transform=axes.transAxes, color="#666")
    axes.set_title(f"{title} (n={len(finite)})", fontsize=10)
    axes.set_xlabel(xlabel, fontsize=9)
    axes.set_ylabel("items", fontsize=9)
    axes.tick_params(labelsize=8)
    return _png(figure)


def spectrogram_thumbnail(path: Path | io.BytesIO) -> str:
    """A small log-power spectrogram (0 Hz at the bottom) of the audio's channel mean, as a PNG data URI."""
    samples, sample_rate = sf.read(str(path) if isinstance(path, Path) else path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    figure = Figure(figsize=(2.6, 1.0))
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_axis_off()
    if len(mono) >= 1024:
        power, _, _ = mlab.specgram(mono, NFFT=1024, Fs=sample_rate, noverlap=0)
        # A thumbnail needs no more columns than pixels: average frames down to at most 512 columns.
        step = max(1, power.shape[1] // 512)
        power = power[:, : power.shape[1] // step * step].reshape(power.shape[0], -1, step).mean(axis=2)
        axes.imshow(10 * np.log10(power + 1e-12), origin="lower", aspect="auto", cmap="magma", vmin=-120, vmax=-20)
    return _png(figure)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """Cells are HTML (escaped by the caller)."""
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table>{head}{body}</table>"


def mean_score(values: Sequence[float]) -> str:
    """A mean CLAP score with its count, ``0.1234 (6)``, or ``-`` without scores."""
    return f"{sum(values) / len(values):.4f} ({len(values)})" if values else "-"


def distance_metrics(results: Sequence[SetResults | None]) -> list[str]:
    """The distances any of ``results`` has, in ``DISTANCES`` order (the score JSON's)."""
    return [m for m in DISTANCES if any(r and m in r.distances for r in results)]


def distance_headers(metrics: Sequence[str], files: str) -> list[str]:
    """The distance columns, then the file counts' (``files`` names the side that is not the reference)."""
    return [NAMES[m] for m in metrics] + [f"files ({files} / reference)"]


def distance_cells(results: SetResults | None, metrics: Sequence[str]) -> list[str]:
    """A set's cells under ``distance_headers``: each value (``-`` when there is none), then the file counts."""
    found = results.distances if results else {}
    cells = ["-" if m not in found or found[m].value is None else f"{found[m].value:.4g}" for m in metrics]
    return cells + ["-" if results is None else f"{results.count} / {results.reference_count}"]


def distance_warnings(results: Sequence[SetResults | None]) -> str:
    """The distances' warnings (too few files or frames, unpaired files, no distance), each once per page."""
    warnings = dict.fromkeys(w for r in results if r for d in r.distances.values() for w in d.warnings)
    return "".join(f'<p class="warning">{html.escape(w)}</p>' for w in warnings)


def distance_basis(reference: str) -> str:
    """What the distances are and what they rest on (HTML), for the paragraph above them."""
    return (
        f"Distances to the audio of {html.escape(reference)}, lower is closer (docs/evaluation.md): FD_openl3, Fréchet "
        "distance on OpenL3 frame embeddings (1 s every 0.5 s, left and right); KL_passt, mean KL divergence of PaSST's "
        "class probabilities of each item and the reference file of its id (path without extension); FD_clap, "
        "Fréchet distance on CLAP audio embeddings (unit vectors: 0 to a few, not comparable with FD_openl3). "
        "They rest on the file counts shown: with fewer files (FD_openl3: frames) than embedding dimensions a "
        "Fréchet distance mostly measures the counts."
    )  # fmt: skip


def _against_reference(records: Sequence[Record], reference: str, results: SetResults) -> str:
    """The report's section of distances to ``--reference``: one row, as comparison.html's per model."""
    metrics = distance_metrics([results])
    headers = ["mean CLAP score (items)"] + distance_headers(metrics, "generated")
    table = html_table(headers, [[mean_score(clap_scores(records))] + distance_cells(results, metrics)],
                       numeric=range(len(headers)))  # fmt: skip
    return (f'<section id="reference"><h2>Against the reference</h2><p class="muted">{distance_basis(reference)}</p>'
            f"{table}{distance_warnings([results])}</section>")  # fmt: skip


def _summary(records: Sequence[Record], flagged: int) -> str:
    statuses: dict[str, int] = defaultdict(int)
    for record in records:
        statuses[str(record.get("status"))] += 1
    written = [r for r in records if r.get("status") in VALID_STATUSES]
    seconds = sum(seconds_of(r) for r in written)
    splits: dict[str, int] = defaultdict(int)
    for record in written:
        if record.get("split"):
            splits[record["split"]] += 1
    rows = [
        ("items in the manifest", f"{len(records)} ({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))})"),
        ("files written", str(len(written))),
        ("audio", f"{seconds / 3600:.3f} h ({seconds:.1f} s)"),
        ("branches", str(len({branch_of(r) for r in records}))),
        ("flagged items", f'<span class="{"flag" if flagged else "ok"}">{flagged}</span>'),
        ("sample rate / channels", ", ".join(sorted({f"{r.get('sample_rate')} Hz / {r.get('channels')}" for r in written})) or "-"),
        ("format", ", ".join(sorted({str(r.get("format")) for r in written})) or "-"),
        ("model", ", ".join(sorted({html.escape(str(r.get("model"))) for r in records}))),
        ("normalization", ", ".join(sorted({html.escape(f"{r.get('normalize', 'none')} {r.get('normalize_target') or ''}".strip())
                                           for r in written})) or "-"),  # fmt: skip
    ]
    scores = clap_scores(records)
    if scores:
        rows.append(("mean CLAP score (items)", mean_score(scores)))
    if splits:
        rows.append(("splits (files)", ", ".join(f"{html.escape(s)}: {n}" for s, n in sorted(splits.items()))))
    return "<table>" + "".join(f"<tr><th>{html.escape(name)}</th><td>{value}</td></tr>" for name, value in rows) + "</table>"


def clap_scores(records: Sequence[Record]) -> list[float]:
    """The ``clap_score`` of every record that has one."""
    return [r["clap_score"] for r in records if r.get("clap_score") is not None]


def _branches(by_branch: dict[str, list[Record]], scored: bool) -> str:
    """One row per top-level branch; with ``scored``, a mean CLAP score column ("-" for a branch without scores)."""
    rows = []
    for branch, records in sorted(by_branch.items()):
        written = [r for r in records if r.get("status") in VALID_STATUSES]
        flagged = sum(1 for r in records if flags_of(r))
        row = [html.escape(branch), len({r.get("leaf") for r in records}), len(records), len(written),
               f"{sum(seconds_of(r) for r in written) / 60:.2f}", f'<span class="flag">{flagged}</span>' if flagged else "0"]  # fmt: skip
        if scored:
            scores = clap_scores(records)
            row.append(f"{np.mean(scores):.3f}" if scores else "-")
        rows.append(row)
    headers = ["branch", "leaves", "items", "files", "minutes", "flagged"] + (["mean CLAP score"] if scored else [])
    return html_table(headers, rows, numeric=range(1, len(headers)))


def _lowest_scored(records: Sequence[Record], count: int = LOWEST_SCORED_ROWS) -> str:
    """The ``count`` items with the lowest CLAP score: where the audio matches its prompt least."""
    lowest = sorted((r for r in records if r.get("clap_score") is not None), key=lambda r: (r["clap_score"], r["path"]))
    rows = [(f'<span class="path">{html.escape(r["path"])}</span>', f"{r['clap_score']:.3f}",
             html.escape(str(r.get("prompt", ""))[:160])) for r in lowest[:count]]  # fmt: skip
    return html_table(["file", "CLAP score", "prompt"], rows, numeric=(1,))


def _by_variable(records: Sequence[Record]) -> str:
    """One table per sweep variable (the manifest's ``vars``): each value's items, minutes, loudness, flags.

    This is where a sweep is read: does cfg 7 clip more than cfg 3, is one genre quieter than the rest.
    Values keep the order in which the manifest's (path-sorted) records first show them.
    """
    groups: dict[str, dict[str, list[Record]]] = {}
    for record in records:
        for name, value in (record.get("vars") or {}).items():
            groups.setdefault(name, {}).setdefault(json.dumps(value) if isinstance(value, list) else str(value), []).append(record)
    if not groups:
        return '<p class="muted">No item comes from a <code>_sweep</code> or <code>_zip</code>.</p>'
    tables = []
    for name, by_value in groups.items():
        rows = []
        for value, group in by_value.items():
            written = [r for r in group if r.get("status") in VALID_STATUSES]
            lufs = [r["lufs"] for r in written if r.get("lufs") is not None]
            peaks = [dbfs(r["peak"]) for r in written if r.get("peak")]
            flagged = sum(1 for r in group if flags_of(r))
            rows.append((html.escape(value), len(group), len(written), f"{sum(seconds_of(r) for r in written) / 60:.2f}",
                         f"{np.mean(lufs):.1f}" if lufs else "-", f"{np.mean(peaks):.1f}" if peaks else "-",
                         f'<span class="flag">{flagged}</span>' if flagged else "0"))  # fmt: skip
        headers = [name, "items", "files", "minutes", "mean LUFS", "mean peak dBFS", "flagged"]
        tables.append(f"<h3>{html.escape(name)}</h3>" + html_table(headers, rows, numeric=(1, 2, 3, 4, 5, 6)))
    return "".join(tables)


def _flagged(records: Sequence[Record]) -> str:
    rows = [
        (f'<span class="path">{html.escape(r["path"])}</span>', html.escape("; ".join(flags_of(r))),
         html.escape(str(r.get("prompt", ""))[:160]))
        for r in records if flags_of(r)
    ]  # fmt: skip
    if not rows:
        return '<p class="ok">No item is silent, clipped or NaN/Inf.</p>'
    more = f'<p class="muted">... and {len(rows) - MAX_FLAGGED_ROWS} more (see the manifest).</p>' if len(rows) > MAX_FLAGGED_ROWS else ""
    return html_table(["file", "why", "prompt"], rows[:MAX_FLAGGED_ROWS]) + more


def pick_samples(records: Sequence[Record], count: int) -> list[Record]:
    """Up to ``count`` written items spread evenly over the branch's items in path order (deterministic)."""
    written = sorted((r for r in records if r.get("status") in VALID_STATUSES), key=lambda r: r["path"])
    if count <= 0:
        return []
    if len(written) <= count:
        return written
    return [written[round(i * (len(written) - 1) / (count - 1))] for i in range(count)] if count > 1 else written[:1]


def _card(output_dir: Path, record: Record) -> str:
    missing = f'<div class="card"><span class="path">{html.escape(record["path"])}</span><p class="flag">file missing</p></div>'
    if is_sharded(record):
        try:
            audio: Path | io.BytesIO = io.BytesIO(read_member(output_dir, record))
        except (OSError, KeyError, TypeError):  # the shard is gone or the record has no audio
            return missing
        player = f'<div class="muted">in {html.escape(str(record["shard"]))}</div>'
    else:
        audio = output_dir / record["path"]
        if not audio.is_file():
            return missing
        player = f'<audio controls preload="none" src="{html.escape(quote(record["path"]))}"></audio>'
    lufs = record.get("lufs")
    details = f"{seconds_of(record):.2f} s, peak {_db(record.get('peak'))}, " + (f"{lufs:.1f} LUFS" if lufs is not None else "no LUFS")
    return (
        f'<div class="card"><img alt="spectrogram of {html.escape(record["path"])}" src="{spectrogram_thumbnail(audio)}">'
        f'{player}'
        f'<div class="path">{html.escape(record["path"])}</div><div>{html.escape(str(record.get("prompt", "")))}</div>'
        f'<div class="muted">{html.escape(details)}</div></div>'
    )


def render_report(output_dir: Path, samples_per_branch: int = SAMPLES_PER_BRANCH,
                  reference: tuple[str, SetResults] | None = None) -> str:  # fmt: skip
    """The report page for ``output_dir`` as HTML text; ``reference``: the ``--reference`` folder's name and the
    distances to it (``datasets.reference``)."""
    records = [record for _, record in sorted(load_records(output_dir).items())]
    by_branch: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_branch[branch_of(record)].append(record)
    written = [r for r in records if r.get("status") in VALID_STATUSES]
    flagged = sum(1 for r in records if flags_of(r))
    scores = clap_scores(records)
    plots = [
        ("duration", histogram([seconds_of(r) for r in written], "Duration", "seconds")),
        ("loudness", histogram([r["lufs"] for r in written if r.get("lufs") is not None], "Integrated loudness", "LUFS")),
        ("peak", histogram([dbfs(r["peak"]) for r in written if r.get("peak")], "Peak", "dBFS")),
    ] + ([("CLAP score", histogram(scores, "CLAP score", "prompt-audio cosine similarity"))] if scores else [])
    images = "".join(f'<img alt="{alt} histogram" src="{uri}">' for alt, uri in plots)
    lowest = (
        f'<section id="lowest-clap"><h2>Lowest CLAP scores ({min(len(scores), LOWEST_SCORED_ROWS)} of {len(scores)})</h2>'
        '<p class="muted">Where the audio matches its prompt least (generate.py --score clap).</p>'
        f"{_lowest_scored(records)}</section>"
        if scores else ""
    )  # fmt: skip
    samples = "".join(
        f"<h3>{html.escape(branch)}</h3><div class=\"cards\">"
        + "".join(_card(output_dir, r) for r in pick_samples(branch_records, samples_per_branch)) + "</div>"
        for branch, branch_records in sorted(by_branch.items())
    )  # fmt: skip
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"Generated dataset: {output_dir.resolve().name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="muted">{html.escape(str(output_dir.resolve()))} &middot; from {MANIFEST_NAME} &middot; {generated}</p>
<section id="summary"><h2>Summary</h2>{_summary(records, flagged)}</section>
{_against_reference(records, *reference) if reference else ""}
<section id="branches"><h2>Per branch</h2>{_branches(by_branch, bool(scores))}</section>
<section id="variables"><h2>Per sweep variable</h2>{_by_variable(records)}</section>
<section id="histograms"><h2>Histograms</h2><div class="plots">{images}</div></section>
<section id="flagged"><h2>Flagged items ({flagged})</h2>{_flagged(records)}</section>
{lowest}
<section id="samples"><h2>Samples per branch</h2>
<p class="muted">Up to {samples_per_branch} items per branch, spread over its files; spectrogram 0 Hz to Nyquist, -120 to -20 dB.</p>
{samples}</section>
</body></html>
"""


def records_problem(output_dir: Path) -> str | None:
    """Why ``output_dir`` cannot have a report (no manifest records), or ``None``."""
    if not load_records(output_dir):
        return f"{output_dir}: no {MANIFEST_NAME} records (is this a generate.py output dir?)"
    return None


def write_report(output_dir: Path, samples_per_branch: int = SAMPLES_PER_BRANCH,
                 reference: tuple[str, SetResults] | None = None) -> Path:  # fmt: skip
    """Write ``output_dir/report.html`` atomically; ``FileNotFoundError`` when the dir has no manifest records."""
    if problem := records_problem(output_dir):
        raise FileNotFoundError(problem)
    path = output_dir / REPORT_NAME
    atomic_write_text(path, render_report(output_dir, samples_per_branch, reference))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stable_audio_tools_ext.datasets.report", description=f"Write {REPORT_NAME} for a generate.py "
        "output dir; with --reference, with the written files' distances to that audio (docs/evaluation.md). Bad "
        "input: every problem listed, exit 2, nothing written.",
    )  # fmt: skip
    parser.add_argument("output_dir", type=Path, help="a generate.py output dir (holding manifest.jsonl)")
    parser.add_argument("--samples-per-branch", type=int, default=SAMPLES_PER_BRANCH,
                        help="items with a spectrogram and player per top-level branch (default: %(default)s)")  # fmt: skip
    reference = parser.add_argument_group("distances to a reference set (docs/evaluation.md)")
    reference.add_argument("--reference", type=Path, metavar="DIR", help="audio to compare the written files with "
                           "(any depth; e.g. prepare's validation split): the --metrics distances, with the file counts")  # fmt: skip
    reference.add_argument("--metrics", type=metric_names(DISTANCES), metavar="NAME[,NAME...]", help=f"of "
                           f"{', '.join(DISTANCES)} (default: fd_clap); kl_passt pairs each item with the reference file "
                           "of its id (path without extension)")  # fmt: skip
    reference.add_argument("--clap-model", default=DEFAULT_CLAP_MODEL, metavar="ID",
                           help="CLAP checkpoint of fd_clap: a hub id or a local folder (default: %(default)s)")  # fmt: skip
    add_set_model_arguments(reference)
    args = parser.parse_args(argv)
    if args.samples_per_branch < 0:
        parser.error("--samples-per-branch must be >= 0")
    problems = [problem] if (problem := records_problem(args.output_dir)) else []
    problems += [problem] if (problem := reference_flags_problem(args)) else []
    results = None
    if args.reference is not None and not problems:
        from .reference import results_against, set_options  # the metrics' models: torch

        results, problems = results_against(args.output_dir, args.reference, set_options(args))
    if problems:
        print("\n".join(f"error: {problem}" for problem in problems) + "\nnothing was written", file=sys.stderr)
        return 2
    print(f"report: {write_report(args.output_dir, args.samples_per_branch, results and (str(args.reference), results))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
