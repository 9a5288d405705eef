"""Reproducible, sharded batch generation with Stable Audio Open (see README.md).

Modules, in data-flow order: ``conditions`` (YAML tree -> leaves), ``plan`` (leaves -> work items),
``distributed`` (torchrun -> this rank's share), ``models`` (find and load a model), ``engine`` and
``samplers`` (requests -> audio, seeded per item), ``audio_io`` / ``atomic`` (audio -> files),
``progress`` (job-wide progress), ``job`` and ``cli`` (wiring), ``tiny`` / ``demo`` (offline demo model).
"""

__version__ = "0.1.0"
