#!/usr/bin/env python
"""Fine-tune Stable Audio models on captioned audio; step 1 prepares the dataset.

    python finetune.py prepare --audio-dir clotho/development \
        --captions clotho/clotho_captions_development.csv --output-dir data

All logic lives in ``stable_audio_tools_ext.finetune.cli``; ``python finetune.py prepare -h`` lists
every flag, docs/finetuning.md describes them. ``train`` is coming.
"""

import sys

from stable_audio_tools_ext.finetune.cli import main

if __name__ == "__main__":
    sys.exit(main())
