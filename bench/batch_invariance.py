"""Does an item's audio depend on its batch? Batch 1 vs batch 8 of the same 8 items, on the device given.

    PYTHONPATH=. python bench/batch_invariance.py --device cuda [--models tiny full] [--steps 100]

Every item is seeded on its own, so on the CPU batch size changes the audio only by float round-off.
On a GPU, cuBLAS/cuDNN/attention kernels are chosen per shape, so the same item can be computed with
different summation orders at batch 1 and batch 8; a 100-step solver then carries that difference
to the end (and a stochastic one might carry it further). This generates 8 items (same prompts,
seeds, 10 s) once as one batch and once one by one, for each model (``tiny``: the demo model;
``full``: SAO 1.0's real architecture with random weights, see ``bench/sao_models.py``), precision
and sampler, and prints the largest differences of the latents and of the decoded waveforms, next to
a rerun of the same batch (run-to-run determinism) and the audio's peak level. Backend flags are the
project's own (``model.loading.configure_backends``). Figures: docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from bench.sao_models import describe, full_size, tiny, use_offline_tiny_hub

PROMPTS = (
    "Heavy rain falling on a tin roof",
    "A punchy drum loop at 120 BPM with a tight snare",
    "Birds chirping in a forest at dawn",
    "Deep techno kick drum and rolling bassline",
    "An acoustic guitar strumming folk chords",
    "City traffic with car horns and sirens",
    "Soft ambient pad with slow evolving texture",
    "A crackling campfire at night",
)
SAMPLERS = ("dpmpp-3m-sde", "dpmpp-2m")
PRECISIONS = ("fp32", "bf16")  # fp32 first: the bf16 model is the fp32 one cast down


def requests(steps: int, seconds: float):
    from stable_audio_tools_ext.request import GenerationRequest

    return [GenerationRequest(prompt=p, seed=1000 + i, seconds_start=0, seconds_total=seconds, steps=steps) for i, p in enumerate(PROMPTS)]


def snr_db(reference, other) -> float:
    """Signal-to-difference ratio in dB (inf when equal)."""
    noise = (reference - other).double().pow(2).sum().item()
    if noise == 0:
        return math.inf
    return 10 * math.log10(reference.double().pow(2).sum().item() / noise) if math.isfinite(noise) else math.nan


def measure(loaded, batch, label: str) -> dict[str, object]:
    """Latents and audio of ``batch`` generated whole, again whole, and one request at a time."""
    import torch

    from stable_audio_tools_ext.sampling.engine import decode, generate_latents

    whole = generate_latents(loaded, batch)
    again = generate_latents(loaded, batch)
    alone = torch.cat([generate_latents(loaded, [r]) for r in batch])
    audio_whole, audio_again = decode(loaded, whole), decode(loaded, again)
    audio_alone = torch.cat([decode(loaded, latent[None]) for latent in alone])
    return {
        "case": label,
        "latents b8 vs b1": (whole - alone).abs().max().item(),
        "audio b8 vs b1": (audio_whole - audio_alone).abs().max().item(),
        "audio SNR dB": snr_db(audio_alone, audio_whole),
        "audio b8 rerun": (audio_whole - audio_again).abs().max().item(),
        "audio peak": audio_alone.abs().max().item(),
        "finite": bool(torch.isfinite(audio_whole).all() and torch.isfinite(audio_alone).all()),
    }


def run(model_name: str, device: str, steps: int, seconds: float) -> list[dict[str, object]]:
    import torch

    from stable_audio_tools_ext.model.loading import PRECISIONS as DTYPES

    loaded = (tiny if model_name == "tiny" else full_size)(device, "fp32")
    rows = []
    for precision in PRECISIONS:
        loaded.model.model.to(DTYPES[precision])
        loaded.precision = precision
        for sampler in SAMPLERS:
            batch = [dataclasses.replace(r, sampler_type=sampler) for r in requests(steps, seconds)]
            rows.append(measure(loaded, batch, f"{model_name} {precision} {sampler}"))
            print(format_row(rows[-1]), flush=True)
    del loaded
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


COLUMNS = ("case", "latents b8 vs b1", "audio b8 vs b1", "audio SNR dB", "audio b8 rerun", "audio peak", "finite")


def format_row(row: dict[str, object]) -> str:
    cells = [f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", nargs="+", choices=("tiny", "full"), default=["tiny", "full"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="item length (10 s: 224 latent frames)")
    args = parser.parse_args()
    use_offline_tiny_hub()
    print(f"Batch 1 vs batch 8, {len(PROMPTS)} items of {args.seconds:g} s, {args.steps} steps, cfg 7, on {describe(args.device)}")
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS), flush=True)
    for model_name in args.models:
        run(model_name, args.device, args.steps, args.seconds)


if __name__ == "__main__":
    main()
