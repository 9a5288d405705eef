"""What each button of the studio does: Gradio inputs -> the studio's actions -> component values.

Every handler validates its inputs with the CLI's own checks and turns a ``ValueError`` into a
message for the page (every problem of a tree, with its YAML path), never a traceback. Generation
runs through ``actions`` and so through the same job code as ``generate.py``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr

from ..model.loading import LoadedModel
from ..output.manifest import Record, load_records
from ..run.inprocess import plan_tree, sampling_defaults
from ..tree.conditions import ConditionTreeError
from ..tree.plan import SamplingDefaults, WorkItem
from .actions import (
    RANDOM_SEED,
    Audition,
    audition_tree,
    counting_denoiser_calls,
    generate_items,
    model_flags,
    preview_text,
    resolve_seed,
    tree_yaml,
    write_spectrogram,
    write_tree,
)
from .adapters import checked_strengths, lora_flags, name_adapters, placement_lines, tree_names
from .files import confined, new_run_dir, zip_folder
from .ranks import LocalRunner, RankFailure, Runner
from .settings import BATCH_LIMIT_FLAG, StudioSettings

PARAMETER_FIELDS = (
    "prompt", "negative_prompt", "seconds_start", "seconds_total", "seed", "steps", "cfg_scale", "sampler_type",
    "sigma_min", "sigma_max", "model", "model_revision", "precision", "path", "status", "rank",
)  # fmt: skip


class ProgressReporter:
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


def _parameters_json(record: Record) -> str:
    """The fields of a manifest record that determine the audio, in reading order (its adapters, when it has any)."""
    fields = PARAMETER_FIELDS + (("lora",) if "lora" in record else ())
    return json.dumps({field: record.get(field) for field in fields}, indent=1)


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


class StudioHandlers:
    """The callbacks of one studio: one loaded model, one tmp dir (already resolved), one set of limits."""

    def __init__(self, loaded: LoadedModel, settings: StudioSettings, runner: Runner | None = None) -> None:
        self.loaded, self.settings = loaded, settings
        self.runner = runner if runner is not None else LocalRunner(loaded)
        self.tmp_dir = settings.tmp_dir.resolve()
        self.spec = loaded.spec
        self.defaults = sampling_defaults(self.spec)
        self.adapters = name_adapters(self.spec.adapters)  # run_gradio.py --lora: one strength control each
        self._tree_names = tree_names(self.adapters)  # the only adapters a tree here may name, by name

    def _plan(self, tree_file: Path, sampling: SamplingDefaults, max_items: int, **options: Any) -> tuple[list[WorkItem], str]:
        """``plan_tree`` with the studio's adapters as the ones a leaf's ``lora`` may name."""
        return plan_tree(tree_file, self.spec, sampling, max_items, adapters=self._tree_names, **options)

    def _generate(self, items: list[WorkItem], run_dir: Path, batch_size: int, reporter: ProgressReporter) -> dict[str, Record]:
        """Generate with the runner; a rank's failure becomes a message in the page."""
        try:
            return generate_items(self.runner, items, run_dir, self.tmp_dir, batch_size, on_advance=reporter.items)
        except RankFailure as exc:
            raise gr.Error(f"error: {exc}", print_exception=False) from None

    # Generate tab -------------------------------------------------------------------------------

    def _audition(self, prompt, negative_prompt, seconds_start, seconds_total, steps, cfg_scale, sampler_type,
                  strengths) -> Audition:  # fmt: skip
        return Audition(
            prompt=prompt or "", negative_prompt=negative_prompt or None,
            seconds_start=float(seconds_start), seconds_total=float(seconds_total),
            steps=_as_int(steps, "steps"), cfg_scale=float(cfg_scale), sampler_type=sampler_type,
            lora=tuple(zip(self.adapters, checked_strengths(self.adapters, strengths))),
        )  # fmt: skip

    # ``progress`` comes before the strengths (one input per adapter): Gradio fills in a ``gr.Progress``
    # parameter only where it stands among the positional ones, and ``*strengths`` ends those.
    def generate(self, prompt, negative_prompt, seconds_start, seconds_total, steps, cfg_scale, sampler_type, seed,
                 variations, progress=gr.Progress(), *strengths):  # fmt: skip
        """Generate ``variations`` clips with seeds seed, seed+1, ... (seed -1: random) as one batch,
        with the studio's adapters at ``strengths`` (one per adapter)."""
        try:
            audition = self._audition(prompt, negative_prompt, seconds_start, seconds_total, steps, cfg_scale, sampler_type,
                                      strengths)  # fmt: skip
            count = _as_int(variations, "variations")
            if not 1 <= count <= self.settings.max_variations:
                raise ValueError(f"variations must be between 1 and {self.settings.max_variations}, got {count}")
            used_seed = resolve_seed(seed)
            run_dir = new_run_dir(self.tmp_dir, "generate")
            text = tree_yaml(audition_tree(audition, used_seed, count), self.loaded, self.adapters)
            items, warnings = self._plan(write_tree(text, run_dir, self.tmp_dir), self.defaults, count)
        except ValueError as exc:
            raise _user_error(exc) from None
        reporter = ProgressReporter(progress, len(items), audition.steps)
        with counting_denoiser_calls(self.loaded, reporter.calls):
            records = self._generate(items, run_dir, len(items), reporter)
        outputs, notes = _variation_outputs(items, records, run_dir, self.settings.max_variations)
        seeds = f"{used_seed}" if len(items) == 1 else f"{used_seed}..{used_seed + len(items) - 1}"
        status = f"{len(items)} clip(s) of {audition.seconds_total:g} s, seeds {seeds}." + "".join(f" {n}." for n in notes)
        status += f"\n\n{warnings}" if warnings else ""  # a Markdown paragraph of its own
        return [status, str(used_seed), *outputs]

    def export(self, prompt, negative_prompt, seconds_start, seconds_total, steps, cfg_scale, sampler_type, seed,
               variations, seed_used, leaf_name, *strengths):  # fmt: skip
        """The current settings as a YAML tree for generate.py (seed -1: the seed of the last generation)."""
        try:
            audition = self._audition(prompt, negative_prompt, seconds_start, seconds_total, steps, cfg_scale, sampler_type,
                                      strengths)  # fmt: skip
            if seed is None or seed == RANDOM_SEED:
                if not (seed_used or "").strip():
                    raise ValueError("seed is -1 (random): generate first, or set a seed, so the export can fix it")
                seed = int(seed_used)
            count = _as_int(variations, "variations")
            text = tree_yaml(audition_tree(audition, resolve_seed(seed), count, leaf_name or "audition"), self.loaded,
                             self.adapters)  # fmt: skip
            tree_file = write_tree(text, new_run_dir(self.tmp_dir, "export"), self.tmp_dir)
            self._plan(tree_file, self.defaults, self.settings.max_variations)
        except ValueError as exc:
            raise _user_error(exc) from None
        return text, str(tree_file)

    # Batch tab ----------------------------------------------------------------------------------

    def _batch_defaults(self, steps, cfg_scale, sampler_type, n_samples, base_seed) -> SamplingDefaults:
        return replace(
            self.defaults, steps=_as_int(steps, "steps"), cfg_scale=float(cfg_scale), sampler_type=sampler_type,
            n_samples=_as_int(n_samples, "items per leaf"), base_seed=_as_int(base_seed, "base seed"),
        )  # fmt: skip

    def _batch_plan(self, text: str, sampling: SamplingDefaults) -> tuple[Path, list[WorkItem], str]:
        if len((text or "").encode("utf-8")) > self.settings.max_upload_bytes:
            raise ValueError(f"the tree is larger than the limit of {self.settings.max_upload_bytes:,} bytes")
        run_dir = new_run_dir(self.tmp_dir, "batch")
        tree_file = write_tree(text or "", run_dir, self.tmp_dir)
        # A tree sent to the server must not make it open server files (init_audio): it could name any path.
        # Its adapters are the studio's, by name.
        items, warnings = self._plan(tree_file, sampling, self.settings.max_batch_items, read_init_audio=False,
                                     limit_flag=BATCH_LIMIT_FLAG)  # fmt: skip
        return run_dir, items, warnings

    def _command_line(self, sampling: SamplingDefaults) -> str:
        command = (
            f"python generate.py --cond-yaml-path tree.yaml --output-dir OUT --clip-length {model_flags(self.loaded)} "
            f"--sample-steps {sampling.steps} --cfg-scale {sampling.cfg_scale} --sampler-type {sampling.sampler_type} "
            f"--n-sample-per-cond {sampling.n_samples} --seed {sampling.base_seed}{lora_flags(self.adapters)}"
        )
        if self.adapters:  # leaves name them NAME.safetensors for that (the bare NAME works here only)
            command += "\nwith the studio's LoRA adapter files beside tree.yaml: " + "; ".join(placement_lines(self.adapters))
        return command

    def validate_batch(self, text, steps, cfg_scale, sampler_type, n_samples, base_seed):
        """Check a tree as generate.py would; returns (status, preview)."""
        try:
            sampling = self._batch_defaults(steps, cfg_scale, sampler_type, n_samples, base_seed)
            _, items, warnings = self._batch_plan(text, sampling)
        except ValueError as exc:
            return _message(exc), ""
        status = f"valid: {len(items)} items. Same files from:\n{self._command_line(sampling)}"
        return status + (f"\n{warnings}" if warnings else ""), preview_text(items, self.spec)

    def generate_batch(self, text, steps, cfg_scale, sampler_type, n_samples, base_seed, progress=gr.Progress()):
        """Validate, then generate the whole tree; returns status, preview, zip, result choices, run dir."""
        try:
            sampling = self._batch_defaults(steps, cfg_scale, sampler_type, n_samples, base_seed)
            run_dir, items, warnings = self._batch_plan(text, sampling)
        except ValueError as exc:
            return _message(exc), "", None, gr.Dropdown(choices=[], value=None), ""
        reporter = ProgressReporter(progress, len(items))
        with counting_denoiser_calls(self.loaded, reporter.calls):
            records = self._generate(items, run_dir, self.settings.batch_size, reporter)
        archive = zip_folder(run_dir, self.tmp_dir, run_dir / f"batch-{run_dir.name}.zip")
        written = [item.relpath for item in items if records[item.relpath]["status"] != "nonfinite"]
        failed = len(items) - len(written)
        status = f"done: {len(written)} files" + (f"; {failed} came out NaN/Inf and were not written" if failed else "")
        status += f"\n{warnings}" if warnings else ""
        first = written[0] if written else None
        return status, preview_text(items, self.spec), str(archive), gr.Dropdown(choices=written, value=first), str(run_dir)

    def browse(self, relpath, run_dir):
        """One result of the last batch: its audio and manifest record."""
        if not relpath or not run_dir:
            return None, ""
        try:
            wav = confined(Path(run_dir) / relpath, self.tmp_dir)
        except ValueError as exc:
            raise _user_error(exc) from None
        record = load_records(Path(run_dir)).get(relpath, {})
        return str(wav), json.dumps(record, indent=1, sort_keys=True)

    def load_upload(self, path):
        """Put an uploaded YAML file into the editor (size-limited, UTF-8, from Gradio's upload folder only)."""
        if not path:
            return gr.Code()
        try:
            file = confined(path, self.tmp_dir)
            if file.stat().st_size > self.settings.max_upload_bytes:
                raise ValueError(f"the file is larger than the limit of {self.settings.max_upload_bytes:,} bytes")
            return file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise gr.Error("the file is not UTF-8 text", print_exception=False) from None
        except ValueError as exc:
            raise _user_error(exc) from None
