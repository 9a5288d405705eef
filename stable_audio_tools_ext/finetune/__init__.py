"""Fine-tuning: captioned audio -> a stable-audio-tools training dataset -> a fine-tuned checkpoint.

Owns ``finetune.py``: ``prepare`` (reading caption sources - Clotho's CSV, other CSV and JSON Lines
files, sidecar ``.txt`` captions -, checking every row and its audio before anything is written, the
per-split folders of links, dataset configs and the standalone metadata module that feeds captions
and timing to stable-audio-tools' trainer) and ``train`` (upstream's training wrapper, dataloaders
and the Lightning it pins, with a resumable run folder, strict weight loading, atomic checkpoints,
fixes for 0.0.19's traps and demos; LoRA adapters on a frozen base, and ``export-lora``), ``encode``
(pre-encoded latents) and ``merge-lora`` (adapters baked into a full-weight checkpoint through ``model``'s
loader and merge); ``evaluate`` is
``evaluation``'s, and ``finetune_main`` lists both packages' subcommands. May import ``datasets`` (the
config, link and metadata-module pieces shared with ``generate.py --split``), ``output`` (atomic
writes), ``tree`` (reserved names, demo trees), ``model`` (configs, the loader), ``run`` (signals,
and the in-process engine that renders demos exactly as ``generate.py``); never ``studio`` or
``evaluation``.
"""
