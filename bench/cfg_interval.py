"""Guidance interval (``cfg_interval``): the DiT work and time it saves on a small sweep, side by side.

    make bench-sweep          # = .venv/bin/python -m bench.cfg_interval [--repeats 5] [--device cpu]

One process, one model, one machine: the tiny Stable Audio Open 1.0 of the offline cache (random
weights, its full 47.55 s window; items get the default duration-aware latent length) generates the
same batch - four prompts of a sweep, 10 s each, 100 steps of ``dpmpp-3m-sde``, cfg 7, SAO 1.0's
schedule (sigma 500 -> 0.3) - once per ``cfg_interval`` setting, the settings alternating within
every repeat (the order reversed every other repeat). Counted, not estimated: the rows of every
batch that go through the DiT's transformer (a forward pre-hook; classifier-free guidance doubles
them at the steps where it runs). Timed: sampling (``generate_latents``: conditioning and the 100
DiT steps) and the VAE decode, which the interval does not touch. The medians are appended to
``docs/BENCHMARKS.md`` with the machine's details. Random weights say nothing about the audio's
quality: this measures cost only.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from pathlib import Path

from bench.sao_models import REPO, print_and_append, use_offline_tiny_hub

PROMPTS = (
    "128 BPM techno drum loop",
    "90 BPM hip hop drum loop",
    "120 BPM jazz drum loop with brushes",
    "140 BPM drum and bass loop",
)
# The DiT's sigma is sin(t * pi / 2) = s / sqrt(1 + s^2) for the k-diffusion sigma s; SAO 1.0's
# schedule is log-uniform in s from 500 to 0.3, so most of its steps have a DiT sigma close to 1.
INTERVALS: dict[str, tuple[float, float] | None] = {
    "off (every step)": None,
    "[0.9, 1]: high noise only": (0.9, 1.0),
    "[0, 0.98]: not at the highest noise": (0.0, 0.98),
}


def batch(interval: tuple[float, float] | None, steps: int, seconds: float) -> list:
    from stable_audio_tools_ext.request import GenerationRequest

    return [GenerationRequest(prompt=p, seed=100 + i, seconds_start=0, seconds_total=seconds, steps=steps, cfg_interval=interval)
            for i, p in enumerate(PROMPTS)]  # fmt: skip


def measure(loaded, requests: list) -> dict[str, float]:
    """DiT rows, sampling seconds and decode seconds of one generation of ``requests``."""
    import torch

    from stable_audio_tools_ext.sampling.engine import decode, generate_latents

    rows: list[int] = []
    transformer = loaded.model.model.model.transformer
    handle = transformer.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    sync = torch.cuda.synchronize if loaded.device.type == "cuda" else (lambda: None)
    try:
        sync()
        started = time.perf_counter()
        latents = generate_latents(loaded, requests)
        sync()
        sampled = time.perf_counter()
        audio = decode(loaded, latents)
        sync()
        decoded = time.perf_counter()
    finally:
        handle.remove()
    assert torch.isfinite(audio).all()
    return {"rows": sum(rows), "evaluations": len(rows), "sampling_s": sampled - started, "decode_s": decoded - sampled}


def run(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    from bench.sao_models import tiny

    loaded = tiny(args.device, "fp32")
    measure(loaded, batch(None, 2, args.seconds))  # warm-up: first-call allocations and kernel choices
    results: dict[str, list[dict[str, float]]] = {label: [] for label in INTERVALS}
    for repeat in range(args.repeats):
        order = list(INTERVALS) if repeat % 2 == 0 else list(INTERVALS)[::-1]
        for label in order:
            result = measure(loaded, batch(INTERVALS[label], args.steps, args.seconds))
            results[label].append(result)
            print(f"repeat {repeat + 1}, {label}: {result['rows']} rows, sampling {result['sampling_s']:.2f} s, "
                  f"decode {result['decode_s']:.2f} s", flush=True)  # fmt: skip
    return results


def table(results: dict[str, list[dict[str, float]]], steps: int) -> list[str]:
    items = len(PROMPTS)
    off = results["off (every step)"]
    off_rows = off[0]["rows"]
    off_sampling = statistics.median(r["sampling_s"] for r in off)
    off_total = statistics.median(r["sampling_s"] + r["decode_s"] for r in off)
    lines = [
        f"| cfg_interval | guided steps of {steps} | DiT rows per item | rows vs off | sampling s | sampling vs off | sampling + decode s | total vs off |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, runs in results.items():
        rows = runs[0]["rows"]
        assert all(r["rows"] == rows for r in runs)  # counted, so the same every repeat
        sampling = statistics.median(r["sampling_s"] for r in runs)
        total = statistics.median(r["sampling_s"] + r["decode_s"] for r in runs)
        guided = rows // items - runs[0]["evaluations"]  # one row per item and step, two where guided
        lines.append(f"| {label} | {guided} | {rows // items} | {rows / off_rows:.2f}x | {sampling:.2f} | "
                     f"{sampling / off_sampling:.2f}x | {total:.2f} | {total / off_total:.2f}x |")  # fmt: skip
    return lines


def section(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    from bench.throughput import machine

    runs = "; ".join(label + ": " + ", ".join(f"{r['sampling_s']:.2f}" for r in group) for label, group in results.items())
    return "\n".join([
        "\n## Guidance interval (bench/cfg_interval.py)\n",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. "
        f"`make bench-sweep` (= `.venv/bin/python -m bench.cfg_interval --repeats {args.repeats} --device {args.device}`), one process, "
        f"side by side: the tiny SAO 1.0 (random weights, full 47.55 s window, fp32) generates one batch of {len(PROMPTS)} "
        f"prompts of a sweep, {args.seconds:g} s each (duration-aware latents), {args.steps} steps of `dpmpp-3m-sde`, cfg 7, "
        f"SAO 1.0's schedule (sigma 500 to 0.3), once per `cfg_interval`, alternating, median of {args.repeats}. "
        "Rows through the DiT's transformer are counted with a hook (guidance doubles them where it runs); sampling is "
        "`generate_latents` (conditioning and the DiT steps), decode is the VAE, which the interval does not change.\n",
        f"Machine: {machine()}.\n",
        "The interval is on the DiT's sigma, sin(t * pi / 2) = s / sqrt(1 + s^2) for the solver's sigma s. SAO 1.0's "
        "schedule is log-uniform in s from 500 down to 0.3, so three quarters of its steps have a DiT sigma above 0.9. "
        "`[0.9, 1]` guides only those high-noise steps, where the coarse structure of the clip forms, and skips "
        "guidance for the detail at the end; `[0, 0.98]` is the other recipe from the diffusion literature (Kynkäänniemi et al. "
        "2024, guidance in a limited interval): no guidance at the highest noise levels, where it pushes every sample "
        "the same way and costs variety. Which one sounds better on the real model was not measured (random weights "
        "here): this is the cost side.\n",
        *table(results, args.steps),
        "",
        f"All runs (sampling seconds): {runs}.\n",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds_total of every item")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--markdown", type=Path, default=REPO / "docs" / "BENCHMARKS.md", help="appended to")
    args = parser.parse_args(argv)
    use_offline_tiny_hub()
    print_and_append(section(run(args), args), args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
