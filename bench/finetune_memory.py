"""What fine-tuning Stable Audio Open 1.0 needs on a GPU: peak memory and step time per precision, batch and recipe.

    # on a CUDA machine (see docs/BENCHMARKS.md for the device command and its wheels)
    PYTHONPATH=. python bench/finetune_memory.py --device cuda --output finetune_memory.json
    # the same code path on the CPU with the tiny model: every kind of row once, 2 steps, batch 1 (a smoke run)
    PYTHONPATH=. .venv/bin/python bench/finetune_memory.py --tiny
    # LoRA against full fine-tuning on the CPU, one thread (the commands measured: docs/BENCHMARKS.md "LoRA vs full fine-tuning")
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/finetune_memory.py --small --lora-ranks 4,16,64 --steps 16

It builds SAO 1.0's real architecture with random weights (``bench/sao_models.py``: DiT 1536 wide,
24 layers; VAE 128 channels; the T5 conditioner gets a t5-base-sized encoder with random weights, see
``use_t5_base_size``), wraps it as ``finetune.py train`` does (``finetune.training.training_wrapper``:
stable-audio-tools' own ``create_training_wrapper_from_config`` with the config's ``training``
section: AdamW, InverseLR, EMA), and runs a few optimisation steps through PyTorch Lightning's
``Trainer`` on synthetic batches shaped like stable-audio-tools' dataloader output (its
``collation_fn``): full 47.55 s stereo windows at 44.1 kHz, or with ``pre_encoded`` (the training
section's switch) latents of 64 x 1024.

Three recipes, one code path:
* full fine-tuning (every DiT and conditioner weight, EMA on, AdamW), per precision and batch;
* LoRA (``--lora-ranks``): the model built for a rank gets ``finetune.lora_training.add_trainable_adapters``
  and the wrapper is built with ``lora=True`` (EMA off), exactly as ``finetune.py train --lora-rank``;
  the optimizer covers every parameter but only the adapters have gradients, hence state;
* full fine-tuning with bitsandbytes' 8-bit AdamW (``--adamw8bit-batch-sizes``): the config's
  optimizer ``type`` becomes ``AdamW8bit`` (same lr, betas, weight decay) and upstream's factory,
  which looks the type up on ``torch.optim``, finds bitsandbytes' class there for that row.
  bitsandbytes is an optional extra (``pip install -e .[bnb]``, GPU only): without it the row says
  "bitsandbytes not installed".

Per configuration it records the peaks of ``torch.cuda.max_memory_allocated`` and
``max_memory_reserved`` (reset per configuration), the median wall and CPU time of a step after a
warm-up step (from the start of ``training_step`` to the end of the optimiser and EMA update; data
loading excluded; CPU time is this process's, every thread: on a CPU that other processes share,
compare it, with ``OMP_NUM_THREADS=1``, rather than wall time),
the optimiser steps actually applied (fp16's GradScaler skips steps whose gradients overflow), the
parameters trained and, with ``--checkpoint-sizes`` (on for ``--tiny``/``--small``), the size of the
checkpoint Lightning writes after the steps (LoRA: through ``LoraCheckpoints``, adapters and training
state only) and of a LoRA run's adapter file (``export_lora``). Memory and speed do not depend on the
weights' values, so random weights measure what the real checkpoint needs. An OOM is recorded, not raised.

``--small`` is a CPU mode for recipe comparisons: the tiny model with a DiT 768 wide and 8 deep
(SAO 1.0's is 1536 x 24; the tiny one, 64 x 2, is narrower than a rank-64 adapter).

stable-audio-tools' training modules import wandb, auraloss, ema-pytorch, descript-audiotools and
webdataset at import time; a GPU image without them needs them as wheels (the list that worked on
the H100 image is in docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import statistics
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.sao_models import full_size_config, use_offline_tiny_hub
from stable_audio_tools_ext.finetune.lora_settings import LoraSettings
from stable_audio_tools_ext.finetune.upstream import encode_text_as_in_generation, use_torch_compatible_inverse_lr

GIB = 1024**3
MIB = 1024**2
SAMPLE_RATE = 44100
LATENT_CHANNELS = 64
DOWNSAMPLING = 2048
FULL_WINDOW = 2097152  # SAO 1.0's sample_size: 47.55 s, 1024 latent frames
TINY_WINDOW = 131072  # 64 latent frames: a CPU step in well under a second
PROMPT = "128 BPM tech house drum loop with a deep kick"
# t5-base's encoder (what SAO 1.0's conditioner loads): the tiny cache's T5 has one layer and a small vocab.
T5_BASE = {"vocab_size": 32128, "d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_heads": 12}
# --small: a DiT wide enough for rank-4 to rank-64 adapters to be low rank (a multiple of 768, so the
# prompt tokens need no projection, as in SAO 1.0), small enough for full fine-tuning on a 2-core CPU.
SMALL_DIT = {"embed_dim": 768, "depth": 8, "num_heads": 12, "project_cond_tokens": False}
ADAMW = "AdamW"  # SAO 1.0's training section
ADAMW_8BIT = "AdamW8bit"  # bitsandbytes.optim.AdamW8bit, same arguments
# --tiny and --small: every kind of row once, precision 32, on the CPU in seconds.
CPU_DEFAULTS = {
    "precisions": ["32"], "batch_sizes": [1], "latent_precisions": ["32"], "latent_batch_sizes": [1],
    "lora_ranks": [16], "lora_precisions": ["32"], "lora_batch_sizes": [1], "lora_latent_batch_sizes": [1],
    "adamw8bit_precision": "32", "adamw8bit_batch_sizes": [1], "steps": 2, "checkpoint_sizes": True,
}  # fmt: skip


@dataclass
class Outcome:
    """One configuration's measurement (``status`` is ``ok``, ``OOM``, or why it did not run)."""

    precision: str
    batch_size: int
    inputs: str  # "audio" or "latents"
    lora_rank: int | None = None  # None: full fine-tuning
    optimizer: str = ADAMW
    status: str = "not run"
    trainable_parameters: int | None = None
    peak_allocated_gib: float | None = None
    peak_reserved_gib: float | None = None
    allocated_at_start_gib: float | None = None
    optimizer_state_gib: float | None = None
    median_step_s: float | None = None
    median_step_cpu_s: float | None = None  # process time: what a step costs on a CPU that other processes share
    step_times_s: list[float] = field(default_factory=list)
    step_cpu_s: list[float] = field(default_factory=list)
    optimizer_steps_applied: int | None = None
    checkpoint_mib: float | None = None
    adapter_file_mib: float | None = None
    error: str | None = None

    @property
    def recipe(self) -> str:
        """``full``, ``LoRA rank 16`` or ``full, AdamW8bit``: the table's first column and the parameter report's key."""
        if self.lora_rank is not None:
            return f"LoRA rank {self.lora_rank}"
        return "full" if self.optimizer == ADAMW else f"full, {self.optimizer}"


def model_config(size: str) -> dict:
    """SAO 1.0's config: the tiny widths (short window), tiny with ``SMALL_DIT``, or the published ones (full window)."""
    from stable_audio_tools_ext.model.tiny import tiny_model_config

    if size == "full":
        return full_size_config(tiny_model_config(FULL_WINDOW))
    config = tiny_model_config(TINY_WINDOW)
    if size == "small":
        config["model"]["diffusion"]["config"].update(SMALL_DIT)
    return config


def use_t5_base_size(model) -> None:
    """Give the prompt conditioner an encoder of t5-base's size (random weights), frozen in fp16.

    The conditioner loads ``t5-base`` from the offline cache in its constructor, and the cache holds a
    one-layer T5; t5-base's 12 layers are what the real model runs on every step. The encoder is
    built and stored exactly as ``T5Conditioner.__init__`` stores the one it loads (no grad, eval,
    fp16, outside the registered modules).
    """
    import torch
    from transformers import T5Config, T5EncoderModel

    conditioner = model.conditioner.conditioners["prompt"]
    encoder = T5EncoderModel(T5Config(**T5_BASE)).train(False).requires_grad_(False).to(torch.float16)
    conditioner.__dict__["model"] = encoder


def count(parameters, trainable: bool | None = None) -> int:
    """Number of elements of ``parameters`` (only those with ``requires_grad == trainable`` if given)."""
    return sum(p.numel() for p in parameters if trainable is None or p.requires_grad == trainable)


def parameter_report(wrapper) -> dict[str, int]:
    """What the training wrapper holds and trains, by part (counts of parameters; a LoRA row's DiT and
    conditioner totals include their adapters).

    The optimiser is built over all of ``wrapper.diffusion.parameters()``; frozen ones get no
    gradient and so no optimiser state, which is what the trainable counts predict and
    ``Outcome.optimizer_state_gib`` confirms. The T5 encoder is not a registered module.
    """
    diffusion = wrapper.diffusion
    t5 = diffusion.conditioner.conditioners["prompt"].model
    report = {
        "dit_total": count(diffusion.model.parameters()),
        "dit_trainable": count(diffusion.model.parameters(), True),
        "conditioner_registered_total": count(diffusion.conditioner.parameters()),
        "conditioner_registered_trainable": count(diffusion.conditioner.parameters(), True),
        "t5_encoder_total": count(t5.parameters()),
        "t5_encoder_trainable": count(t5.parameters(), True),
        "vae_total": count(diffusion.pretransform.parameters()),
        "vae_trainable": count(diffusion.pretransform.parameters(), True),
        "optimizer_covers_trainable": count(diffusion.parameters(), True),
    }
    report["ema_total"] = count(wrapper.diffusion_ema.ema_model.parameters()) if wrapper.diffusion_ema else 0
    return report


class SyntheticClips:
    """A map-style dataset of what stable-audio-tools' datasets yield: ``(signal, metadata)``.

    ``signal`` is stereo audio ``(2, window)`` or, for pre-encoded training, latents
    ``(64, window / 2048)``. ``padding_mask`` is a one-element list holding the mask (what
    pre-encoded datasets already return; DESIGN.md's workaround for audio datasets).
    """

    def __init__(self, length: int, window: int, latents: bool):
        self.length, self.window, self.latents = length, window, latents

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        import torch

        generator = torch.Generator().manual_seed(index)
        frames = self.window // DOWNSAMPLING
        if self.latents:
            signal, mask_length = torch.randn(LATENT_CHANNELS, frames, generator=generator), frames
        else:
            signal, mask_length = 0.1 * torch.randn(2, self.window, generator=generator), self.window
        seconds = self.window / SAMPLE_RATE
        return signal, {
            "prompt": PROMPT,
            "seconds_start": 0,
            "seconds_total": int(seconds),
            "padding_mask": [torch.ones(mask_length)],
        }


def step_timer_callback(device: str, outcome: Outcome):
    """A Lightning callback recording each step's wall and CPU time (every thread of this process) and the memory
    held when training starts."""
    import pytorch_lightning as pl
    import torch

    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    class StepTimer(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            if device.startswith("cuda"):
                outcome.allocated_at_start_gib = torch.cuda.memory_allocated() / GIB

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            synchronize()
            self.started, self.cpu_started = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            synchronize()
            outcome.step_times_s.append(time.perf_counter() - self.started)
            outcome.step_cpu_s.append(time.process_time() - self.cpu_started)

        def on_train_end(self, trainer, pl_module):
            optimizer = trainer.optimizers[0]
            states = list(optimizer.state.values())
            outcome.optimizer_state_gib = sum(
                t.numel() * t.element_size() for s in states for t in s.values() if torch.is_tensor(t) and t.ndim
            ) / GIB
            outcome.optimizer_steps_applied = max((int(s["step"]) for s in states if "step" in s), default=0)

    return StepTimer()


def lora_settings(outcome: Outcome) -> LoraSettings | None:
    """What ``finetune.py train --lora-rank R`` trains (alpha defaults to the rank; every layer), or None for full rows."""
    return None if outcome.lora_rank is None else LoraSettings(outcome.lora_rank, float(outcome.lora_rank))


def build_model(config: dict, size: str, settings: LoraSettings | None):
    """The network a recipe trains, random weights, built as ``finetune.py train`` builds it: text encoders outside
    autocast, and for LoRA the model frozen with trainable adapters added (``add_trainable_adapters``).

    Each LoRA rank needs a model of its own (adapters cannot be taken off, and the VAE's weight norm
    makes a model impossible to deep-copy); the rows of one recipe share it.
    """
    import torch
    from stable_audio_tools.models.factory import create_model_from_config

    from stable_audio_tools_ext.finetune.lora_training import add_trainable_adapters

    torch.manual_seed(0)
    model = create_model_from_config(config)
    if size == "full":
        use_t5_base_size(model)
    encode_text_as_in_generation(model)
    if settings is not None:
        add_trainable_adapters(model, settings)
    return model


def with_optimizer(config: dict, optimizer: str) -> dict:
    """``config`` with its diffusion optimizer's ``type`` replaced (arguments kept)."""
    if optimizer == ADAMW:
        return config
    config = copy.deepcopy(config)
    config["training"]["optimizer_configs"]["diffusion"]["optimizer"]["type"] = optimizer
    return config


def adamw_8bit_class():
    """bitsandbytes' 8-bit AdamW, or None when the optional extra is not installed."""
    try:
        import bitsandbytes
    except ImportError:
        return None
    return bitsandbytes.optim.AdamW8bit


@contextmanager
def optimizer_known_to_upstream(optimizer: str) -> Iterator[None]:
    """While inside, upstream's ``create_optimizer_from_config`` (``getattr(torch.optim, type)``) finds ``AdamW8bit``."""
    import torch

    if optimizer == ADAMW:
        yield
        return
    torch.optim.AdamW8bit = adamw_8bit_class()
    try:
        yield
    finally:
        del torch.optim.AdamW8bit


def save_checkpoint(trainer, folder: Path, settings: LoraSettings | None) -> tuple[float, float | None]:
    """The sizes (MiB) of the checkpoint Lightning writes now and, for LoRA, of the adapter file the run writes beside it."""
    from stable_audio_tools_ext.finetune.lora_training import export_lora
    from stable_audio_tools_ext.finetune.run_folder import adapter_file

    checkpoint = folder / "last.ckpt"
    trainer.save_checkpoint(checkpoint)
    adapter = None
    if settings is not None:
        export_lora(checkpoint, adapter_file(checkpoint))
        adapter = adapter_file(checkpoint).stat().st_size / MIB
    return checkpoint.stat().st_size / MIB, adapter


def train_steps(config: dict, model, outcome: Outcome, device: str, steps: int, checkpoint: bool) -> dict[str, int]:
    """Run ``steps`` optimisation steps of the wrapper ``finetune.py train`` builds around ``model`` (``build_model`` for
    the outcome's recipe); fill ``outcome``; return its parameter report."""
    import pytorch_lightning as pl
    import torch
    from stable_audio_tools.data.dataset import collation_fn

    from stable_audio_tools_ext.finetune.lora_training import LoraCheckpoints
    from stable_audio_tools_ext.finetune.training import training_wrapper

    settings = lora_settings(outcome)
    callbacks = [step_timer_callback(device, outcome)]
    if settings is not None:
        callbacks.append(LoraCheckpoints(settings))
    latents = outcome.inputs == "latents"
    wrapper = training_wrapper(with_optimizer(config, outcome.optimizer), model, latents, seed=0, rank=0, start_step=0,
                               lora=settings is not None)  # fmt: skip
    report = parameter_report(wrapper)
    outcome.trainable_parameters = report["optimizer_covers_trainable"]
    clips = SyntheticClips(steps * outcome.batch_size, config["sample_size"], latents)
    loader = torch.utils.data.DataLoader(clips, batch_size=outcome.batch_size, collate_fn=collation_fn)
    with tempfile.TemporaryDirectory() as root, optimizer_known_to_upstream(outcome.optimizer):
        trainer = pl.Trainer(
            accelerator="gpu" if device.startswith("cuda") else "cpu",
            devices=1,
            precision=outcome.precision,
            max_steps=steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=root,
            callbacks=callbacks,
        )
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        trainer.fit(wrapper, loader)
        if device.startswith("cuda"):
            outcome.peak_allocated_gib = torch.cuda.max_memory_allocated() / GIB
            outcome.peak_reserved_gib = torch.cuda.max_memory_reserved() / GIB
        if checkpoint:
            outcome.checkpoint_mib, outcome.adapter_file_mib = save_checkpoint(trainer, Path(root), settings)
    if len(outcome.step_times_s) > 1:
        outcome.median_step_s = statistics.median(outcome.step_times_s[1:])
        outcome.median_step_cpu_s = statistics.median(outcome.step_cpu_s[1:])
    outcome.status = "ok"
    return report


def measure(config: dict, model, outcome: Outcome, device: str, steps: int, checkpoint: bool) -> dict[str, int] | None:
    """``train_steps``, with an out-of-memory recorded as ``OOM`` (other failures as ``error``), the GPU emptied afterwards."""
    import torch

    report = None
    try:
        report = train_steps(config, model, outcome, device, steps, checkpoint)
    except torch.cuda.OutOfMemoryError as error:
        outcome.status = "OOM"
        outcome.error = str(error).splitlines()[0]
        if device.startswith("cuda"):
            outcome.peak_allocated_gib = torch.cuda.max_memory_allocated() / GIB
            outcome.peak_reserved_gib = torch.cuda.max_memory_reserved() / GIB
    except Exception as error:  # one broken configuration must not cost the others' device time
        traceback.print_exc()
        outcome.status, outcome.error = "error", f"{type(error).__name__}: {error}"
    # Lightning's teardown has moved the wrapper and optimiser state back to the CPU (after an
    # exception too); what is left on the GPU is the unregistered T5 encoder, which every step uses.
    # The last step's gradients stay on the parameters: no row may start with another's.
    model.zero_grad(set_to_none=True)
    release_memory(device)
    return report


def release_memory(device: str) -> None:
    """Free what nothing references any more, and give the GPU's cached blocks back (each row's peaks start from this)."""
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def plan(args: argparse.Namespace) -> list[Outcome]:
    """The configurations: full fine-tuning in the order of ``--precisions`` (latents after audio), with 8-bit
    AdamW after it (same model), then LoRA per rank (the run may stop at its time limit)."""
    outcomes = []
    for precision in dict.fromkeys(args.precisions + args.latent_precisions):
        if precision in args.precisions:
            outcomes += [Outcome(precision, batch, "audio") for batch in args.batch_sizes]
        if precision in args.latent_precisions:
            outcomes += [Outcome(precision, batch, "latents") for batch in args.latent_batch_sizes]
    outcomes += [Outcome(args.adamw8bit_precision, batch, "audio", optimizer=ADAMW_8BIT) for batch in args.adamw8bit_batch_sizes]
    for rank in args.lora_ranks:
        for precision in args.lora_precisions:
            outcomes += [Outcome(precision, batch, "audio", rank) for batch in args.lora_batch_sizes]
            outcomes += [Outcome(precision, batch, "latents", rank) for batch in args.lora_latent_batch_sizes]
    return outcomes


def why_not_run(outcome: Outcome, device: str) -> str | None:
    """Why a planned row cannot run on this machine (an 8-bit AdamW row without bitsandbytes or a GPU), or None."""
    if outcome.optimizer != ADAMW_8BIT:
        return None
    if adamw_8bit_class() is None:
        return "bitsandbytes not installed"
    if not device.startswith("cuda"):
        return "not run (bitsandbytes' 8-bit AdamW needs a CUDA device)"
    return None


def describe_machine(device: str) -> dict[str, Any]:
    """Versions and the device, as the benchmark table names them."""
    import pytorch_lightning as pl
    import stable_audio_tools
    import torch
    import transformers

    machine = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "pytorch_lightning": pl.__version__,
        "transformers": transformers.__version__,
        "stable_audio_tools": getattr(stable_audio_tools, "__version__", "0.0.19"),
        "device": "CPU",
    }
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(0)
        machine.update(device=properties.name, cuda=torch.version.cuda, total_memory_gib=properties.total_memory / GIB)
    return machine


def table(outcomes: list[Outcome]) -> str:
    """The results as a Markdown table."""

    def number(value: float | None, digits: int = 1) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    lines = [
        "| recipe | inputs | precision | batch | trainable parameters | peak allocated GiB | peak reserved GiB | held at start GiB "
        "| optimizer state GiB | median step s | median step CPU s | steps applied | checkpoint MiB | adapter file MiB | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        trainable = "" if o.trainable_parameters is None else f"{o.trainable_parameters:,}"
        applied = "" if o.optimizer_steps_applied is None else f"{o.optimizer_steps_applied}/{len(o.step_times_s)}"
        lines.append(
            f"| {o.recipe} | {o.inputs} | {o.precision} | {o.batch_size} | {trainable} | {number(o.peak_allocated_gib)} | "
            f"{number(o.peak_reserved_gib)} | {number(o.allocated_at_start_gib)} | {number(o.optimizer_state_gib, 4)} | "
            f"{number(o.median_step_s, 3)} | {number(o.median_step_cpu_s, 3)} | {applied} | {number(o.checkpoint_mib, 2)} | {number(o.adapter_file_mib, 2)} | {o.status} |"
        )
    return "\n".join(lines)


def write_results(path: Path, machine: dict, parameters: dict, outcomes: list[Outcome]) -> None:
    """Write everything measured so far (after every configuration, so a cut-off run keeps its results)."""
    from stable_audio_tools_ext.output.atomic import atomic_write_text

    document = {"machine": machine, "parameters": parameters, "results": [asdict(o) | {"recipe": o.recipe} for o in outcomes]}
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")


def run(args: argparse.Namespace) -> list[Outcome]:
    """Train each planned configuration on its recipe's model (built when the recipe changes); print and write the results."""
    use_torch_compatible_inverse_lr()
    config = model_config(args.size)
    machine = describe_machine(args.device) | {"model": args.size}
    print(json.dumps(machine), flush=True)
    outcomes, parameters, started = plan(args), {}, time.monotonic()
    too_big: set[tuple[str, str, str]] = set()
    built: tuple[int | None, Any] | None = None  # (LoRA rank or None, its model)
    for outcome in outcomes:
        key = (outcome.recipe, outcome.inputs, outcome.precision)
        skip = why_not_run(outcome, args.device)
        if skip:
            outcome.status = skip
        elif key in too_big:
            outcome.status = "not run (a smaller batch ran out of memory)"
        elif args.time_limit_s and time.monotonic() - started > args.time_limit_s:
            outcome.status = "not run (time limit)"
        else:
            if built is None or built[0] != outcome.lora_rank:
                built = None  # the previous recipe's model (and its T5 encoder, on the GPU) goes first
                release_memory(args.device)
                built = (outcome.lora_rank, build_model(config, args.size, lora_settings(outcome)))
            report = measure(config, built[1], outcome, args.device, args.steps, args.checkpoint_sizes)
            if report is not None:
                parameters[outcome.recipe] = report
            if outcome.status == "OOM":
                too_big.add(key)
            print(json.dumps(asdict(outcome)), flush=True)
        if args.output:
            write_results(args.output, machine, parameters, outcomes)
    print(json.dumps({"parameters": parameters}))
    print(table(outcomes))
    return outcomes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def names(text: str) -> list[str]:
        return [part for part in text.split(",") if part]

    def numbers(text: str) -> list[int]:
        return [int(part) for part in names(text)]

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", dest="size", action="store_const", const="tiny",
                      help="the tiny model (DiT 64 x 2), 64-frame window; defaults: every kind of row once, 2 steps, batch 1, precision 32")  # fmt: skip
    size.add_argument("--small", dest="size", action="store_const", const="small",
                      help="as --tiny with a DiT 768 wide and 8 deep, so that LoRA ranks up to 64 are low rank (CPU comparisons)")  # fmt: skip
    parser.set_defaults(size="full")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precisions", type=names, default=["bf16-mixed", "16-mixed", "32"], help="Lightning precisions (audio)")
    parser.add_argument("--batch-sizes", type=numbers, default=[1, 2, 4, 8], help="batch sizes with audio input")
    parser.add_argument("--latent-precisions", type=names, default=["bf16-mixed"], help="precisions with pre-encoded latents ('' for none)")
    parser.add_argument("--latent-batch-sizes", type=numbers, default=[1, 2, 4, 8, 16], help="batch sizes with pre-encoded latents")
    parser.add_argument("--lora-ranks", type=numbers, default=[16, 64], help="LoRA rows: adapter ranks ('' for none)")
    parser.add_argument("--lora-precisions", type=names, default=["bf16-mixed"], help="LoRA rows: precisions")
    parser.add_argument("--lora-batch-sizes", type=numbers, default=[1, 4, 8], help="LoRA rows: batch sizes with audio input")
    parser.add_argument("--lora-latent-batch-sizes", type=numbers, default=[1, 4, 8], help="LoRA rows: batch sizes with latents")
    parser.add_argument("--adamw8bit-precision", default="bf16-mixed", help="full fine-tuning with 8-bit AdamW: precision")
    parser.add_argument("--adamw8bit-batch-sizes", type=numbers, default=[8], help="full fine-tuning with 8-bit AdamW: batch sizes with audio ('' for none)")
    parser.add_argument("--steps", type=int, default=4, help="optimisation steps per configuration (the first is the warm-up)")
    parser.add_argument("--checkpoint-sizes", action=argparse.BooleanOptionalAction, default=False,
                        help="save a checkpoint after each configuration's steps and record its size (default: on for --tiny and --small)")  # fmt: skip
    parser.add_argument("--time-limit-s", type=float, default=0, help="start no new configuration after this many seconds (0: no limit)")
    parser.add_argument("--output", type=Path, help="JSON file for the results (rewritten after each configuration)")
    known, _ = parser.parse_known_args(argv)
    if known.size != "full":
        parser.set_defaults(**CPU_DEFAULTS)
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is the warm-up)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    use_offline_tiny_hub()
    outcomes = run(args)
    return 1 if any(o.status == "error" for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
