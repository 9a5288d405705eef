"""The Gradio studio's page: audition prompts on the batch engine, then hand the settings off as a YAML sweep.

Two tabs share one loaded model. **Generate** turns the form into a YAML leaf and generates its
variations as one batch through the CLI's own code, so the Export button hands out exactly what was
heard. **Batch** validates a pasted or uploaded tree with the CLI's validator, previews it, generates
it (up to an item limit) and offers the results as a zip. This module only lays the page out and
wires its components to ``handlers``.

Nothing leaves the machine unless asked: Gradio's usage analytics and version check are off unless
``GRADIO_ANALYTICS_ENABLED`` is set by the user (see the package ``__init__``), the server binds to
127.0.0.1 by default, and the only files it serves are below its tmp dir.
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

from ..model.loading import LoadedModel
from ..run.views import model_description
from .actions import RANDOM_SEED
from .files import GRADIO_CACHE_DIRNAME
from .handlers import StudioHandlers
from .ranks import Runner
from .settings import StudioSettings

MODEL_SLOT = "model"  # concurrency id: one generation at a time on the one model
STRENGTH_RANGE = (-1.0, 2.0)  # the strength sliders' span, widened to take a --lora-strength outside it
STRENGTH_STEP = 0.05


def build_app(loaded: LoadedModel, settings: StudioSettings, runner: Runner | None = None) -> gr.Blocks:
    """The studio for ``loaded``; files go below ``settings.tmp_dir`` (Gradio's own cache included).

    ``runner`` generates (default: this process; under torchrun a ``ranks.RankPool`` of every rank).

    Points ``GRADIO_TEMP_DIR`` at the tmp dir before any component exists, because components
    fix their cache folder when they are created.
    """
    handlers = StudioHandlers(loaded, settings, runner)
    os.environ["GRADIO_TEMP_DIR"] = str(handlers.tmp_dir / GRADIO_CACHE_DIRNAME)
    spec = loaded.spec
    with gr.Blocks(title="Stable Audio studio", delete_cache=(3600, int(settings.max_age_seconds))) as app:
        gr.Markdown(
            f"## Stable Audio studio\nModel **{model_description(spec)}**: {spec.sample_rate} Hz, window "
            f"{spec.window_seconds:.2f} s, on {loaded.device}. Generation here runs the same code as `generate.py`: "
            "export the settings and a sweep reproduces these clips exactly."
        )
        with gr.Tab("Generate", id="generate"):
            _generate_tab(handlers)
        with gr.Tab("Batch", id="batch"):
            _batch_tab(handlers)
    return app


def _generate_tab(handlers: StudioHandlers) -> None:
    """The audition form, its variation slots and the export accordion."""
    defaults, settings = handlers.defaults, handlers.settings
    window = handlers.spec.window_seconds
    seconds_max = int(window * 100) / 100  # slider bound on a 0.01 s grid, never past the window
    with gr.Row():
        with gr.Column(scale=1):
            prompt = gr.Textbox(label="prompt", lines=2, elem_id="prompt")
            negative = gr.Textbox(label="negative prompt", elem_id="negative-prompt")
            with gr.Row():
                start = gr.Slider(0, seconds_max, value=0, step=0.01, label="seconds start", elem_id="seconds-start")
                total = gr.Slider(0.01, seconds_max, value=seconds_max, step=0.01, label="seconds total",
                                  info=f"start + total <= {window:.2f} s", elem_id="seconds-total")  # fmt: skip
            with gr.Row():
                steps = gr.Slider(1, 500, value=defaults.steps, step=1, precision=0, label="steps", elem_id="steps")
                cfg = gr.Slider(0, 25, value=defaults.cfg_scale, step=0.1, label="CFG scale", elem_id="cfg")
            sampler = gr.Dropdown(list(handlers.spec.family.samplers), value=defaults.sampler_type, label="sampler",
                                  elem_id="sampler")  # fmt: skip
            with gr.Row():
                seed = gr.Number(value=RANDOM_SEED, precision=0, minimum=RANDOM_SEED, label="seed (-1: random)",
                                 elem_id="seed")  # fmt: skip
                variations = gr.Slider(1, settings.max_variations, value=1, step=1, precision=0,
                                       label="variations (seeds s, s+1, ...)", elem_id="variations")  # fmt: skip
            strengths = _strength_sliders(handlers)
            generate_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
            with gr.Accordion("Export for generate.py", open=False, elem_id="export"):
                leaf_name = gr.Textbox(value="audition", label="leaf path (a/b/name)", elem_id="leaf-name")
                export_button = gr.Button("Export YAML", elem_id="export-button")
                export_yaml = gr.Code(language="yaml", label="condition tree", wrap_lines=True, elem_id="export-yaml")
                export_file = gr.File(label="download", elem_id="export-file")
        with gr.Column(scale=2):
            status = gr.Markdown(elem_id="generate-status")
            seed_used = gr.Textbox(label="seed used", interactive=False, buttons=["copy"], elem_id="seed-used")
            slots = _variation_slots(settings.max_variations)
    form = [prompt, negative, start, total, steps, cfg, sampler, seed, variations]
    generate_button.click(
        handlers.generate, [*form, *strengths], [status, seed_used, *slots], api_name="generate",
        concurrency_limit=1, concurrency_id=MODEL_SLOT,
    )  # fmt: skip
    export_button.click(handlers.export, [*form, seed_used, leaf_name, *strengths], [export_yaml, export_file],
                        api_name="export")  # fmt: skip


def _strength_sliders(handlers: StudioHandlers) -> list[Any]:
    """One strength slider per ``--lora`` adapter, named by the adapter's name, starting at its ``--lora-strength``."""
    if not handlers.adapters:
        return []
    sliders = []
    with gr.Accordion("LoRA adapters (strength 0: the base model)", open=True, elem_id="lora"):
        for index, adapter in enumerate(handlers.adapters, start=1):
            start = adapter.use.strength
            sliders.append(gr.Slider(min(STRENGTH_RANGE[0], start), max(STRENGTH_RANGE[1], start), value=start,
                                     step=STRENGTH_STEP, label=adapter.name, info=adapter.description(),
                                     elem_id=f"lora-strength-{index}"))  # fmt: skip
    return sliders


def _variation_slots(count: int) -> list[Any]:
    """Hidden result groups, one per possible variation: group, audio, spectrogram, download, parameters."""
    slots: list[Any] = []
    for index in range(1, count + 1):
        with gr.Group(visible=False, elem_id=f"variation-{index}") as group:
            audio = gr.Audio(label=f"variation {index}", type="filepath", interactive=False, elem_id=f"audio-{index}")
            with gr.Row():
                image = gr.Image(label="spectrogram", type="filepath", interactive=False, height=220, scale=3,
                                 elem_id=f"spectrogram-{index}")  # fmt: skip
                with gr.Column(scale=2):
                    download = gr.File(label="download", interactive=False, elem_id=f"download-{index}")
                    params = gr.Code(language="json", label="parameters", max_lines=10, elem_id=f"params-{index}")
        slots += [group, audio, image, download, params]
    return slots


def _batch_tab(handlers: StudioHandlers) -> None:
    """The tree editor, generate.py's default flags, and the results browser."""
    defaults, settings = handlers.defaults, handlers.settings
    samplers = list(handlers.spec.family.samplers)
    with gr.Row():
        with gr.Column(scale=1):
            tree_text = gr.Code(language="yaml", label="condition tree (YAML)", interactive=True, lines=14,
                                elem_id="batch-yaml")  # fmt: skip
            upload = gr.File(label="or upload a .yaml file", file_types=[".yaml", ".yml"], type="filepath",
                             height=120, elem_id="batch-upload")  # fmt: skip
            if handlers.adapters:
                names = ", ".join(f"`{adapter.name}`" for adapter in handlers.adapters)
                gr.Markdown(f"LoRA adapters a leaf may name (`lora: NAME` or `NAME.safetensors`, with `lora_strength`; "
                            f"never a path): {names}. Leaves without `lora` get them at their start strengths.",
                            elem_id="batch-adapters")  # fmt: skip
            with gr.Accordion("generate.py flags for leaves that do not set a field", open=False):
                b_steps = gr.Number(value=defaults.steps, precision=0, minimum=1, label="--sample-steps")
                b_cfg = gr.Number(value=defaults.cfg_scale, label="--cfg-scale")
                b_sampler = gr.Dropdown(samplers, value=defaults.sampler_type, label="--sampler-type")
                b_n = gr.Number(value=defaults.n_samples, precision=0, minimum=1, label="--n-sample-per-cond")
                b_seed = gr.Number(value=defaults.base_seed, precision=0, minimum=0, label="--seed")
            with gr.Row():
                validate_button = gr.Button("Validate", elem_id="validate-button")
                batch_button = gr.Button(f"Generate (up to {settings.max_batch_items} items)", variant="primary",
                                         elem_id="batch-button")  # fmt: skip
        with gr.Column(scale=1):
            batch_status = gr.Textbox(label="status", lines=4, max_lines=30, interactive=False, elem_id="batch-status")
            preview = gr.Code(label="preview", interactive=False, elem_id="batch-preview")
            archive = gr.File(label="results (WAVs, tree.yaml, manifest.jsonl)", elem_id="batch-zip")
            run_dir = gr.State("")
            choice = gr.Dropdown(choices=[], label="browse results", elem_id="batch-results")
            result_audio = gr.Audio(type="filepath", interactive=False, label="result", elem_id="batch-audio")
            result_record = gr.Code(language="json", label="manifest record", max_lines=16, elem_id="batch-record")
    tree_inputs = [tree_text, b_steps, b_cfg, b_sampler, b_n, b_seed]
    upload.upload(handlers.load_upload, upload, tree_text, api_visibility="private")
    validate_button.click(handlers.validate_batch, tree_inputs, [batch_status, preview], api_name="validate_batch")
    batch_button.click(
        handlers.generate_batch, tree_inputs, [batch_status, preview, archive, choice, run_dir],
        api_name="generate_batch", concurrency_limit=1, concurrency_id=MODEL_SLOT,
    ).then(handlers.browse, [choice, run_dir], [result_audio, result_record], api_visibility="private")  # fmt: skip
    choice.input(handlers.browse, [choice, run_dir], [result_audio, result_record], api_visibility="private")
