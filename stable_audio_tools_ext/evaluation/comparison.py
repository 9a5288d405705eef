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

from ..datasets.reference import SetResults
from ..datasets.report import (STYLE, branch_of, clap_scores, distance_basis, distance_cells, distance_headers,
                               distance_metrics, distance_warnings, html_table, mean_score, spectrogram_thumbnail)  # fmt: skip
from ..output.atomic import atomic_write_text
from ..output.manifest import Record, load_records
from ..output.resume import VALID_STATUSES

COMPARISON_NAME = "comparison.html"
CELL_STYLE = """
.cell img { width: 220px; height: 80px; display: block; } .cell audio { width: 220px; margin-top: 4px; }
.score { font-variant-numeric: tabular-nums; }
"""


@dataclass(frozen=True)
class ModelColumn:
    """One model of the comparison: its label (folder name), where its weights came from, its output folder."""

    label: str
    source: str
    folder: Path
    sets: SetResults | None = None


def _summary(columns: Sequence[ModelColumn], records: dict[str, dict[str, Record]], reference: str | None) -> str:
    """One row per model; branch columns are the top-level branches any model has items in."""
    branches = sorted({branch_of(r) for by_path in records.values() for r in by_path.values()})
    metrics = distance_metrics([c.sets for c in columns])
    headers = ["model", "weights", "items written", "mean CLAP score (items)"] + [f"CLAP: {b}" for b in branches]
    headers += distance_headers(metrics, "model") if reference else []
    rows = []
    for column in columns:
        mine = list(records[column.label].values())
        written = [r for r in mine if r.get("status") in VALID_STATUSES]
        row = [html.escape(column.label), f'<span class="path">{html.escape(column.source)}</span>',
               f"{len(written)} of {len(mine)}", mean_score(clap_scores(mine))]  # fmt: skip
        row += [mean_score(clap_scores([r for r in mine if branch_of(r) == b])) for b in branches]
        rows.append(row + (distance_cells(column.sets, metrics) if reference else []))
    return html_table(headers, rows, numeric=range(2, len(headers)))


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
    basis = distance_basis(reference) if reference else "No --reference: no distances."
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}{CELL_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="muted">{html.escape(str(output_dir.resolve()))} &middot; {len(columns)} models, same tree and seeds &middot; {generated}</p>
<section id="summary"><h2>Per model</h2>
<p class="muted">CLAP score: prompt-audio cosine similarity in [-1, 1] (finetune.py evaluate --score clap); mean (items). {basis}</p>
{_summary(columns, records, reference)}{distance_warnings([c.sets for c in columns])}</section>
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
