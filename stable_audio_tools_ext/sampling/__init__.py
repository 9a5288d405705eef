"""Sampling: generation requests -> audio tensors, with one random stream per item.

Owns the per-item-seeded samplers (an item's audio never depends on its batch), the one engine
function the CLI and the studio share (conditioning, init audio, sampling, VAE decode), GPU memory
(``--batch-size auto``, retrying a batch that runs out of memory in halves) and the chunked decoder's
limits. May import ``model``, ``request`` and ``tree`` (work items); never ``output``, ``run`` or
``studio``: it returns audio and leaves writing it to others.
"""
