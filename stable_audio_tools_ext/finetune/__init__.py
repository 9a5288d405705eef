"""Fine-tuning: captioned audio -> a stable-audio-tools training dataset (``finetune.py prepare``).

Owns reading caption sources (Clotho's CSV, other CSV and JSON Lines files, sidecar ``.txt``
captions), checking every row and its audio before anything is written, the per-split folders of
links, dataset configs and the standalone metadata module that feeds captions and timing to
stable-audio-tools' trainer, and the command line of ``finetune.py``. May import ``datasets`` (the
config, link and metadata-module pieces it shares with ``generate.py --split``), ``output``
(atomic writes), ``tree`` (the reserved dataset file names) and ``model`` (a model's rate, channels
and window, read from its config without weights or torch); never ``run`` or ``studio``.
"""
