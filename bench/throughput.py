"""Side-by-side throughput benchmark: this project's generate.py against the reference path.

    python bench/throughput.py                 # or: make bench
    python bench/throughput.py --repeats 3 --ranks 1 2 --steps 100

Both run in this one invocation, alternating, on the same trees, model, steps, batch size and
machine: the reference (``bench/reference.py``: upstream ``generate_diffusion_cond`` over the whole
window, split by count, write after each batch) and ``generate.py`` with its defaults (latents sized
to each item, cost-balanced shards, background writing). Each run is a fresh process (``torchrun``
for 2 ranks) timed end to end - imports and model loading included, the same for both - with its
peak resident memory summed over all its processes. The model is the tiny random Stable Audio Open
1.0 (``stable_audio_tools_ext.model.tiny``, full 47.55 s window) unless ``--pretrained-name`` names another
model available offline. Results: a rich table, ``docs/throughput.png``, and a section appended to
``docs/BENCHMARKS.md`` with the machine's details.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from stable_audio_tools_ext.model.tiny import build_tiny_hub_cache, offline_hub_env  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
VARIANTS = {"reference": REPO / "bench" / "reference.py", "this project": REPO / "generate.py"}


def workloads() -> dict[str, dict]:
    """The trees: the example sweep, all-10 s sound effects, and durations mixed from 5 to 47 s."""
    example = yaml.safe_load((REPO / "example/generation/generate_conditions.yaml").read_text())
    sfx = {"sfx": {f"fx-{i:02d}": {"prompt": f"sound effect number {i}", "seconds_start": 0, "seconds_total": 10}
                   for i in range(12)}}  # fmt: skip
    mixed = {"mixed": {f"clip-{i:02d}": {"prompt": f"a clip of {5 + i * 42 / 11:.1f} seconds", "seconds_start": 0,
                                         "seconds_total": round(5 + i * 42 / 11, 1)} for i in range(12)}}  # fmt: skip
    return {"example": example, "sfx 10 s": sfx, "mixed 5-47 s": mixed}


def audio_seconds(tree: dict) -> float:
    if all(not isinstance(v, dict) for v in tree.values()):
        return float(tree["seconds_total"])
    return sum(audio_seconds(v) for v in tree.values())


def count_items(tree: dict) -> int:
    return 1 if all(not isinstance(v, dict) for v in tree.values()) else sum(count_items(v) for v in tree.values())


def tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{pid}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


@dataclass
class Run:
    variant: str
    workload: str
    ranks: int
    wall: float
    peak_rss: int
    audio_seconds: float
    items: int


def run_once(variant: str, tree_path: Path, ranks: int, args: argparse.Namespace, env: dict[str, str]) -> tuple[float, int]:
    script = str(VARIANTS[variant])
    launcher = [sys.executable] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                     f"--nproc_per_node={ranks}"]  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        command = [*launcher, script, "--cond-yaml-path", str(tree_path), "--output-dir", out,
                   "--pretrained-name", args.pretrained_name, "--sample-steps", str(args.steps),
                   "--batch-size", str(args.batch_size)]  # fmt: skip
        if variant == "this project":
            command.append("--clip-length")
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peak = 0
        while process.poll() is None:
            peak = max(peak, tree_rss_bytes(process.pid))
            time.sleep(0.2)
        wall = time.perf_counter() - started
        if process.returncode != 0:
            raise SystemExit(f"{variant} failed on {tree_path.name}:\n{process.stderr.read()[-3000:]}")
    return wall, peak


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {gpu}; Python {platform.python_version()}, torch {torch.__version__}"


def report(runs: list[Run], args: argparse.Namespace, console: Console) -> None:
    groups: dict[tuple[str, int, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.workload, run.ranks, run.variant), []).append(run)
    table = Table(title=f"Throughput, {args.steps} steps, batch {args.batch_size}, median of {args.repeats}")
    for column in ("workload", "ranks", "variant", "audio-s / wall-s", "s per item", "peak RSS GiB", "speed-up"):
        table.add_column(column, justify="left" if column in ("workload", "variant") else "right")
    rows, bars = [], []
    for (workload, ranks, variant), group in groups.items():
        wall = statistics.median(r.wall for r in group)
        speed = group[0].audio_seconds / wall
        reference = groups.get((workload, ranks, "reference"))
        ratio = speed / (group[0].audio_seconds / statistics.median(r.wall for r in reference)) if reference else float("nan")
        row = (workload, str(ranks), variant, f"{speed:.2f}", f"{wall / group[0].items:.2f}",
               f"{max(r.peak_rss for r in group) / 2**30:.2f}", f"{ratio:.2f}x")  # fmt: skip
        table.add_row(*row)
        rows.append(row)
        bars.append((f"{workload}\n{ranks} rank{'s' * (ranks > 1)}", variant, speed))
    console.print(table)
    _plot(bars, args.png)
    _append_markdown(rows, args, runs)
    console.print(f"wrote {args.png} and appended to {args.markdown}")


def _plot(bars: list[tuple[str, str, float]], png: Path) -> None:
    labels = list(dict.fromkeys(label for label, _, _ in bars))
    variants = list(dict.fromkeys(variant for _, variant, _ in bars))
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(labels)), 4))
    width = 0.8 / len(variants)
    for n, variant in enumerate(variants):
        values = {label: speed for label, v, speed in bars if v == variant}
        axes.bar([i + n * width for i in range(len(labels))], [values.get(label, 0) for label in labels], width, label=variant)
    axes.set_xticks([i + width * (len(variants) - 1) / 2 for i in range(len(labels))], labels, fontsize=8)
    axes.set_ylabel("audio seconds per wall second")
    axes.set_title("generate.py vs reference path (higher is better)")
    axes.legend()
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)


def _append_markdown(rows: list[tuple[str, ...]], args: argparse.Namespace, runs: list[Run]) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    lines = [
        f"\n## {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC - `bench/throughput.py` at {commit or 'unknown'}\n",
        f"Machine: {machine()}.  ",
        f"Model: {args.pretrained_name} ({'tiny random weights, full 47.55 s window' if args.tiny else 'as named'}); "
        f"{args.steps} steps, batch size {args.batch_size}, median of {args.repeats} runs each, alternating variants; "
        "wall time is end to end per run (process start, model load, generation, writing).\n",
        "| workload | ranks | variant | audio-s / wall-s | s per item | peak RSS GiB | speed-up vs reference |",
        "|---|---:|---|---:|---:|---:|---:|",
        *[f"| {' | '.join(row)} |" for row in rows],
        "",
        f"All runs (wall seconds): {', '.join(f'{r.workload}/{r.ranks}/{r.variant}: {r.wall:.1f}' for r in runs)}\n",
    ]
    with open(args.markdown, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workloads", nargs="+", default=list(workloads()))
    parser.add_argument("--pretrained-name", default="stabilityai/stable-audio-open-1.0")
    parser.add_argument("--hf-home", type=Path, default=REPO / ".cache" / "hf-demo", help="offline hub cache")
    parser.add_argument("--markdown", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "throughput.png")
    args = parser.parse_args()
    args.tiny = args.pretrained_name == "stabilityai/stable-audio-open-1.0" and not os.environ.get("HF_TOKEN")
    if args.tiny:
        build_tiny_hub_cache(args.hf_home)
    env = offline_hub_env(args.hf_home)
    env["PYTHONPATH"] = str(REPO)
    console = Console()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.workloads:
            tree = workloads()[name]
            path = Path(scratch) / f"{name.replace(' ', '_')}.yaml"
            path.write_text(yaml.safe_dump(tree, sort_keys=False))
            for ranks in args.ranks:
                for repeat in range(args.repeats):
                    for variant in VARIANTS:
                        wall, peak = run_once(variant, path, ranks, args, env)
                        runs.append(Run(variant, name, ranks, wall, peak, audio_seconds(tree), count_items(tree)))
                        console.print(f"{name} / {ranks} rank(s) / {variant} / repeat {repeat + 1}: {wall:.1f} s, "
                                      f"peak {peak / 2**30:.2f} GiB", highlight=False)  # fmt: skip
    report(runs, args, console)


if __name__ == "__main__":
    main()
