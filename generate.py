#!/usr/bin/env python
"""Batch generation from a YAML tree of prompts; run with torchrun to shard over GPUs and nodes.

    torchrun --standalone --nproc_per_node gpu generate.py \
        --cond-yaml-path example/generation/generate_conditions.yaml --output-dir out --clip-length

All logic lives in ``stable_audio_tools_ext.run.cli``; ``python generate.py -h`` lists every flag.
"""

import sys

from stable_audio_tools_ext.run.cli import main

if __name__ == "__main__":
    sys.exit(main())
