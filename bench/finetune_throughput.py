"""Fine-tuning steps per second: training on an audio folder vs on its pre-encoded latents, side by side.

    make bench-finetune          # = .venv/bin/python -m bench.finetune_throughput (CPU, tiny model)

One invocation, one process, one machine: the same captioned audio (synthetic, Clotho-like: 15-30 s
clips, mostly 44.1 kHz mono, some 48 kHz stereo) is prepared with ``finetune.py prepare``, encoded
once with ``finetune.py encode`` (timed: the one-time cost), and then the same model (the tiny SAO
1.0 of the offline cache, at SAO 1.0's full 47.55 s window), batch and dataloader workers train for
the same number of steps on each dataset config, through the pieces ``finetune.py train`` uses
(``loaders.build_loader``, ``model.loading.build_model``, upstream's training wrapper with its
``pre_encoded`` switch, Lightning's ``Trainer``). A step's time runs from the end of one step to the
end of the next, so it includes waiting for the dataloader (decoding and resampling audio, or
reading latents); the first steps are warm-up and not counted. Break-even is the encode cost divided
by the time a step saves.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bench.sao_models import use_offline_tiny_hub

WARMUP_STEPS = 2
# (seconds, sample rate, channels): Clotho's clips are 15-30 s; a few other rates and stereo files
CLIPS = [(15 + (7 * index) % 16, 48000 if index % 4 == 3 else 44100, 2 if index % 4 == 3 else 1) for index in range(16)]


def write_dataset(root: Path) -> Path:
    """Synthetic captioned audio (noise with a decaying envelope) and a Clotho-format CSV; returns the CSV."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    rows = ["file_name,caption_1,caption_2"]
    (root / "audio").mkdir(parents=True)
    for index, (seconds, rate, channels) in enumerate(CLIPS):
        frames = seconds * rate
        envelope = np.exp(-np.linspace(0, 3, frames))[:, None]
        sf.write(root / "audio" / f"clip{index:02d}.wav", (0.3 * envelope * rng.standard_normal((frames, channels))).astype("float32"), rate)
        rows.append(f'clip{index:02d}.wav,"a sound, number {index}",another caption {index}')
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    return root / "captions.csv"


def step_times(dataset_config: Path, spec, steps: int, batch_size: int, workers: int) -> list[float]:
    """Seconds of each training step after the warm-up, on this dataset config (audio or latents)."""
    import pytorch_lightning as pl
    import torch
    from stable_audio_tools.training.factory import create_training_wrapper_from_config

    from stable_audio_tools_ext.finetune.loaders import build_loader
    from stable_audio_tools_ext.finetune.upstream import use_torch_compatible_inverse_lr
    from stable_audio_tools_ext.model.loading import build_model

    config = spec.config
    loader = build_loader(dataset_config, "--dataset-config", config, batch_size, workers, 1, shuffle=True)
    pre_encoded = loader.config["dataset_type"] == "pre_encoded"
    use_torch_compatible_inverse_lr()
    torch.manual_seed(0)
    model, _ = build_model(spec)
    wrapper = create_training_wrapper_from_config({**config, "training": {**config["training"], "pre_encoded": pre_encoded}}, model)
    ends: list[float] = []

    class StepEnds(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(accelerator="cpu", devices=1, precision="32", max_steps=steps + WARMUP_STEPS, max_epochs=-1,
                             logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, default_root_dir=root, callbacks=[StepEnds()])  # fmt: skip
        trainer.fit(wrapper, loader.dataloader)
    return [later - earlier for earlier, later in zip(ends[WARMUP_STEPS - 1 :], ends[WARMUP_STEPS:])]


def run(args: argparse.Namespace) -> dict:
    import torch

    from stable_audio_tools_ext import finetune_main
    from stable_audio_tools_ext.finetune.encode import CONFIG_NAME, EncodeRequest, encode
    from stable_audio_tools_ext.finetune.weights import choose_model
    from stable_audio_tools_ext.model.spec import ModelRequest
    from stable_audio_tools_ext.model.tiny import DEMO_REPO_ID

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        captions = write_dataset(root)
        if finetune_main.main(["prepare", "--audio-dir", str(root / "audio"), "--captions", str(captions), "--output-dir",
                     str(root / "data"), "--split", "train=1.0"]):  # fmt: skip
            raise SystemExit("finetune.py prepare failed")
        audio_config = root / "data" / "dataset_config.train.json"
        flags = ModelRequest(pretrained_name=DEMO_REPO_ID)
        spec = choose_model(flags).spec
        started = time.perf_counter()
        if encode(EncodeRequest(audio_config, root / "latents", flags, args.workers, 42, "cpu")):
            raise SystemExit("finetune.py encode failed")
        encode_s = time.perf_counter() - started
        audio = step_times(audio_config, spec, args.steps, args.batch_size, args.workers)
        latents = step_times(root / "latents" / CONFIG_NAME, spec, args.steps, args.batch_size, args.workers)
    audio_step, latent_step = statistics.median(audio), statistics.median(latents)
    return {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads()},  # fmt: skip
        "setup": {"files": len(CLIPS), "audio_seconds": sum(s for s, _, _ in CLIPS), "window_samples": spec.config["sample_size"],
                  "batch_size": args.batch_size, "workers": args.workers, "steps_timed": args.steps, "warmup_steps": WARMUP_STEPS},  # fmt: skip
        "audio_step_s": audio, "latent_step_s": latents,
        "median_audio_step_s": audio_step, "median_latent_step_s": latent_step,
        "speedup": audio_step / latent_step,
        "encode_s": encode_s, "encode_s_per_file": encode_s / len(CLIPS),
        "break_even_steps": encode_s / (audio_step - latent_step) if audio_step > latent_step else None,
    }  # fmt: skip


def table(result: dict) -> str:
    rows = [
        "| training data | median step s | steps per s |",
        "|---|---|---|",
        f"| audio folder (decode, resample, VAE-encode every step) | {result['median_audio_step_s']:.3f} | {1 / result['median_audio_step_s']:.2f} |",
        f"| pre-encoded latents | {result['median_latent_step_s']:.3f} | {1 / result['median_latent_step_s']:.2f} |",
    ]
    return "\n".join(rows) + (
        f"\n\nspeed-up {result['speedup']:.1f}x; encode once: {result['encode_s']:.1f} s "
        f"({result['encode_s_per_file']:.2f} s per file); break-even after {result['break_even_steps']:.1f} steps"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per dataset (after %d warm-up steps)" % WARMUP_STEPS)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="dataloader workers (and encode's loading workers)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    use_offline_tiny_hub()
    result = run(args)
    print(json.dumps(result, indent=2))
    print(table(result))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
