#!/usr/bin/env python
"""Fine-tune Stable Audio models on captioned audio: prepare the dataset, train, generate with the checkpoints.

    python finetune.py prepare --audio-dir clotho/development \
        --captions clotho/clotho_captions_development.csv --output-dir data
    python finetune.py train --dataset-config data/dataset_config.train.json \
        --val-dataset-config data/dataset_config.val.json \
        --pretrained-name stabilityai/stable-audio-open-1.0 --save-dir runs --name clotho --max-steps 20000
    python generate.py --ckpt-path runs/clotho/checkpoints/epoch=3-step=20000.ckpt --cond-yaml-path tree.yaml
    python finetune.py merge-lora --lora style.safetensors --lora-strength 0.8 --output merged/model.safetensors

All logic lives in ``stable_audio_tools_ext.finetune`` (``evaluate``: ``stable_audio_tools_ext.evaluation``;
the dispatcher: ``stable_audio_tools_ext.finetune_main``); ``python finetune.py COMMAND -h`` lists every
flag, docs/finetuning.md describes them.
"""

import sys

from stable_audio_tools_ext.finetune_main import main

if __name__ == "__main__":
    sys.exit(main())
