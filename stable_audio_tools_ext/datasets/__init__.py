"""Datasets and reports: a finished output folder as training data and as a page to look at.

Owns the stable-audio-tools dataset configs, the standalone metadata module and leaf-level splits
(``python -m stable_audio_tools_ext.datasets.training``; ``audio_dir`` holds the pieces that
``finetune`` shares), and ``report.html``
(``python -m stable_audio_tools_ext.datasets.report``), with a generated folder's distances to a
reference set (``reference``, which ``evaluation``'s comparison page shares). Reads what ``output``
wrote; may import ``output``, ``tree`` and ``scoring`` (the metrics); never ``run``, ``evaluation`` or
``studio`` (``run`` calls it after a job).
"""
