"""How long rank 0's resume scan takes: the wait the other ranks spend in a collective (``--dist-timeout``).

    PYTHONPATH=. python bench/resume_scan.py [--items 20000]

Writes ``--items`` short finished files and their manifest records (with the fingerprints a real run
would record) into a temporary output folder, then times ``resume_state`` - the scan generate.py's
rank 0 runs before the plan is broadcast - cold (page cache dropped where allowed) and warm, and
appends the result to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.throughput import REPO, machine
from stable_audio_tools_ext.model.families import SAMPLER_NAMES
from stable_audio_tools_ext.output.audio_io import FORMATS, write_audio_atomic
from stable_audio_tools_ext.output.manifest import MANIFEST_NAME, load_records
from stable_audio_tools_ext.output.resume import OutputSettings, fingerprint, resume_state
from stable_audio_tools_ext.tree.plan import SamplingDefaults, build_plan
from stable_audio_tools_ext.tree.reader import parse_condition_tree

SAMPLE_RATE = 44100
SECONDS = 0.05  # short files: the scan opens each header, so their length hardly matters


def finished_output(out: Path, count: int) -> tuple[list, OutputSettings]:
    """An output folder in which all ``count`` items of a one-leaf tree are complete."""
    leaves = parse_condition_tree(f"sounds:\n  hit: {{prompt: a hit, seconds_total: {SECONDS}, n_samples: {count}}}\n",
                                  SAMPLER_NAMES)  # fmt: skip
    items = build_plan(leaves, SamplingDefaults(), 47.55, "wav", max_items=count)
    settings = OutputSettings(model="bench", model_revision="0" * 40, precision="fp32", audio_format="wav", clip_length=True)
    samples = np.zeros((int(SECONDS * SAMPLE_RATE), 2), dtype=np.float32)
    lines = []
    for item in items:
        path = out / item.relpath
        write_audio_atomic(path, samples, SAMPLE_RATE, FORMATS["wav"])
        lines.append(json.dumps({"path": item.relpath, "status": "ok", "fingerprint": fingerprint(item, settings),
                                 "bytes": path.stat().st_size, "frames": len(samples), "sample_rate": SAMPLE_RATE,
                                 **dataclasses.asdict(item.request)}))  # fmt: skip
    (out / MANIFEST_NAME).write_text("\n".join(lines) + "\n")
    return items, settings


def drop_page_cache() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--markdown", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        items, settings = finished_output(out, args.items)
        timings = {}
        for label in ("cold", "warm"):
            if label == "cold" and not drop_page_cache():
                label = "warm (page cache could not be dropped)"
            started = time.perf_counter()
            state = resume_state(items, load_records(out), out, settings)
            timings[label] = time.perf_counter() - started
            assert state.done == args.items and not state.pending, state.summary()
    rows = "\n".join(f"| {label} | {args.items:,} | {seconds:.2f} s | {args.items / seconds:,.0f} |" for label, seconds in timings.items())
    text = (
        f"\n## Resume scan (rank 0, before the plan is broadcast)\n\n`python bench/resume_scan.py --items {args.items}` "
        f"on {machine()}: manifest read + fingerprint + size check + header read per finished file, "
        f"local disk.\n\n| page cache | files | scan | files/s |\n|---|---|---|---|\n{rows}\n"
    )
    print(text)
    with open(args.markdown, "a", encoding="utf-8") as markdown:
        markdown.write(text)


if __name__ == "__main__":
    main()
