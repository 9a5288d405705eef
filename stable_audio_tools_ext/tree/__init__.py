"""The condition tree and the plan: YAML -> validated leaves -> work items (leaf, item k, seed, path).

Owns the YAML format (reading, validation with file/line/YAML path, ``_defaults`` inheritance), seed
derivation, output paths and the names in the output folder that the tool keeps for itself
(``reserved``: the writers in ``output``, ``datasets`` and ``run`` import them from here), per-item
cost and the balanced order that ``run`` shards. Knows nothing of models or torch: it may import
only ``request`` (and the standard library, PyYAML). ``output``, ``datasets``, ``sampling``, ``run``
and ``studio`` import it; it never imports them.
"""
