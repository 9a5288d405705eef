"""Does ``--compile`` pay off? generate.py with and without it, side by side, in one invocation.

    PYTHONPATH=. python bench/compile_speed.py [--steps 100] [--repeats 2]

Runs the sound-effect tree of ``bench/throughput.py`` on the tiny model (one process each, end to end,
compilation included, as a user would pay it) and appends the result to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.throughput import REPO, machine, workloads
from stable_audio_tools_ext.model.tiny import build_tiny_hub_cache, offline_hub_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--markdown", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    args = parser.parse_args()
    hf_home = build_tiny_hub_cache(REPO / ".cache" / "hf-demo")
    env = {**offline_hub_env(hf_home), "PYTHONPATH": str(REPO)}
    walls: dict[str, list[float]] = {"eager": [], "--compile": []}
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "sfx.yaml"
        tree.write_text(yaml.safe_dump(workloads()["sfx 10 s"]))
        for _ in range(args.repeats):
            for variant in walls:
                out = tempfile.mkdtemp(dir=scratch)
                command = [sys.executable, str(REPO / "generate.py"), "--cond-yaml-path", str(tree), "--output-dir", out,
                           "--sample-steps", str(args.steps), "--clip-length"] + (["--compile"] if variant == "--compile" else [])  # fmt: skip
                started = time.perf_counter()
                subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True)
                walls[variant].append(time.perf_counter() - started)
                print(f"{variant}: {walls[variant][-1]:.1f} s", flush=True)
    eager, compiled = (statistics.median(walls[v]) for v in walls)
    with open(args.markdown, "a", encoding="utf-8") as handle:
        handle.write(
            f"\n## `--compile` (bench/compile_speed.py)\n\nMachine: {machine()}. Tiny model, 12 x 10 s sound effects, "
            f"{args.steps} steps, 1 rank, end to end including compilation, median of {args.repeats}: "
            f"eager {eager:.1f} s, `--compile` {compiled:.1f} s ({eager / compiled:.2f}x). "
            f"All runs: {walls}.\n"
        )


if __name__ == "__main__":
    main()
