"""Models for the numeric measurements: the tiny model, and SAO 1.0's real architecture with random weights.

The numeric questions (how far batch size, precision and TF32 move the audio) depend on the shapes
the GPU kernels see, so the tiny model alone is not enough: ``full_size`` builds the network of
Stable Audio Open 1.0 at its published widths (DiT 1536 wide, 24 layers, 24 heads; VAE 128
channels) from the tiny model's config, which is the real config shrunk. Its weights are random:
the real ones are gated and these machines are offline. T5 is the tiny one from the same offline
cache (d_model 768, like t5-base), so the DiT sees conditioning of the real shape.

Import this module before anything that imports huggingface_hub: ``use_offline_tiny_hub`` must set
the environment first.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FULL_SIZE_DIT = {"embed_dim": 1536, "depth": 24, "num_heads": 24, "project_cond_tokens": False}
FULL_SIZE_VAE_CHANNELS = 128
# stable-audio-tools zero-initialises residual output projections (training starts at the identity);
# a trained model's are not zero, and with zeros the kernels under test would only ever add zeros.
ZERO_WEIGHT_FILL_STD = 0.02


def use_offline_tiny_hub() -> Path:
    """Point this process at an offline hub cache holding the tiny SAO 1.0 (and its tiny T5).

    ``HF_HOME`` when it is already an offline tiny build (the device setup makes one), else the
    cache ``make demo`` uses. Must run before huggingface_hub is imported: it reads these at import.
    """
    from stable_audio_tools_ext.model.tiny import build_tiny_hub_cache, offline_hub_env

    given = os.environ.get("HF_HOME") if os.environ.get("HF_HUB_OFFLINE") == "1" else None
    hf_home = build_tiny_hub_cache(Path(given) if given else REPO / ".cache" / "hf-demo")
    os.environ.update(offline_hub_env(hf_home))
    return hf_home


def print_and_append(text: str, markdown: Path) -> None:
    """Show a benchmark's section and append it to its page (``docs/BENCHMARKS.md``)."""
    print(text)
    with open(markdown, "a", encoding="utf-8") as handle:
        handle.write(text)
    print(f"appended to {markdown}")


def tiny(device: str, precision: str):
    """The tiny model through the project's own loading path."""
    import torch

    from stable_audio_tools_ext.model.loading import load_model
    from stable_audio_tools_ext.model.spec import ModelRequest, read_model_spec
    from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID

    return load_model(read_model_spec(ModelRequest(pretrained_name=DEMO_REPO_ID)), torch.device(device), precision)


def full_size_config(tiny_config: dict) -> dict:
    """The tiny model's config at Stable Audio Open 1.0's published widths (its ``model_config.json``)."""
    config = copy.deepcopy(tiny_config)
    model = config["model"]
    for part in ("encoder", "decoder"):
        model["pretransform"]["config"][part]["config"]["channels"] = FULL_SIZE_VAE_CHANNELS
    model["diffusion"]["config"].update(FULL_SIZE_DIT)
    return config


def full_size(device: str, precision: str, seed: int = 0):
    """SAO 1.0's architecture with random weights, as a ``LoadedModel`` the engine can run."""
    import torch
    from stable_audio_tools.models.factory import create_model_from_config

    from stable_audio_tools_ext.model.loading import PRECISIONS, LoadedModel, configure_backends
    from stable_audio_tools_ext.model.spec import ModelRequest, ModelSpec, read_model_spec
    from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID

    config = full_size_config(read_model_spec(ModelRequest(pretrained_name=DEMO_REPO_ID)).config)
    torch.manual_seed(seed)
    model = create_model_from_config(config)
    with torch.no_grad():
        for parameter in model.model.parameters():
            if parameter.ndim > 1 and not parameter.any():
                parameter.normal_(std=ZERO_WEIGHT_FILL_STD)
    configure_backends(torch.device(device))
    model = model.to(device).eval().requires_grad_(False)
    model.model.to(PRECISIONS[precision])
    spec = ModelSpec(config, "SAO 1.0 architecture, random weights", f"random-seed-{seed}", ModelRequest())
    return LoadedModel(spec=spec, model=model, device=torch.device(device), precision=precision, weights_read="random init")


def median_seconds(run: Callable[[], object], device: str, repeats: int = 3) -> float:
    """Median wall time of ``run`` after one warm-up call, synchronising the GPU around each call."""
    import torch

    def once() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - started

    once()
    return statistics.median(once() for _ in range(repeats))


def describe(device: str) -> str:
    """The machine as the benchmark tables name it."""
    import platform

    import torch

    gpu = f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}" if device.startswith("cuda") else "CPU"
    return f"{gpu}; Python {platform.python_version()}, torch {torch.__version__}"
