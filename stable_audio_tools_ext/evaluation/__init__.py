"""Evaluation: several models generate one condition tree, compared side by side in ``comparison.html``.

Owns ``finetune.py evaluate`` (``cli``: its flags; ``evaluate``: each model through ``generate.py``'s
own entry point in one process group, the Fréchet distance to ``--reference``; ``comparison``: the
page). On the top floor beside ``finetune`` and ``studio``: it drives ``generate.py``'s job, so it
sits above ``run``, and ``scoring`` stays below ``run``. May import ``finetune`` (run folders, the
audio file rule), ``run`` (generate.py's entry point, the process group), ``scoring`` (CLAP
embeddings, the Fréchet distance), ``datasets`` (the report's style and thumbnails), ``model``
(sampler names, adapter files) and ``output``; never ``studio``. Nothing imports it but
``finetune_main``, ``finetune.py``'s dispatcher.
"""
