"""The reference path the throughput benchmark compares against, built from stable-audio-tools' public API.

It does what the reference multi-GPU script does: every item is generated over the model's whole
window with upstream ``generate_diffusion_cond`` (float32, which also switches TF32 off), items are
split over ranks by count with a stride, and each batch is clipped and written before the next one
starts. Run it like ``generate.py`` (plain or under torchrun); it writes WAVs under --output-dir.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import soundfile as sf
import torch
import yaml


def leaves(tree: dict, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict]]:
    """(path, leaf) pairs of a reference-format tree: a mapping of scalars is a leaf."""
    if all(not isinstance(value, dict) for value in tree.values()):
        return [(path, tree)]
    return [pair for key, value in tree.items() for pair in leaves(value, path + (str(key),))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cond-yaml-path", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--pretrained-name", default="stabilityai/stable-audio-open-1.0")
    parser.add_argument("--n-sample-per-cond", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--sample-steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from stable_audio_tools import get_pretrained_model
    from stable_audio_tools.inference.generation import generate_diffusion_cond

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu")
    model, config = get_pretrained_model(args.pretrained_name)
    model = model.to(device).eval()
    items = [
        (path, leaf, k)
        for path, leaf in leaves(yaml.safe_load(args.cond_yaml_path.read_text()))
        for k in range(1, args.n_sample_per_cond + 1)
    ][rank::world]
    for start in range(0, len(items), args.batch_size):
        batch = items[start : start + args.batch_size]
        conditioning = [{"prompt": leaf["prompt"], "seconds_start": leaf["seconds_start"],
                         "seconds_total": leaf["seconds_total"]} for _, leaf, _ in batch]  # fmt: skip
        with torch.no_grad():
            audio = generate_diffusion_cond(
                model, steps=args.sample_steps, cfg_scale=7.0, conditioning=conditioning,
                sample_size=config["sample_size"], batch_size=len(batch), seed=args.seed + rank * 100003 + start,
                device=device, sampler_type="dpmpp-3m-sde", sigma_min=0.3, sigma_max=500,
            )  # fmt: skip
        for (path, leaf, k), clip in zip(batch, audio):
            out = args.output_dir.joinpath(*path[:-1], f"{path[-1]}_item-{k}.wav")
            out.parent.mkdir(parents=True, exist_ok=True)
            frames = int(leaf["seconds_total"] * config["sample_rate"])
            sf.write(out, clip[:, :frames].clamp(-1, 1).T.float().cpu().numpy(), config["sample_rate"], subtype="PCM_16")


if __name__ == "__main__":
    main()
