"""The Gradio studio: audition prompts on the batch engine, then hand the settings off as a YAML sweep.

Two tabs share one loaded model. **Generate** turns the form into a YAML leaf and generates its
variations as one batch through the CLI's own code (see ``ui_studio``), so the Export button hands
out exactly what was heard. **Batch** validates a pasted or uploaded tree with the CLI's validator,
previews it, generates it (up to an item limit) and offers the results as a zip.

Nothing leaves the machine unless asked: Gradio's usage analytics and version check are off unless
``GRADIO_ANALYTICS_ENABLED`` is set by the user, the server binds to 127.0.0.1 by default, and the
only files it serves are below its tmp dir.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no phoning home

from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402

from .conditions import ConditionTreeError  # noqa: E402
from .manifest import Record, load_records  # noqa: E402
from .models import LoadedModel  # noqa: E402
from .plan import SamplingDefaults, WorkItem  # noqa: E402
from .ui_files import GRADIO_CACHE_DIRNAME, confined, new_run_dir, zip_folder  # noqa: E402
from .ui_studio import (  # noqa: E402
    RANDOM_SEED,
    Audition,
    audition_tree,
    counting_denoiser_calls,
    generate_items,
    model_flags,
    plan_tree,
    preview_text,
    resolve_seed,
    sampling_defaults,
    tree_yaml,
    write_spectrogram,
    write_tree,
)
from .views import model_description  # noqa: E402

MODEL_SLOT = "model"  # concurrency id: one generation at a time on the one model
PARAMETER_FIELDS = (
    "prompt", "negative_prompt", "seconds_start", "seconds_total", "seed", "steps", "cfg_scale", "sampler_type",
    "sigma_min", "sigma_max", "model", "model_revision", "precision", "path", "status",
)  # fmt: skip


@dataclass(frozen=True)
class StudioSettings:
    """Limits and locations of one running studio."""

    tmp_dir: Path
    max_age_seconds: float = 24 * 3600  # Gradio's copies of outputs are deleted after this, while it runs
    max_variations: int = 8
    max_batch_items: int = 64
    batch_size: int = 4  # items per forward pass in the batch tab
    max_upload_bytes: int = 1_000_000


def read_auth_file(path: Path) -> list[tuple[str, str]]:
    """``user:password`` lines (blank lines and ``#`` comments ignored) -> Gradio's ``auth`` list.

    A file keeps passwords out of the process list and shell history, unlike ``--password``.
    """
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError(f"{path}:{number}: expected 'username:password'")
        pairs.append((user.strip(), password))
    if not pairs:
        raise ValueError(f"{path}: no 'username:password' line")
    return pairs


def launch_options(
    settings: StudioSettings, host: str, port: int | None, share: bool, auth: list[tuple[str, str]] | None
) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``: the safety-relevant choices in one place."""
    return {
        "server_name": host,
        "server_port": port,
        "share": share,
        "auth": auth or None,
        "max_file_size": settings.max_upload_bytes,
        "allowed_paths": [str(settings.tmp_dir.resolve())],
        "enable_monitoring": False,
        "ssr_mode": False,  # client-side rendering: no Node.js server beside Python
        "show_error": True,
        "footer_links": ["api", "settings"],
    }


class _ProgressReporter:
    """Feeds Gradio's progress bar from the clips done and the model passes of the batch in flight.

    Given ``steps`` (one batch, as in the Generate tab), the bar follows the passes: one per step
    for most samplers; those that make two per step would fill it early, so it stops short of full
    until the clips are written. Without it (the Batch tab, whose leaves may set their own steps)
    the bar follows clips done and the passes are only counted.
    """

    def __init__(self, progress: gr.Progress, total: int, steps: int | None = None) -> None:
        self._progress, self._total, self._steps = progress, total, steps
        self._done = self._calls = self._calls_before_batch = 0
        self._show()

    def items(self, done: int, total: int) -> None:
        self._done, self._total, self._calls_before_batch = done, total, self._calls
        self._show()

    def calls(self, calls: int) -> None:
        self._calls = calls
        self._show()

    def _show(self) -> None:
        passes = self._calls - self._calls_before_batch
        if self._done == self._total:
            fraction, desc = 1.0, f"{self._total} clip(s) written"
        elif self._steps:
            fraction = min(passes / self._steps, 0.99)
            desc = f"sampling {self._total} clip(s): step {min(passes, self._steps)} of {self._steps}"
        else:
            fraction, desc = self._done / self._total, f"{self._done} of {self._total} clips; {passes} model passes in this batch"
        self._progress(fraction, desc=desc)


def _as_int(value: float | int | None, what: str) -> int:
    if value is None or float(value) != int(value):
        raise ValueError(f"{what} must be a whole number, got {value}")
    return int(value)


def _message(exc: ValueError) -> str:
    """What is wrong with the user's input, in words (every problem of a tree, with its YAML path)."""
    return exc.report() if isinstance(exc, ConditionTreeError) else f"error: {exc}"


def _user_error(exc: ValueError) -> gr.Error:
    return gr.Error(_message(exc), print_exception=False)


def _record_json(record: Record) -> str:
    return json.dumps(record, indent=1, sort_keys=True)


def _parameters_json(record: Record) -> str:
    """The fields of a manifest record that determine the audio, in reading order."""
    return json.dumps({field: record.get(field) for field in PARAMETER_FIELDS}, indent=1)


def _variation_outputs(
    items: list[WorkItem], records: dict[str, Record], run_dir: Path, slots: int
) -> tuple[list[Any], list[str]]:
    """Values for every result slot (group, audio, spectrogram, download, parameters), and notes on bad clips."""
    outputs: list[Any] = []
    notes: list[str] = []
    for index in range(slots):
        if index >= len(items):
            outputs += [gr.Group(visible=False), None, None, None, ""]
            continue
        record = records[items[index].relpath]
        if record["status"] == "nonfinite":
            notes.append(f"variation {index + 1} (seed {record['seed']}) came out NaN/Inf and was not written")
            outputs += [gr.Group(visible=True), None, None, None, _parameters_json(record)]
            continue
        if record["status"] == "silent":
            notes.append(f"variation {index + 1} (seed {record['seed']}) is silent")
        wav = run_dir / items[index].relpath
        png = write_spectrogram(wav, wav.with_suffix(".png"))
        outputs += [gr.Group(visible=True), str(wav), str(png), str(wav), _parameters_json(record)]
    return outputs, notes


def build_app(loaded: LoadedModel, settings: StudioSettings) -> gr.Blocks:
    """The studio for ``loaded``; files go below ``settings.tmp_dir`` (Gradio's own cache included).

    Points ``GRADIO_TEMP_DIR`` at the tmp dir before any component exists, because components
    fix their cache folder when they are created.
    """
    tmp_dir = settings.tmp_dir.resolve()
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_dir / GRADIO_CACHE_DIRNAME)
    spec = loaded.spec
    window = spec.window_seconds
    seconds_max = int(window * 100) / 100  # slider bound on a 0.01 s grid, never past the window
    defaults = sampling_defaults(spec)
    samplers = list(spec.family.samplers)

    def audition_of(prompt, negative_prompt, seconds_start, seconds_total, steps, cfg_scale, sampler_type) -> Audition:
        return Audition(
            prompt=prompt or "", negative_prompt=negative_prompt or None,
            seconds_start=float(seconds_start), seconds_total=float(seconds_total),
            steps=_as_int(steps, "steps"), cfg_scale=float(cfg_scale), sampler_type=sampler_type,
        )  # fmt: skip

    def generate(prompt, negative_prompt, seconds_start, seconds_total, steps, cfg_scale, sampler_type, seed, variations,
                 progress=gr.Progress()):  # fmt: skip
        """Generate ``variations`` clips with seeds seed, seed+1, ... (seed -1: random) as one batch."""
        try:
            audition = audition_of(prompt, negative_prompt, seconds_start, seconds_total, steps, cfg_scale, sampler_type)
            count = _as_int(variations, "variations")
            if not 1 <= count <= settings.max_variations:
                raise ValueError(f"variations must be between 1 and {settings.max_variations}, got {count}")
            used_seed = resolve_seed(seed)
            run_dir = new_run_dir(tmp_dir, "generate")
            tree_file = write_tree(tree_yaml(audition_tree(audition, used_seed, count), loaded), run_dir)
            items = plan_tree(tree_file, spec, defaults, max_items=count)
        except ValueError as exc:
            raise _user_error(exc) from None
        reporter = _ProgressReporter(progress, len(items), audition.steps)
        with counting_denoiser_calls(loaded, reporter.calls):
            records = generate_items(loaded, items, run_dir, batch_size=len(items), on_advance=reporter.items)
        outputs, notes = _variation_outputs(items, records, run_dir, settings.max_variations)
        seeds = f"{used_seed}" if len(items) == 1 else f"{used_seed}..{used_seed + len(items) - 1}"
        status = f"{len(items)} clip(s) of {audition.seconds_total:g} s, seeds {seeds}." + "".join(f" {n}." for n in notes)
        return [status, str(used_seed), *outputs]

    def export(prompt, negative_prompt, seconds_start, seconds_total, steps, cfg_scale, sampler_type, seed, variations,
               seed_used, leaf_name):  # fmt: skip
        """The current settings as a YAML tree for generate.py (seed -1: the seed of the last generation)."""
        try:
            audition = audition_of(prompt, negative_prompt, seconds_start, seconds_total, steps, cfg_scale, sampler_type)
            if seed is None or seed == RANDOM_SEED:
                if not (seed_used or "").strip():
                    raise ValueError("seed is -1 (random): generate first, or set a seed, so the export can fix it")
                seed = int(seed_used)
            count = _as_int(variations, "variations")
            text = tree_yaml(audition_tree(audition, resolve_seed(seed), count, leaf_name or "audition"), loaded)
            tree_file = write_tree(text, new_run_dir(tmp_dir, "export"))
            plan_tree(tree_file, spec, defaults, max_items=settings.max_variations)
        except ValueError as exc:
            raise _user_error(exc) from None
        return text, str(tree_file)

    def batch_defaults(steps, cfg_scale, sampler_type, n_samples, base_seed) -> SamplingDefaults:
        return replace(
            defaults, steps=_as_int(steps, "steps"), cfg_scale=float(cfg_scale), sampler_type=sampler_type,
            n_samples=_as_int(n_samples, "items per leaf"), base_seed=_as_int(base_seed, "base seed"),
        )  # fmt: skip

    def batch_plan(text: str, sampling: SamplingDefaults):
        if len((text or "").encode("utf-8")) > settings.max_upload_bytes:
            raise ValueError(f"the tree is larger than the limit of {settings.max_upload_bytes:,} bytes")
        run_dir = new_run_dir(tmp_dir, "batch")
        items = plan_tree(write_tree(text or "", run_dir), spec, sampling, settings.max_batch_items)
        return run_dir, items

    def command_line(sampling: SamplingDefaults) -> str:
        return (
            f"python generate.py --cond-yaml-path tree.yaml --output-dir OUT --clip-length {model_flags(loaded)} "
            f"--sample-steps {sampling.steps} --cfg-scale {sampling.cfg_scale} --sampler-type {sampling.sampler_type} "
            f"--n-sample-per-cond {sampling.n_samples} --seed {sampling.base_seed}"
        )

    def validate_batch(text, steps, cfg_scale, sampler_type, n_samples, base_seed):
        """Check a tree as generate.py would; returns (status, preview)."""
        try:
            sampling = batch_defaults(steps, cfg_scale, sampler_type, n_samples, base_seed)
            _, items = batch_plan(text, sampling)
        except ValueError as exc:
            return _message(exc), ""
        return f"valid: {len(items)} items. Same files from:\n{command_line(sampling)}", preview_text(items, spec)

    def generate_batch(text, steps, cfg_scale, sampler_type, n_samples, base_seed, progress=gr.Progress()):
        """Validate, then generate the whole tree; returns status, preview, zip, result choices, run dir."""
        try:
            sampling = batch_defaults(steps, cfg_scale, sampler_type, n_samples, base_seed)
            run_dir, items = batch_plan(text, sampling)
        except ValueError as exc:
            return _message(exc), "", None, gr.Dropdown(choices=[], value=None), ""
        reporter = _ProgressReporter(progress, len(items))
        with counting_denoiser_calls(loaded, reporter.calls):
            records = generate_items(loaded, items, run_dir, settings.batch_size, on_advance=reporter.items)
        archive = zip_folder(run_dir, tmp_dir, run_dir / f"batch-{run_dir.name}.zip")
        written = [item.relpath for item in items if records[item.relpath]["status"] != "nonfinite"]
        failed = len(items) - len(written)
        status = f"done: {len(written)} files" + (f"; {failed} came out NaN/Inf and were not written" if failed else "")
        first = written[0] if written else None
        return status, preview_text(items, spec), str(archive), gr.Dropdown(choices=written, value=first), str(run_dir)

    def browse(relpath, run_dir):
        """One result of the last batch: its audio and manifest record."""
        if not relpath or not run_dir:
            return None, ""
        try:
            wav = confined(Path(run_dir) / relpath, tmp_dir)
        except ValueError as exc:
            raise _user_error(exc) from None
        return str(wav), _record_json(load_records(Path(run_dir)).get(relpath, {}))

    def load_upload(path):
        """Put an uploaded YAML file into the editor (size-limited, UTF-8, from Gradio's upload folder only)."""
        if not path:
            return gr.Code()
        try:
            file = confined(path, tmp_dir)
            if file.stat().st_size > settings.max_upload_bytes:
                raise ValueError(f"the file is larger than the limit of {settings.max_upload_bytes:,} bytes")
            return file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise gr.Error("the file is not UTF-8 text", print_exception=False) from None
        except ValueError as exc:
            raise _user_error(exc) from None

    with gr.Blocks(title="Stable Audio studio", delete_cache=(3600, int(settings.max_age_seconds))) as app:
        gr.Markdown(
            f"## Stable Audio studio\nModel **{model_description(spec)}**: {spec.sample_rate} Hz, window "
            f"{window:.2f} s, on {loaded.device}. Generation here runs the same code as `generate.py`: "
            "export the settings and a sweep reproduces these clips exactly."
        )
        with gr.Tab("Generate", id="generate"):
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
                    sampler = gr.Dropdown(samplers, value=defaults.sampler_type, label="sampler", elem_id="sampler")
                    with gr.Row():
                        seed = gr.Number(value=RANDOM_SEED, precision=0, minimum=RANDOM_SEED, label="seed (-1: random)",
                                         elem_id="seed")  # fmt: skip
                        variations = gr.Slider(1, settings.max_variations, value=1, step=1, precision=0,
                                               label="variations (seeds s, s+1, ...)", elem_id="variations")  # fmt: skip
                    generate_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
                    with gr.Accordion("Export for generate.py", open=False, elem_id="export"):
                        leaf_name = gr.Textbox(value="audition", label="leaf path (a/b/name)", elem_id="leaf-name")
                        export_button = gr.Button("Export YAML", elem_id="export-button")
                        export_yaml = gr.Code(language="yaml", label="condition tree", wrap_lines=True, elem_id="export-yaml")
                        export_file = gr.File(label="download", elem_id="export-file")
                with gr.Column(scale=2):
                    status = gr.Markdown(elem_id="generate-status")
                    seed_used = gr.Textbox(label="seed used", interactive=False, buttons=["copy"], elem_id="seed-used")
                    slots: list[Any] = []
                    for index in range(1, settings.max_variations + 1):
                        with gr.Group(visible=False, elem_id=f"variation-{index}") as group:
                            audio = gr.Audio(label=f"variation {index}", type="filepath", interactive=False,
                                             elem_id=f"audio-{index}")  # fmt: skip
                            with gr.Row():
                                image = gr.Image(label="spectrogram", type="filepath", interactive=False, height=220,
                                                 scale=3, elem_id=f"spectrogram-{index}")  # fmt: skip
                                with gr.Column(scale=2):
                                    download = gr.File(label="download", interactive=False, elem_id=f"download-{index}")
                                    params = gr.Code(language="json", label="parameters", max_lines=10,
                                                     elem_id=f"params-{index}")  # fmt: skip
                        slots += [group, audio, image, download, params]
            form = [prompt, negative, start, total, steps, cfg, sampler, seed, variations]
            generate_button.click(
                generate, form, [status, seed_used, *slots], api_name="generate",
                concurrency_limit=1, concurrency_id=MODEL_SLOT,
            )  # fmt: skip
            export_button.click(export, [*form, seed_used, leaf_name], [export_yaml, export_file], api_name="export")

        with gr.Tab("Batch", id="batch"):
            with gr.Row():
                with gr.Column(scale=1):
                    tree_text = gr.Code(language="yaml", label="condition tree (YAML)", interactive=True, lines=14,
                                        elem_id="batch-yaml")  # fmt: skip
                    upload = gr.File(label="or upload a .yaml file", file_types=[".yaml", ".yml"], type="filepath",
                                     height=120, elem_id="batch-upload")  # fmt: skip
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
            upload.upload(load_upload, upload, tree_text, api_visibility="private")
            validate_button.click(validate_batch, tree_inputs, [batch_status, preview], api_name="validate_batch")
            batch_button.click(
                generate_batch, tree_inputs, [batch_status, preview, archive, choice, run_dir], api_name="generate_batch",
                concurrency_limit=1, concurrency_id=MODEL_SLOT,
            ).then(browse, [choice, run_dir], [result_audio, result_record], api_visibility="private")  # fmt: skip
            choice.input(browse, [choice, run_dir], [result_audio, result_record], api_visibility="private")
    return app
