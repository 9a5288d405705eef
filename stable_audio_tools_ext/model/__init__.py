"""The model: find, check and load a text-conditioned Stable Audio model, and what it implies.

Owns hub/local/Lightning-checkpoint loading (strict, weights-only by default), precision, the model
flags that ``generate.py`` and ``run_gradio.py`` share, the sampler families each diffusion objective
supports, seeding the VAE's latent sample, checkpoint export, and the tiny random-weight model in a fake hub cache that tests, ``make
demo`` and the benchmarks load through the real code path. May import ``request`` and
``output.atomic`` (export writes files atomically); never ``sampling``, ``run`` or ``studio``.
"""
