"""File-per-item vs WebDataset shards at scale: files created and wall time of generate.py, then reading speed.

    make bench-shards            # = .venv/bin/python -m bench.shards [--items 10000]

One invocation, one machine: a one-branch tree of ``--items`` short items (0.5 s, the small-window tiny
SAO 1.0 of the test cache, 1 step of dpmpp-2m, whose first step k-diffusion's dpmpp-3m-sde cannot take)
is generated twice with the same flags, ``--output-format files`` and ``--output-format wds``, each with
``--dataset-config``; each run's wall time (the whole generate.py process) and the files and folders it
left (inodes) are counted. Then each folder's dataset config goes through stable-audio-tools' own
``create_dataloader_from_config`` (``audio_dir``: ``SampleDataset``; ``wds``: its WebDataset pipeline,
one pass over the shards) with the same batch, crop and workers, and samples per second are timed from
the first batch to the last. Appends the table to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMALL_WINDOW_SAMPLES = 64 * 2048  # the test suite's small-window tiny model (about 2.97 s)
SECONDS = 0.5
FLAGS = ["--sample-steps", "1", "--sampler-type", "dpmpp-2m", "--clip-length", "--dataset-config"]


def tree(items: int) -> str:
    leaves = -(-items // 100)
    lines = ["sounds:"] + [f"  s{i:05d}: {{prompt: sound number {i}, seconds_total: {SECONDS}, n_samples: 100}}"
                           for i in range(leaves)]  # fmt: skip
    return "\n".join(lines) + "\n"


def inodes(folder: Path) -> int:
    """Files and folders below ``folder`` (what a filesystem's inode quota counts)."""
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(folder))


def generate(tree_path: Path, out: Path, env: dict[str, str], batch_size: int, extra: list[str]) -> float:
    command = [sys.executable, str(REPO / "generate.py"), "--cond-yaml-path", str(tree_path), "--output-dir", str(out),
               "--batch-size", str(batch_size), *FLAGS, *extra]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"generate.py failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def read_rate(config_path: Path, batch_size: int, workers: int) -> tuple[int, float]:
    """Samples stable-audio-tools' loader yields for one pass, and their rate (first batch to last)."""
    from stable_audio_tools.data.dataset import create_dataloader_from_config

    config = json.loads(config_path.read_text())
    config["resampled_shards"] = False  # one pass over the shards, as the audio_dir loader makes one pass
    loader = create_dataloader_from_config(config, batch_size=batch_size, sample_size=SMALL_WINDOW_SAMPLES,
                                           sample_rate=44100, audio_channels=2, num_workers=workers)  # fmt: skip
    samples, first = 0, None
    for audio, _ in loader:
        if first is None:
            first = time.perf_counter()
            continue  # the first batch carries the workers' start-up
        samples += audio.shape[-3]
    return samples, samples / (time.perf_counter() - first)


def run(args: argparse.Namespace) -> dict:
    from bench.throughput import machine
    from stable_audio_tools_ext.model.tiny import build_tiny_hub_cache, offline_hub_env

    env = {**os.environ, **offline_hub_env(build_tiny_hub_cache(REPO / ".cache" / "hf-tests-window64",
                                                                  sample_size=SMALL_WINDOW_SAMPLES))}  # fmt: skip
    env["PYTHONPATH"] = str(REPO)
    result: dict = {"machine": machine(), "items": args.items, "batch_size": args.batch_size, "workers": args.workers,
                    "shard_size": args.shard_size}  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        tree_path = root / "tree.yaml"
        tree_path.write_text(tree(args.items))
        for layout, extra in (("files", []), ("wds", ["--output-format", "wds", "--shard-size", str(args.shard_size)])):
            out = root / layout
            wall = generate(tree_path, out, env, args.batch_size, extra)
            samples, rate = read_rate(out / "dataset_config.json", args.read_batch_size, args.workers)
            result[layout] = {"wall_s": wall, "inodes": inodes(out), "read_samples": samples, "read_samples_per_s": rate}
            print(layout, json.dumps(result[layout]), flush=True)
    return result


def table(result: dict) -> str:
    files, wds = result["files"], result["wds"]
    rows = [
        f"\n## File-per-item vs WebDataset shards (bench/shards.py, {time.strftime('%Y-%m-%d')})\n",
        f"{result['items']:,} items of {SECONDS} s (small-window tiny SAO 1.0, 1 step, batch {result['batch_size']}), "
        f"one process; shards of {result['shard_size']}. Reading: stable-audio-tools' `create_dataloader_from_config` "
        f"on each folder's `dataset_config.json`, batch {result['read_batch_size']}, {result['workers']} worker(s), one pass, "
        f"timed from the first batch to the last. Machine: {result['machine']}.\n",
        "| layout | files + folders created | generate.py wall s | loader samples | loader samples/s |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("files", "one file per item (`audio_dir`)"), ("wds", "WebDataset shards (`wds`)")):
        r = result[name]
        rows.append(f"| {label} | {r['inodes']:,} | {r['wall_s']:.1f} | {r['read_samples']:,} | {r['read_samples_per_s']:.0f} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=64, help="generate.py --batch-size")
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--read-batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="dataloader workers")
    parser.add_argument("--tmp", type=Path, help="where the two output folders go (default: the system's temp dir)")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    parser.add_argument("--no-append", action="store_true", help="do not append to docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    result = run(args) | {"read_batch_size": args.read_batch_size}
    text = table(result)
    print(text)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_append:
        with open(REPO / "docs" / "BENCHMARKS.md", "a", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
