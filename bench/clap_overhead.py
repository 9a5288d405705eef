"""What ``generate.py --score clap`` costs: the same tree generated without and with scoring, side by side.

    make bench-score          # = .venv/bin/python -m bench.clap_overhead [--repeats 3] [--items 8]

One process, one machine, CPU: the tiny Stable Audio Open 1.0 of the offline cache (random weights,
full 47.55 s window, duration-aware latents) generates a tree of ``--items`` prompts of 10 s each
(``--steps`` of ``dpmpp-3m-sde``, default 25, cfg 7, batch 4, ``--clip-length``) through ``generate.py``'s own
entry point (``cli.main``), into a fresh folder per run, once without and once with ``--score
clap``, alternating (the order reversed every other repeat). Timed: each run's wall time (the model
loads included, as a user sees it); and scoring alone, as the run does it: loading the tiny CLAP,
then scoring the written files in batches of 4. The question is whether scoring slows a run by more
than the scoring itself takes (it runs on the writer thread, beside sampling).

In the same scoring step, on the same files (read once), the set metrics' models (``finetune.py
score``, ``evaluate --reference``): OpenL3's frames of FD_openl3 and PaSST's class probabilities of
KL_passt, each loaded and timed alone, in batches of 4 files like the CLAP, as files per second. These
are the tiny random stand-ins of the offline cache (``scoring.standins``: OpenL3 with narrow
convolutions, PaSST 64 wide and 1 block deep), so the figures weigh the recipes' own work (resampling,
framing, spectrograms) far more than the real models would; relative figures of one run are what
they are for. The medians are appended to ``docs/BENCHMARKS.md`` with the machine's details and the
load average seen before and after the run. Random weights: cost only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
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


SCORERS = ("CLAP score", "FD_openl3", "KL_passt")  # as the pages name them; the models timed in scoring_alone


def scoring_alone(out: Path) -> dict[str, tuple[float, float]]:
    """Seconds to load each scorer's model, and to run ``out``'s files through it in batches of ``BATCH`` (the files
    read from disk once, first): the CLAP's per-item scores, OpenL3's frames, PaSST's class probabilities."""
    import torch

    from stable_audio_tools_ext.output.manifest import load_records
    from stable_audio_tools_ext.scoring.clap import ClapScorer, read_clip
    from stable_audio_tools_ext.scoring.openl3 import Openl3Embedder
    from stable_audio_tools_ext.scoring.passt import PasstClassifier

    cpu = torch.device("cpu")
    records = list(load_records(out).values())
    clips = [read_clip(out / r["path"], r["seconds_total"]) for r in records]
    prompts = [r["prompt"] for r in records]
    scorers = {
        "CLAP score": (lambda: ClapScorer.load(device=cpu), lambda model, start: model.scores(
            prompts[start:start + BATCH], clips[start:start + BATCH])),
        "FD_openl3": (lambda: Openl3Embedder.load("music", cpu), lambda model, start: model.frames(clips[start:start + BATCH])),
        "KL_passt": (lambda: PasstClassifier.load(cpu), lambda model, start: model.probabilities(clips[start:start + BATCH])),
    }  # fmt: skip
    timed = {}
    for name in SCORERS:
        load, run_batch = scorers[name]
        started = time.perf_counter()
        model = load()
        loaded = time.perf_counter()
        for start in range(0, len(records), BATCH):
            run_batch(model, start)
        timed[name] = (loaded - started, time.perf_counter() - loaded)
    return timed


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"without": [], "with --score clap": []}
    results |= {f"{name} {part}": [] for name in SCORERS for part in ("load", "files")}
    results["load average"] = [os.getloadavg()[0]]
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
            for name, (load, files) in scoring_alone(out).items():
                results[f"{name} load"].append(load)
                results[f"{name} files"].append(files)
                print(f"repeat {repeat + 1}, {name} alone: load {load:.2f} s, {args.items} files {files:.2f} s", flush=True)
    results["load average"].append(os.getloadavg()[0])
    return results


def section(results: dict[str, list[float]], args: argparse.Namespace) -> str:
    from bench.throughput import machine

    median = {name: statistics.median(values) for name, values in results.items()}
    added = median["with --score clap"] - median["without"]
    alone = median["CLAP score load"] + median["CLAP score files"]
    runs = "; ".join(f"{name}: " + ", ".join(f"{v:.2f}" for v in values) for name, values in results.items())
    before, after = results["load average"]
    now = datetime.datetime.now(datetime.timezone.utc)
    what = {"CLAP score": "tiny CLAP (RoBERTa + fused HTSAT at tiny widths): per-item scores",
            "FD_openl3": "OpenL3 stand-in (mel256, narrow convolutions): frames, 1 s every 0.5 s, L+R",
            "KL_passt": "PaSST stand-in (64 wide, 1 block): class probabilities, 10 s windows"}  # fmt: skip
    rates = [f"| {name} | {what[name]} | {median[f'{name} load']:.2f} | {median[f'{name} files']:.2f} | "
             f"{args.items / median[f'{name} files']:.3g} | unmeasured |" for name in SCORERS]  # fmt: skip
    return "\n".join([
        f"\n## Scoring cost: CLAP overhead, set metrics' files per second (bench/clap_overhead.py, CPU, {now:%Y-%m-%d})\n",
        f"Run {now:%Y-%m-%d %H:%M} UTC. `make bench-score` (= `.venv/bin/python -m "
        f"bench.clap_overhead --repeats {args.repeats} --items {args.items} --steps {args.steps}`), one process, CPU, side by side: the tiny "
        f"SAO 1.0 (random weights, full window, fp32) generates a tree of {args.items} prompts of 10 s through "
        f"`generate.py`'s entry point ({args.steps} steps of `dpmpp-3m-sde`, cfg 7, batch {BATCH}, `--clip-length`), into a fresh folder each "
        f"time, without and with `--score clap` (the tiny CLAP: RoBERTa + fused HTSAT at tiny widths), alternating, "
        f"median of {args.repeats}. Scoring alone: loading that CLAP, and scoring the written files in batches of {BATCH}.\n",
        f"Machine: {machine()}; load average (1 min) {before:.2f} before the run, {after:.2f} after it.\n",
        "| | median s |",
        "|---|---:|",
        f"| generate.py, without scoring | {median['without']:.2f} |",
        f"| generate.py, with `--score clap` | {median['with --score clap']:.2f} |",
        f"| added by `--score clap` | {added:.2f} ({added / median['without']:+.1%}) |",
        f"| scoring alone: CLAP load | {median['CLAP score load']:.2f} |",
        f"| scoring alone: {args.items} files | {median['CLAP score files']:.2f} |",
        f"| scoring alone, in all | {alone:.2f} |",
        "",
        f"Each metric's model alone, in the same scoring step on the same {args.items} files of 10 s (read once, "
        f"batches of {BATCH}, CPU; median of {args.repeats}). FD_openl3 and KL_passt run on the tiny random stand-ins "
        "of the offline cache, not the real OpenL3 and PaSST-S, so their rates weigh the recipes' resampling, "
        "framing and spectrograms far more than the real models would: compare them with each other and with the "
        "CLAP row of this run only. The set distances themselves (a Fréchet distance, a mean of KLs) take "
        "milliseconds and are not timed.\n",
        "| metric | model | load s | files s | files per second, CPU | files per second, GPU |",
        "|---|---|---:|---:|---:|---:|",
        *rates,
        "",
        f"All runs (seconds; load average: before, after): {runs}.\n",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--items", type=int, default=8, help="prompts in the tree, 10 s each")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps per item")
    parser.add_argument("--markdown", type=Path, default=REPO / "docs" / "BENCHMARKS.md", help="appended to")
    args = parser.parse_args(argv)
    from stable_audio_tools_ext.scoring.standins import write_standin_cache

    write_standin_cache(use_offline_tiny_hub())  # the OpenL3 and PaSST stand-ins in its TORCH_HOME (once)
    print_and_append(section(run(args), args), args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
