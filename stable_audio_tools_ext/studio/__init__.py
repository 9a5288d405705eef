"""The studio: ``run_gradio.py``'s Gradio app, generating through the run's own job code.

``actions`` does what the studio does without Gradio (settings -> YAML leaf -> work items -> files,
so the same seed gives the same audio as ``generate.py``); ``handlers`` turns Gradio inputs into
those actions and their results into component values; ``app`` lays out the page and wires the
two; ``settings`` holds its limits and launch options (with the middleware that keeps the server
from fetching URLs); ``files`` keeps the tmp dir private and confines every file the app writes or
serves to it. May import every other subpackage; nothing imports it.
"""

import os

# Before any studio module imports gradio: no usage analytics or version check unless the user asks.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
