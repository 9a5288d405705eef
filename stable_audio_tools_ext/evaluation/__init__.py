"""Evaluation: several models generate one condition tree, compared side by side in ``comparison.html``;
any folder of audio scored on the field's metrics.

Owns ``finetune.py evaluate`` (``cli``: its flags; ``evaluate``: each model through ``generate.py``'s
own entry point in one process group, FD_clap to ``--reference``; ``comparison``: the page) and
``finetune.py score`` (``score``: CLAP score per file, FD_clap to a reference or its saved
statistics). On the top floor beside ``finetune`` and ``studio``: it drives ``generate.py``'s job,
so it sits above ``run``, and ``scoring`` stays below ``run``. May import ``finetune`` (run folders,
the audio file rule, the caption readers), ``run`` (generate.py's entry point, the process group), ``scoring`` (CLAP
embeddings, the Fréchet distance), ``datasets`` (the report's style and thumbnails), ``model``
(sampler names, adapter files) and ``output``; never ``studio``. Nothing imports it but
``finetune_main``, ``finetune.py``'s dispatcher.
"""
