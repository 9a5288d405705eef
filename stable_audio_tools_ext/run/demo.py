"""``make demo``: the example sweep end to end under torchrun, offline, on the tiny random model.

It runs the same ``generate.py`` a user runs, with the hub pointed at the fake cache that
``stable_audio_tools_ext.model.tiny`` builds, and one rank per GPU (or two CPU ranks where there is none).
The model has random weights, so the files are noise: the point is the whole pipeline, not the sound.
The cache also gets the tiny OpenL3 and PaSST stand-ins (``scoring.standins``, once; a few seconds the
first time, nothing after), so the printed ``finetune.py score`` command shows every metric offline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

from ..model.tiny import offline_hub_env
from ..quiet import hide_library_warnings
from ..scoring.standins import write_standin_cache

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_YAML = REPO_ROOT / "example" / "generation" / "generate_conditions.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf-home", type=Path, required=True, help="fake hub cache built by stable_audio_tools_ext.model.tiny")
    parser.add_argument("--output-dir", type=Path, default=Path("demo_output"))
    parser.add_argument("--steps", type=int, default=100, help="denoising steps (the CLI default)")
    args = parser.parse_args(argv)
    nproc = torch.cuda.device_count() or 2
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        str(REPO_ROOT / "generate.py"),
        "--cond-yaml-path", str(EXAMPLE_YAML),
        "--output-dir", str(args.output_dir),
        "--n-sample-per-cond", "2",
        "--batch-size", "4",
        "--sample-steps", str(args.steps),
        "--clip-length",
    ]  # fmt: skip
    print("$ " + " ".join(command), flush=True)
    # Threads per rank set here, so torchrun does not set 1 with its "Setting OMP_NUM_THREADS" banner.
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc)), **offline_hub_env(args.hf_home.resolve())}
    hide_library_warnings()  # the stand-ins' libraries warn at import (resampy, torchopenl3)
    write_standin_cache(args.hf_home)
    code = subprocess.run(command, env=env).returncode
    if code == 0:
        hub = offline_hub_env(args.hf_home.resolve(), {})
        print("every metric of the demo's files against themselves, offline (tiny random models: the numbers mean "
              "nothing):\n  " + " ".join(f"{key}={value}" for key, value in hub.items())
              + f" python finetune.py score --audio-dir {args.output_dir} --reference {args.output_dir} --metrics "
              "fd_openl3,kl_passt,fd_clap", flush=True)  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
