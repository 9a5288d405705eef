"""The run: ``generate.py`` from flags to exit code, one process per torchrun rank.

Owns argument parsing and input checks, the torchrun process group and sharding, the per-rank job
loop (batches -> engine -> checked files + manifest records), graceful stop on signals, job-wide
progress, the terminal views, and ``make demo``'s launcher. It is the top of the batch pipeline and
may import every stage below it (``tree``, ``model``, ``sampling``, ``output``, ``datasets``); only
``studio`` imports it.
"""
