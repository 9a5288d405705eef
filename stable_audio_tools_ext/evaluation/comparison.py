"""``comparison.html``: the items of one tree as several models generated them, side by side.

A summary row per model (items written, mean CLAP score overall and per top-level branch, and with
``--reference`` each distance ``--metrics`` asks for: FD_openl3, KL_passt, FD_clap, with the file
counts they rest on and their warnings once per page), then one row per item and one column per model: an audio player, a
spectrogram thumbnail and the item's CLAP score. Self-contained like ``report.html`` (its style and
helpers): thumbnails are inlined PNGs, there is no script, and players link each model's files by
relative path (``<label>/<relpath>``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from ..datasets.report import STYLE, branch_of, html_table, spectrogram_thumbnail
from ..output.atomic import atomic_write_text
from ..output.manifest import Record, load_records
from ..output.resume import VALID_STATUSES
from ..scoring.options import DISTANCES
from ..scoring.sets import NAMES, Distance

COMPARISON_NAME = "comparison.html"
CELL_STYLE = """
.cell img { width: 220px; height: 80px; display: block; } .cell audio { width: 220px; margin-top: 4px; }
.score { font-variant-numeric: tabular-nums; } .warning { color: #8a5a00; }
"""


@dataclass(frozen=True)
class SetResults:
    """A model's distances to the reference set by metric (a value ``None`` when the sets allow none) and the
    file counts they rest on."""

    distances: dict[str, Distance]
    count: int
    reference_count: int


@dataclass(frozen=True)
class ModelColumn:
    """One model of the comparison: its label (folder name), where its weights came from, its output folder."""

    label: str
    source: str
    folder: Path
    sets: SetResults | None = None


def _mean(values: Sequence[float]) -> str:
    return f"{sum(values) / len(values):.4f} ({len(values)})" if values else "-"


def _scores(records: Sequence[Record]) -> list[float]:
    return [float(r["clap_score"]) for r in records if r.get("clap_score") is not None]


def _distance_metrics(columns: Sequence[ModelColumn]) -> list[str]:
    """The distances any model has, in ``DISTANCES`` order (the score JSON's)."""
    return [m for m in DISTANCES if any(c.sets and m in c.sets.distances for c in columns)]


def _summary(columns: Sequence[ModelColumn], records: dict[str, dict[str, Record]], reference: str | None) -> str:
    """One row per model; branch columns are the top-level branches any model has items in."""
    branches = sorted({branch_of(r) for by_path in records.values() for r in by_path.values()})
    metrics = _distance_metrics(columns)
    headers = ["model", "weights", "items written", "mean CLAP score (items)"] + [f"CLAP: {b}" for b in branches]
    headers += [NAMES[m] for m in metrics] + ["files (model / reference)"] if reference else []
    rows = []
    for column in columns:
        mine = list(records[column.label].values())
        written = [r for r in mine if r.get("status") in VALID_STATUSES]
        row = [html.escape(column.label), f'<span class="path">{html.escape(column.source)}</span>',
               f"{len(written)} of {len(mine)}", _mean(_scores(mine))]  # fmt: skip
        row += [_mean(_scores([r for r in mine if branch_of(r) == b])) for b in branches]
        if reference:
            found = column.sets.distances if column.sets else {}
            row += ["-" if m not in found or found[m].value is None else f"{found[m].value:.4g}" for m in metrics]
            row.append("-" if column.sets is None else f"{column.sets.count} / {column.sets.reference_count}")
        rows.append(row)
    return html_table(headers, rows, numeric=range(2, len(headers)))


def _warnings(columns: Sequence[ModelColumn]) -> str:
    """The distances' warnings (too few files or frames, unpaired files), each once per page."""
    warnings = dict.fromkeys(w for c in columns if c.sets for d in c.sets.distances.values() for w in d.warnings)
    return "".join(f'<p class="warning">{html.escape(w)}</p>' for w in warnings)


def _cell(column: ModelColumn, relpath: str, record: Record | None) -> str:
    """A model's rendering of one item: thumbnail, player and score, or why there is none."""
    if record is None:
        return '<span class="flag">not generated</span>'
    path = column.folder / relpath
    if record.get("status") not in VALID_STATUSES or not path.is_file():
        return f'<span class="flag">not written ({html.escape(str(record.get("status")))})</span>'
    score = record.get("clap_score")
    return (
        f'<div class="cell"><img alt="spectrogram of {html.escape(column.label)}/{html.escape(relpath)}" '
        f'src="{spectrogram_thumbnail(path)}"><audio controls preload="none" '
        f'src="{html.escape(quote(f"{column.label}/{relpath}"))}"></audio>'
        + (f'<div class="score">CLAP {float(score):.4f}</div>' if score is not None else "") + "</div>"
    )  # fmt: skip


def _items(columns: Sequence[ModelColumn], records: dict[str, dict[str, Record]]) -> str:
    """One row per item of any model (by relpath), one column per model."""
    relpaths = sorted({relpath for by_path in records.values() for relpath in by_path})
    rows = []
    for relpath in relpaths:
        prompt = next((str(r[relpath].get("prompt", "")) for r in records.values() if relpath in r), "")
        item = f'<div class="path">{html.escape(relpath)}</div><div class="muted">{html.escape(prompt)}</div>'
        rows.append([item] + [_cell(c, relpath, records[c.label].get(relpath)) for c in columns])
    return html_table(["item"] + [c.label for c in columns], rows)


def render_comparison(output_dir: Path, columns: Sequence[ModelColumn], reference: str | None) -> str:
    """The page as HTML text; ``reference`` names the ``--reference`` folder when there is one."""
    records = {column.label: load_records(column.folder) for column in columns}
    title = f"Model comparison: {output_dir.resolve().name}"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    basis = (
        f"Distances to the audio of {html.escape(reference)}, lower is closer (docs/evaluation.md): FD_openl3, Fréchet "
        "distance on OpenL3 frame embeddings (1 s every 0.5 s, left and right); KL_passt, mean KL divergence of PaSST's "
        "class probabilities of each item and the reference file of its id (path without extension); FD_clap, "
        "Fréchet distance on CLAP audio embeddings (unit vectors: 0 to a few, not comparable with FD_openl3). "
        "They rest on the file counts shown: with fewer files (FD_openl3: frames) than embedding dimensions a "
        "Fréchet distance mostly measures the counts."
        if reference else "No --reference: no distances."
    )  # fmt: skip
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}{CELL_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="muted">{html.escape(str(output_dir.resolve()))} &middot; {len(columns)} models, same tree and seeds &middot; {generated}</p>
<section id="summary"><h2>Per model</h2>
<p class="muted">CLAP score: prompt-audio cosine similarity in [-1, 1] (finetune.py evaluate --score clap); mean (items). {basis}</p>
{_summary(columns, records, reference)}{_warnings(columns)}</section>
<section id="items"><h2>Items</h2>
<p class="muted">Spectrogram 0 Hz to Nyquist, -120 to -20 dB.</p>
{_items(columns, records)}</section>
</body></html>
"""


def write_comparison(output_dir: Path, columns: Sequence[ModelColumn], reference: str | None) -> Path:
    """Write ``output_dir/comparison.html`` atomically; returns its path."""
    path = output_dir / COMPARISON_NAME
    atomic_write_text(path, render_comparison(output_dir, columns, reference))
    return path
