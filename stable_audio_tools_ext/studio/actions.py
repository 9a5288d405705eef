"""What the Gradio studio does, without Gradio: audition settings -> YAML -> work items -> files.

The studio promises that what a user hears is what ``generate.py`` produces for the same settings.
It keeps that promise by construction rather than by imitation: an audition is written as the YAML
leaf that the Export button hands out, validated and planned by the CLI's own ``tree.reader`` and
``tree.plan`` code, and generated and written by the CLI's own per-rank loop (through ``run.inprocess``,
which fine-tuning demos share: WAVs and manifest records exactly as a ``--clip-length`` run writes them).
The batch tab runs pasted trees through the same three steps.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console

from ..model.loading import LoadedModel
from ..model.spec import ModelSpec
from ..output.manifest import Record
from ..run import inprocess
from ..run.outputs import written_seconds
from ..run.views import output_tree
from ..tree.conditions import segment_problem
from ..tree.plan import WorkItem
from ..tree.sweeps import literal
from .adapters import StudioAdapter, placement_lines
from .files import confined
from .ranks import Runner

RANDOM_SEED = -1
RANDOM_SEED_RANGE = 2**32  # the range upstream's random seeds (and derived seeds) use
TREE_FILENAME = inprocess.DEFAULT_SOURCE  # the name a saved tree has, and its problems cite


@dataclass(frozen=True)
class Audition:
    """The Generate tab's settings: one prompt with its sampling parameters (and adapter strengths)."""

    prompt: str
    negative_prompt: str | None
    seconds_start: float
    seconds_total: float
    steps: int
    cfg_scale: float
    sampler_type: str
    lora: tuple[tuple[StudioAdapter, float], ...] = ()  # the studio's adapters with the page's strengths


def resolve_seed(seed: float | int | None) -> int:
    """The seed to use: ``-1`` (or empty) draws a random one in [0, 2**32); others must be integers >= 0."""
    if seed is None or seed == RANDOM_SEED:
        return secrets.randbelow(RANDOM_SEED_RANGE)
    if float(seed) != int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, or -1 for a random seed; got {seed}")
    return int(seed)


def leaf_path(name: str) -> tuple[str, ...]:
    """``"music/drums/kick"`` -> its segments; each must be usable as a file or folder name."""
    segments = tuple(name.strip().strip("/").split("/"))
    for segment in segments:
        problem = segment_problem(segment)
        if problem:
            raise ValueError(f"leaf name {name!r}: {problem}")
    return segments


def audition_tree(audition: Audition, seed: int, variations: int, name: str = "audition") -> dict[str, Any]:
    """The condition tree for ``variations`` clips of ``audition`` with seeds ``seed, seed+1, ...``.

    Every field is written out, none left to command-line defaults, so the tree means the same to
    ``generate.py`` whatever flags it is run with (besides the model, ``--clip-length`` and the
    sigma range, which leaves cannot set): with adapters, ``lora`` and ``lora_strength`` too, so
    ``--lora`` does not matter either. The prompts are written as literal text: a brace typed in
    the page is doubled, since a tree's prompts are templates.
    """
    leaf: dict[str, Any] = {"prompt": literal(audition.prompt)}
    if audition.negative_prompt:
        leaf["negative_prompt"] = literal(audition.negative_prompt)
    leaf.update(
        seconds_start=float(audition.seconds_start),
        seconds_total=float(audition.seconds_total),
        seed=seed,
        n_samples=variations,
        steps=int(audition.steps),
        cfg_scale=float(audition.cfg_scale),
        sampler_type=audition.sampler_type,
    )
    if audition.lora:  # one value as such, several as lists (both are what the reader takes)
        files, strengths = [a.file_name for a, _ in audition.lora], [float(s) for _, s in audition.lora]
        leaf.update(lora=files if len(files) > 1 else files[0], lora_strength=strengths if len(files) > 1 else strengths[0])
    tree: dict[str, Any] = leaf
    for segment in reversed(leaf_path(name)):
        tree = {segment: tree}
    return tree


def model_flags(loaded: LoadedModel) -> str:
    """The ``generate.py`` flags that select this model, revision and precision (all of which change the audio)."""
    spec, request = loaded.spec, loaded.spec.request
    if request.ckpt_path is None:
        flags = f"--pretrained-name {spec.source} --revision {spec.base_revision}"
    else:
        flags = f"--model-config {request.model_config} --ckpt-path {request.ckpt_path}"
        flags += f" --weights {request.weights}" if request.weights else ""
    flags += f" --pretransform-ckpt-path {request.pretransform_ckpt_path}" if request.pretransform_ckpt_path else ""
    return f"{flags} --precision {loaded.precision}"


def tree_yaml(tree: dict[str, Any], loaded: LoadedModel, adapters: Sequence[StudioAdapter] = ()) -> str:
    """YAML text for ``generate.py --cond-yaml-path``, headed by the command that reproduces the audio
    and, when the tree's leaves name ``adapters``, the files that must lie beside it."""
    header = (
        "# Exported from the Stable Audio studio. The same audio, as files <leaf>_item-<k>.wav:\n"
        f"#   python generate.py --cond-yaml-path {TREE_FILENAME} --output-dir OUT --clip-length \\\n"
        f"#     {model_flags(loaded)}\n"
        "# (leave --sigma-min/--sigma-max, --format and --normalize at their defaults)\n"
    )
    if adapters:
        header += "# with the studio's LoRA adapter files beside this file, under these names (the content counts: sha256):\n"
        header += "".join(f"#   {line}\n" for line in placement_lines(adapters))
    return header + yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=1000)


def write_tree(text: str, run_dir: Path, tmp_dir: Path) -> Path:
    """Save a tree where its run's results go, so a results zip carries the tree that made it.

    ``run_dir`` must still lie inside ``tmp_dir`` (``OutsideTmpDirError`` if it was swapped for a
    link), and the file must be new: exclusive creation never follows a link left in its place.
    """
    path = confined(run_dir, tmp_dir) / TREE_FILENAME
    with open(path, "x", encoding="utf-8") as handle:
        handle.write(text)
    return path


def preview_text(items: Sequence[WorkItem], spec: ModelSpec, output_label: str = "results") -> str:
    """Item count, audio seconds and the output tree of a plan, as plain text."""
    seconds = sum(written_seconds(item, spec.geometry, clip_length=True) for item in items)
    console = Console(file=io.StringIO(), width=100, color_system=None, highlight=False)
    console.print(f"{len(items)} items, {seconds:.1f} s of audio")
    console.print(output_tree(Path(output_label), items))
    return console.file.getvalue()


def generate_items(
    runner: Runner,
    items: Sequence[WorkItem],
    output_dir: Path,
    tmp_dir: Path,
    batch_size: int,
    on_advance: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Record]:
    """Generate ``items`` with ``runner`` (this process, or every rank) into ``output_dir``, inside ``tmp_dir``.

    Checked before anything is written (``OutsideTmpDirError`` if the folder was swapped for a link).
    """
    return runner.generate(items, confined(output_dir, tmp_dir), batch_size, on_advance)


@contextmanager
def counting_denoiser_calls(loaded: LoadedModel, on_call: Callable[[int], None]) -> Iterator[None]:
    """Report each forward pass of the denoiser while the block runs (a progress signal inside a batch).

    A forward hook observes the sampler loop without changing the engine; the app runs one
    generation at a time, so the count belongs to the generation in flight.
    """
    calls = 0

    def hook(module: Any, args: Any, output: Any) -> None:
        nonlocal calls
        calls += 1
        on_call(calls)

    handle = loaded.model.model.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def write_spectrogram(wav_path: Path, png_path: Path) -> Path:
    """A log-magnitude spectrogram of the file's mono mix, as a small PNG for the results view."""
    import soundfile as sf
    from matplotlib.figure import Figure  # the object API: no pyplot global state, safe across threads

    samples, sample_rate = sf.read(wav_path, dtype="float32", always_2d=True)
    figure = Figure(figsize=(6.4, 2.4), dpi=80, layout="constrained")
    axes = figure.add_subplot()
    mono = samples.mean(axis=1)
    nfft = min(1024, 1 << max(4, len(mono).bit_length() - 1))  # short clips get a shorter window
    with np.errstate(divide="ignore"):  # log of an all-zero (silent) clip
        axes.specgram(mono, NFFT=nfft, Fs=sample_rate, noverlap=nfft // 2, cmap="magma")
    axes.set_xlabel("time (s)")
    axes.set_ylabel("frequency (Hz)")
    figure.savefig(png_path)
    return png_path
