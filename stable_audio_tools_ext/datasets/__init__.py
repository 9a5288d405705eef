"""Datasets and reports: a finished output folder as training data and as a page to look at.

Owns the stable-audio-tools dataset configs, the standalone metadata module and leaf-level splits
(``python -m stable_audio_tools_ext.datasets.training``; ``audio_dir`` holds the pieces that
``finetune`` shares), and ``report.html``
(``python -m stable_audio_tools_ext.datasets.report``). Reads what ``output`` wrote; may import
``output`` and ``tree``; never ``run`` or ``studio`` (``run`` calls it after a job).
"""
