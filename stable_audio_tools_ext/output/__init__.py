"""Output: audio -> files on disk that are always complete, measured and accounted for.

Owns atomic writes, audio encoding, the background writer thread, the manifest (per-rank parts
folded into ``manifest.jsonl``), resume decisions, per-file statistics and level normalisation. May
import ``tree`` (work items) and the standard library, numpy, soundfile; never ``model``,
``sampling``, ``run`` or ``studio``.
"""
