"""What reduced precision does to generation: timestep quantisation, the DiT's precision, TF32.

    PYTHONPATH=. python bench/precision.py --device cuda [--steps 100]

Three measurements, printed as tables:

1. Timesteps. The DiT casts its timestep t = atan(sigma) * 2 / pi to its own dtype before the
   Fourier timestep features; this counts the distinct values the default schedule's 100 steps keep
   (all of them, and those above t = 0.9), and the steps whose VDenoiser scalings would overflow
   if the sigmas themselves were float16 (what the engine did before its state became float32).
2. Timestep features in float32: the tiny model's audio in bf16, in bf16 with the Fourier features
   computed from the float32 t (a measurement-only hook), and in fp32; largest differences.
3. TF32 and reduced-precision reductions, on SAO 1.0's real architecture with random weights
   (``bench/sao_models.py``; on the GPU only): the VAE decode with cuDNN TF32 off/on against a
   float64 decode, one DiT evaluation in fp32 with matmul TF32 off/on (and bf16/fp16 with their
   reduced-precision reductions off/on) against float64, the time of each, and the audio of a whole
   fp32 generation with TF32 off vs on next to bf16.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math

from bench.batch_invariance import requests, snr_db
from bench.sao_models import describe, full_size, median_seconds, tiny, use_offline_tiny_hub

SIGMA_MIN, SIGMA_MAX = 0.3, 500.0  # SAO 1.0's defaults (model.families)


def timestep_table(steps: int) -> None:
    import k_diffusion as K
    import torch

    sigmas = K.sampling.get_sigmas_polyexponential(steps, SIGMA_MIN, SIGMA_MAX, rho=1.0)[:-1]  # the evaluated ones
    t = sigmas.atan() / math.pi * 2
    overflow = int(torch.isinf(sigmas.half() ** 2).sum())
    print(f"\n1. Timesteps of the default schedule ({steps} steps, sigma {SIGMA_MAX:g} -> {SIGMA_MIN:g}, polyexponential rho 1)")
    print(f"   {int((t > 0.9).sum())} of the {steps} evaluations have t > 0.9; with float16 sigmas, {overflow} had sigma**2 = inf (scalings 0)")
    print("| t dtype | distinct t | distinct among t > 0.9 |\n|---|---|---|")
    for name, dtype in (("float32", torch.float32), ("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        quantised = t.to(dtype)
        print(f"| {name} | {len(torch.unique(quantised))} | {len(torch.unique(quantised[t > 0.9]))} |")


@contextlib.contextmanager
def float32_timestep_features(loaded, features32):
    """Measurement only: the DiT's Fourier timestep features from the float32 t, by a float32 copy.

    The DiT casts t to its dtype first thing in its forward; a pre-hook keeps the float32 t, and a
    hook on the features module replaces its output with the float32 copy's (cast to the DiT dtype).
    """
    dit = loaded.model.model.model
    kept = {}

    def keep_t(module, args):
        kept["t"] = args[1].float()

    def from_float32(module, args, output):
        t = kept["t"].repeat(args[0].shape[0] // kept["t"].shape[0])  # CFG doubles the batch
        return features32(t[:, None]).to(output.dtype)

    handles = [dit.register_forward_pre_hook(keep_t), dit.timestep_features.register_forward_hook(from_float32)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def timestep_features_table(device: str, steps: int) -> None:
    import torch

    from stable_audio_tools_ext.sampling.engine import generate_audio

    loaded = tiny(device, "fp32")
    features32 = copy.deepcopy(loaded.model.model.model.timestep_features)
    print(f"\n2. Timestep features in float32 (tiny model, 4 items of 10 s, {steps} steps, cfg 7); max abs audio difference")
    print("| sampler | bf16 vs fp32 | bf16 + fp32 t vs fp32 | bf16 + fp32 t vs bf16 | audio peak |\n|---|---|---|---|---|")
    for sampler in ("dpmpp-3m-sde", "dpmpp-2m"):
        batch = [dataclasses.replace(r, sampler_type=sampler) for r in requests(steps, 10.0)[:4]]
        loaded.model.model.to(torch.float32)
        fp32 = generate_audio(loaded, batch)
        loaded.model.model.to(torch.bfloat16)
        bf16 = generate_audio(loaded, batch)
        with float32_timestep_features(loaded, features32):
            bf16_t32 = generate_audio(loaded, batch)
        diff = lambda a, b: f"{(a - b).abs().max().item():.3g}"  # noqa: E731
        print(f"| {sampler} | {diff(bf16, fp32)} | {diff(bf16_t32, fp32)} | {diff(bf16_t32, bf16)} | {fp32.abs().max().item():.3g} |")


@contextlib.contextmanager
def backend_flags(**flags: bool):
    """Set ``torch.backends`` flags (``cudnn_tf32``, ``matmul_tf32``, ``fp16_reduction``, ``bf16_reduction``) for a block."""
    import torch

    targets = {
        "cudnn_tf32": (torch.backends.cudnn, "allow_tf32"),
        "matmul_tf32": (torch.backends.cuda.matmul, "allow_tf32"),
        "fp16_reduction": (torch.backends.cuda.matmul, "allow_fp16_reduced_precision_reduction"),
        "bf16_reduction": (torch.backends.cuda.matmul, "allow_bf16_reduced_precision_reduction"),
    }
    saved = {name: getattr(*targets[name]) for name in flags}
    try:
        for name, value in flags.items():
            setattr(*targets[name], value)
        yield
    finally:
        for name, value in saved.items():
            setattr(*targets[name], value)


def vae_rows(loaded, device: str) -> None:
    import torch

    vae = loaded.model.pretransform
    latents = torch.randn(4, 64, 224, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.inference_mode():
        vae.to(torch.float64)
        reference = vae.decode(latents[:1].double())
        vae.to(torch.float32)
        for tf32 in (False, True):
            with backend_flags(cudnn_tf32=tf32, matmul_tf32=tf32):
                audio = vae.decode(latents[:1])
                seconds = median_seconds(lambda: vae.decode(latents), device)
            print(f"| VAE decode fp32, cuDNN TF32 {'on' if tf32 else 'off'} | {(audio - reference).abs().max().item():.3g} | "
                  f"{snr_db(reference, audio):.1f} | {seconds * 1000:.1f} ms (4 x 10 s) | {reference.abs().max().item():.3g} |")  # fmt: skip


def dit_rows(loaded, device: str) -> None:
    import torch

    from stable_audio_tools_ext.sampling.engine import generate_latents

    dit = loaded.model.model
    captured = {}

    def capture(module, args, kwargs):
        captured.setdefault("call", (args, kwargs))

    handle = dit.register_forward_pre_hook(capture, with_kwargs=True)
    generate_latents(loaded, requests(2, 10.0))  # 8 items, CFG: 16 rows; the first evaluation is kept
    handle.remove()
    args, kwargs = captured["call"]
    with torch.inference_mode():
        dit.to(torch.float64)
        reference = dit(*args, **kwargs).double()
        cases = [("fp32", torch.float32, {"matmul_tf32": False}), ("fp32", torch.float32, {"matmul_tf32": True}),
                 ("bf16", torch.bfloat16, {"bf16_reduction": False}), ("bf16", torch.bfloat16, {"bf16_reduction": True}),
                 ("fp16", torch.float16, {"fp16_reduction": False}), ("fp16", torch.float16, {"fp16_reduction": True})]  # fmt: skip
        for precision, dtype, flags in cases:
            dit.to(dtype)
            with backend_flags(**flags):
                output = dit(*args, **kwargs).double()
                seconds = median_seconds(lambda: dit(*args, **kwargs), device)
            (flag, value), = flags.items()
            print(f"| DiT {precision}, {flag} {'on' if value else 'off'} | {(output - reference).abs().max().item():.3g} | "
                  f"{snr_db(reference, output):.1f} | {seconds * 1000:.1f} ms (8 x 10 s, CFG) | {reference.abs().max().item():.3g} |")  # fmt: skip
    dit.to(torch.float32)


def generation_rows(loaded, steps: int) -> None:
    import torch

    from stable_audio_tools_ext.sampling.engine import generate_audio

    batch = [dataclasses.replace(r, sampler_type="dpmpp-2m") for r in requests(steps, 10.0)[:2]]
    with backend_flags(matmul_tf32=False, cudnn_tf32=False):
        exact = generate_audio(loaded, batch)
    with backend_flags(matmul_tf32=True, cudnn_tf32=True):
        tf32 = generate_audio(loaded, batch)
    loaded.model.model.to(torch.bfloat16)
    with backend_flags(matmul_tf32=False, cudnn_tf32=False):
        bf16 = generate_audio(loaded, batch)
    loaded.model.model.to(torch.float32)
    print(f"\nWhole generation (2 items of 10 s, dpmpp-2m, {steps} steps, cfg 7), max abs audio difference from fp32 without TF32 "
          f"(peak {exact.abs().max().item():.3g}): fp32 with TF32 {(tf32 - exact).abs().max().item():.3g} "
          f"(SNR {snr_db(exact, tf32):.1f} dB); bf16 {(bf16 - exact).abs().max().item():.3g} (SNR {snr_db(exact, bf16):.1f} dB)")


def tf32_table(device: str, steps: int) -> None:
    loaded = full_size(device, "fp32")
    print("\n3. TF32 and reduced-precision reductions, SAO 1.0 architecture with random weights, against float64")
    print("| what | max abs diff | SNR dB | time (median of 3) | reference peak |\n|---|---|---|---|---|")
    vae_rows(loaded, device)
    dit_rows(loaded, device)
    generation_rows(loaded, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--skip-tf32", action="store_true", help="skip the full-size TF32 measurements (slow on a CPU)")
    args = parser.parse_args()
    use_offline_tiny_hub()
    print(f"Precision measurements on {describe(args.device)}")
    timestep_table(args.steps)
    timestep_features_table(args.device, args.steps)
    if not args.skip_tf32:
        tf32_table(args.device, args.steps)


if __name__ == "__main__":
    main()
