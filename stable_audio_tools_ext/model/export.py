"""Turn a training checkpoint into a shareable model folder: ``model.safetensors`` + ``model_config.json``.

    python -m stable_audio_tools_ext.model.export checkpoints/run/epoch=4-step=1000.ckpt --output-dir my-model

The folder loads with ``--model-config my-model/model_config.json --ckpt-path my-model/model.safetensors``
and is laid out like a hub repo, so it can be pushed as one (``hf upload``). The weights go through
the same loading path as generation - built from the config and loaded strictly - so an export that
would not load is never written.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from ..output.atomic import atomic_open, atomic_write_text
from ..quiet import hide_library_warnings
from .checkpoints import CheckpointError
from .loading import load_model
from .spec import ModelLoadError, ModelRequest, read_model_spec

EXIT_USAGE = 2


def _embedded_config(ckpt_path: Path, trust_checkpoint: bool) -> dict:
    """The ``model_config`` that stable-audio-tools' ``train.py`` stores in its checkpoints."""
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=not trust_checkpoint, mmap=True)
    except Exception as exc:  # any unreadable file: say which and why
        raise CheckpointError(f"{ckpt_path}: cannot read it to find its model config ({exc})") from None
    config = checkpoint.get("model_config") if isinstance(checkpoint, dict) else None
    if not isinstance(config, dict):
        raise CheckpointError(f"{ckpt_path} stores no model_config; pass --model-config")
    return config


def export_model(
    ckpt_path: Path,
    output_dir: Path,
    model_config: Path | None = None,
    weights: str | None = None,
    trust_checkpoint: bool = False,
) -> Path:
    """Write ``output_dir/model.safetensors`` and ``output_dir/model_config.json``; returns ``output_dir``."""
    with tempfile.TemporaryDirectory() as scratch:
        if model_config is None:
            model_config = Path(scratch) / "model_config.json"
            model_config.write_text(json.dumps(_embedded_config(ckpt_path, trust_checkpoint), indent=2))
        request = ModelRequest(
            model_config=model_config, ckpt_path=ckpt_path, weights=weights, trust_checkpoint=trust_checkpoint
        )
        loaded = load_model(read_model_spec(request), torch.device("cpu"), "fp32")
        from safetensors.torch import save

        state = {key: tensor.contiguous() for key, tensor in loaded.model.state_dict().items()}
        output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(output_dir / "model.safetensors") as handle:
            handle.write(save(state))
        atomic_write_text(output_dir / "model_config.json", json.dumps(loaded.spec.config, indent=2) + "\n")
    return output_dir


def main(argv: list[str] | None = None) -> int:
    hide_library_warnings()  # before the model is built: stable-audio-tools warns as it is imported and built
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt_path", type=Path, help="training (Lightning) checkpoint or any loadable checkpoint")
    parser.add_argument("--output-dir", type=Path, required=True, help="folder to write the model into")
    parser.add_argument("--model-config", type=Path, help="model_config.json (default: the one stored in the checkpoint)")
    parser.add_argument("--weights", choices=("ema", "online"), help="training checkpoint weights (default: EMA when present)")
    parser.add_argument("--trust-checkpoint", action="store_true", help="allow checkpoints that need full unpickling")
    args = parser.parse_args(argv)
    if args.output_dir.exists() and not args.output_dir.is_dir():
        print(f"error: --output-dir {args.output_dir} exists and is not a directory", file=sys.stderr)
        return EXIT_USAGE
    try:
        export_model(args.ckpt_path, args.output_dir, args.model_config, args.weights, args.trust_checkpoint)
    except (ModelLoadError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"exported {args.ckpt_path} -> {args.output_dir}/model.safetensors + model_config.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
