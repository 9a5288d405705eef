"""What ``generate.py --score clap`` costs: the same tree generated without and with scoring, side by side.

    make bench-score          # = .venv/bin/python -m bench.clap_overhead [--repeats 3] [--items 8]

One process, one machine, CPU: the tiny Stable Audio Open 1.0 of the offline cache (random weights,
full 47.55 s window, duration-aware latents) generates a tree of ``--items`` prompts of 10 s each
(``--steps`` of ``dpmpp-3m-sde``, default 25, cfg 7, batch 4, ``--clip-length``) through ``generate.py``'s own
entry point (``cli.main``), into a fresh folder per run, once without and once with ``--score
clap``, alternating (the order reversed every other repeat). Timed: each run's wall time (the model
loads included, as a user sees it); and scoring alone, as the run does it: loading the tiny CLAP,
then scoring the written files in batches of 4. The question is whether scoring slows a run by more
than the scoring itself takes (it runs on the writer thread, beside sampling). The medians are
appended to ``docs/BENCHMARKS.md`` with the machine's details. Random weights: cost only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import statistics
import tempfile
import time
from pathlib import Path

from bench.sao_models import REPO, print_and_append, use_offline_tiny_hub

PROMPTS = (
    "128 BPM techno drum loop", "rain on a tin roof", "a dog barking in the distance", "warm analog synth pad",
    "acoustic guitar strumming folk chords", "ocean waves on the shore", "jazz saxophone solo", "a crackling campfire",
)  # fmt: skip
BATCH = 4


def tree(items: int) -> str:
    """A flat tree of ``items`` leaves of 10 s each (prompts repeat past eight, with a number)."""
    lines = [f"item{i:02d}: {{prompt: \"{PROMPTS[i % len(PROMPTS)]} {i}\", seconds_total: 10}}" for i in range(items)]
    return "\n".join(lines) + "\n"


def generate(tree_path: Path, out: Path, score: bool, steps: int) -> float:
    """Wall seconds of one ``generate.py`` run (its terminal output discarded)."""
    from stable_audio_tools_ext.run import cli

    args = ["--cond-yaml-path", str(tree_path), "--output-dir", str(out), "--batch-size", str(BATCH), "--clip-length",
            "--sample-steps", str(steps)]  # fmt: skip
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(args + (["--score", "clap"] if score else []))
    assert code == 0, f"generate.py exited {code}"
    return time.perf_counter() - started


def scoring_alone(out: Path) -> tuple[float, float]:
    """Seconds to load the CLAP, and to score ``out``'s files in batches of ``BATCH`` (read from disk first)."""
    import torch

    from stable_audio_tools_ext.output.manifest import load_records
    from stable_audio_tools_ext.scoring.clap import ClapScorer, read_clip

    started = time.perf_counter()
    scorer = ClapScorer.load(device=torch.device("cpu"))
    loaded = time.perf_counter()
    records = list(load_records(out).values())
    clips = [read_clip(out / r["path"], r["seconds_total"]) for r in records]
    scoring_started = time.perf_counter()
    for start in range(0, len(records), BATCH):
        scorer.scores([r["prompt"] for r in records[start:start + BATCH]], clips[start:start + BATCH])
    return loaded - started, time.perf_counter() - scoring_started


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"without": [], "with --score clap": [], "CLAP load": [], "scoring": []}
    with tempfile.TemporaryDirectory() as scratch:
        tree_path = Path(scratch) / "tree.yaml"
        tree_path.write_text(tree(args.items))
        generate(tree_path, Path(scratch) / "warm-up", True, args.steps)  # imports, first-call allocations
        for repeat in range(args.repeats):
            for score in ((False, True) if repeat % 2 == 0 else (True, False)):
                out = Path(scratch) / f"run-{repeat}-{'score' if score else 'plain'}"
                wall = generate(tree_path, out, score, args.steps)
                results["with --score clap" if score else "without"].append(wall)
                print(f"repeat {repeat + 1}, {'with' if score else 'without'} --score clap: {wall:.2f} s", flush=True)
            load, scoring = scoring_alone(out)
            results["CLAP load"].append(load)
            results["scoring"].append(scoring)
            print(f"repeat {repeat + 1}, scoring alone: load {load:.2f} s, {args.items} files {scoring:.2f} s", flush=True)
    return results


def section(results: dict[str, list[float]], args: argparse.Namespace) -> str:
    from bench.throughput import machine

    median = {name: statistics.median(values) for name, values in results.items()}
    added = median["with --score clap"] - median["without"]
    alone = median["CLAP load"] + median["scoring"]
    runs = "; ".join(f"{name}: " + ", ".join(f"{v:.2f}" for v in values) for name, values in results.items())
    return "\n".join([
        "\n## CLAP scoring overhead (bench/clap_overhead.py)\n",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. `make bench-score` (= `.venv/bin/python -m "
        f"bench.clap_overhead --repeats {args.repeats} --items {args.items} --steps {args.steps}`), one process, CPU, side by side: the tiny "
        f"SAO 1.0 (random weights, full window, fp32) generates a tree of {args.items} prompts of 10 s through "
        f"`generate.py`'s entry point ({args.steps} steps of `dpmpp-3m-sde`, cfg 7, batch {BATCH}, `--clip-length`), into a fresh folder each "
        f"time, without and with `--score clap` (the tiny CLAP: RoBERTa + fused HTSAT at tiny widths), alternating, "
        f"median of {args.repeats}. Scoring alone: loading that CLAP, and scoring the written files in batches of {BATCH}.\n",
        f"Machine: {machine()}.\n",
        "| | median s |",
        "|---|---:|",
        f"| generate.py, without scoring | {median['without']:.2f} |",
        f"| generate.py, with `--score clap` | {median['with --score clap']:.2f} |",
        f"| added by `--score clap` | {added:.2f} ({added / median['without']:+.1%}) |",
        f"| scoring alone: CLAP load | {median['CLAP load']:.2f} |",
        f"| scoring alone: {args.items} files | {median['scoring']:.2f} |",
        f"| scoring alone, in all | {alone:.2f} |",
        "",
        f"All runs (seconds): {runs}.\n",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--items", type=int, default=8, help="prompts in the tree, 10 s each")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps per item")
    parser.add_argument("--markdown", type=Path, default=REPO / "docs" / "BENCHMARKS.md", help="appended to")
    args = parser.parse_args(argv)
    use_offline_tiny_hub()
    print_and_append(section(run(args), args), args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
