"""Scores of generated audio: CLAP prompt adherence, and the Fréchet distance between embedding sets.

Owns the CLAP scorer (``clap``: text and audio embeddings, their cosine similarity), OpenL3 frame
embeddings for FD_openl3 (``openl3``), PaSST class probabilities and KL_passt (``passt``), tiny
random stand-ins of both (``standins``), the Fréchet distance on embedding sets (``frechet``; FD_clap
on CLAP embeddings) and a reference set's statistics in a file (``stats_file``). Used by ``generate.py --score clap`` (``run``),
``report.html`` and the dataset config writer (``datasets``), and the checkpoint comparison. May
import ``model`` (the id of the tiny CLAP it fakes offline), ``output``, ``tree``, ``quiet`` and
``request``; never ``sampling``, ``datasets``, ``run`` or ``studio``.
"""
