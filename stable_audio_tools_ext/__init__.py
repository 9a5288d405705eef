"""Reproducible, sharded batch generation with Stable Audio Open (see README.md and docs/).

One subpackage per stage of the data flow, listed bottom-up; each may import only those named after
"imports" (``tests/test_layout.py`` checks it), so imports run one way: studio -> run -> sampling -> model.

- ``request``  the value every stage passes along: one clip to generate, and a model's latent geometry.
- ``tree``     YAML condition tree -> validated leaves -> seeded work items. Imports: request.
- ``model``    find, check and load a model; export; the tiny demo model. Imports: request, output (atomic writes).
- ``output``   audio -> measured files, written atomically; the manifest; resume. Imports: tree, request.
- ``sampling`` requests -> audio, seeded per item; ``--batch-size auto``. Imports: model, tree, request.
- ``datasets`` an output folder as a training dataset; ``report.html``. Imports: output, tree, request.
- ``run``      ``generate.py``: flags, ranks, the per-rank job, signals, progress. Imports: all of the above.
- ``studio``   ``run_gradio.py``: the Gradio app on the run's own job code. Imports: all of the above and run.
"""

__version__ = "0.1.0"
