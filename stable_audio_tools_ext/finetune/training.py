"""``finetune.py train``: stable-audio-tools' own training stack, driven the way ``generate.py`` runs jobs.

The pieces are upstream's, as its ``train.py`` wires them: the model factory, the training wrapper
built from the model config's ``training`` section (optimizer, scheduler, EMA), the dataloaders from
the dataset configs, and the PyTorch Lightning ``Trainer`` it pins. Around them this module adds what
``train.py`` leaves to the user:

* weights from a hub model (``--pretrained-name``, through ``generate.py``'s loader, revision and
  token handling) or any checkpoint, loaded strictly: upstream's ``copy_state_dict`` copies nothing
  from a wrapped Lightning checkpoint (keys ``diffusion.*``) and so silently trains the base model;
* a run folder (``run_folder``): rerunning the same command continues from its last checkpoint
  (step, optimizer, EMA, scheduler), a finished run says so and exits, ``--restart`` starts over;
* every input checked before the model is built (exit code 2, one line each), and a clear line for
  a first batch that does not fit on the GPU;
* a checkpoint at the step training ends on, atomic checkpoint files, and ``--demo-yaml`` demos.

Launching: one process trains on ``--devices`` of this node; with several, Lightning starts one
process per device itself (DDP), as upstream.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model.spec import MODEL_CONFIG_NAME, ModelLoadError, ModelRequest
from ..output.atomic import remove_partial_files
from ..run.exits import EXIT_INTERRUPTED, EXIT_OK
from ..tree.conditions import ConditionTreeError
from .lora_settings import LoraSettings, check_lora_run, run_info
from .run_folder import TrainingRun, adapter_file
from .weights import FinetuneInputError, ModelChoice, choose_model

LIGHTNING_PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
LOGGERS = ("none", "csv", "tensorboard", "wandb")
SEED_STEP_STRIDE = 1_000_003  # a resumed segment's seeds: far from any rank offset (see ``segment_seed``)


@dataclass(frozen=True)
class TrainRequest:
    """What ``finetune.py train`` was asked to do, as given on the command line."""

    dataset_config: Path
    val_dataset_config: Path | None
    model: ModelRequest
    run: TrainingRun
    name: str
    precision: str
    batch_size: int
    accum_batches: int
    num_workers: int
    checkpoint_every: int
    val_every: int
    max_steps: int | None
    devices: str
    num_nodes: int
    seed: int
    gradient_clip_val: float
    logger: str
    restart: bool
    demo_yaml: Path | None
    demo_batch_size: int
    keep_checkpoints: int = 0  # 0: keep every checkpoint, as upstream
    check: bool = False  # only check the inputs (the SLURM script's first step)
    lora: LoraSettings | None = None  # train adapters on a frozen base instead of every weight (lora_training)


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """The key path where two JSON values first differ (``model.diffusion.config.depth``), or ``<root>``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key, ...) != b.get(key, ...):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
    return path or "<root>"


def check_run(request: TrainRequest, choice: ModelChoice) -> tuple[int, Path] | None:
    """The checkpoint to continue from (``None``: a new run), after checking the run trains this config (and adapters)."""
    config = choice.config
    if request.lora is not None:
        if request.model.pretrained_name and request.model.model_config:
            raise FinetuneInputError("--lora-rank adapts the hub model as published: --model-config with --pretrained-name "
                                     "is for full fine-tuning (generation could not load that base)")  # fmt: skip
        run_info(request.lora, choice)  # a LoRA run needs starting weights generation can name
    if not isinstance(config.get("training"), dict):
        raise FinetuneInputError(
            f"the model config has no 'training' section (optimizer, learning rate, EMA): stable-audio-tools' training "
            f"wrapper reads it; copy one from Stable Audio Open 1.0's {MODEL_CONFIG_NAME}"
        )
    if request.restart:
        return None
    saved = request.run.saved_config()
    if saved is not None and saved != config:
        raise FinetuneInputError(
            f"{request.run.folder} trained another model config (first difference: {_first_difference(saved, config)}); "
            "give the same one to continue, --restart to start over (the old run is kept aside), or another --name"
        )
    check_lora_run(request.run, request.lora, choice)
    return request.run.last_checkpoint()


def default_workers() -> int:
    """Upstream's default of 6 dataloader workers, or fewer when this process may use fewer cores (at least 1)."""
    return max(1, min(6, len(os.sched_getaffinity(0))))


def lightning_precision(requested: str, cuda: bool, bf16: bool) -> str:
    """``auto``: bf16-mixed on GPUs that have bfloat16, 16-mixed on older ones, 32 on the CPU."""
    if requested == "auto":
        return ("bf16-mixed" if bf16 else "16-mixed") if cuda else "32"
    if requested == "16-mixed" and not cuda:
        raise FinetuneInputError("--precision 16-mixed needs a GPU (Lightning has no float16 autocast on the CPU); use 32 or bf16-mixed")
    return requested


def segment_seed(seed: int, rank: int, start_step: int) -> int:
    """The seed of one rank for one stretch of training.

    Ranks differ (upstream adds the SLURM rank), and a run continued from step S does not replay the
    random numbers (noise, timesteps, crops) of its first S steps; within 32 bits, as Lightning needs.
    """
    return (seed + rank + SEED_STEP_STRIDE * start_step) % 2**32


def training_wrapper(config: dict[str, Any], model: Any, pre_encoded: bool, seed: int, rank: int, start_step: int,
                     lora: bool = False) -> Any:  # fmt: skip
    """stable-audio-tools' training wrapper for one rank and one stretch of training, built after seeding both.

    The wrapper's timestep sampler (``SobolEngine(scramble=True)``, used when the config names no
    ``timestep_sampler``, as SAO 1.0's does not) takes its scramble from the global generator while
    it is built, and its sequence starts over in every process. Seeded alike, every rank would draw
    the same timesteps (a step of 8 GPUs x batch 4 would see 4 distinct ones, not 32) and a resumed
    run would draw its first steps' again; ``segment_seed`` first gives each rank and each stretch
    its own timesteps, and leaves the global generator (noise, crops) seeded the same way.
    ``pre_encoded`` switches the wrapper to latents and ``lora`` switches its EMA off (an EMA copy
    of a frozen base would average nothing and cost a model's memory; upstream's LoRA training has
    none either); the run's own config (saved, embedded, compared) stays as given.
    """
    import pytorch_lightning as pl
    from stable_audio_tools.training.factory import create_training_wrapper_from_config

    pl.seed_everything(segment_seed(seed, rank, start_step), workers=True)
    training = {**config["training"], "pre_encoded": pre_encoded} | ({"use_ema": False} if lora else {})
    return create_training_wrapper_from_config({**config, "training": training}, model)


def _logger(kind: str, run: TrainingRun, name: str, start_step: int) -> Any:
    import pytorch_lightning as pl

    if kind == "csv":  # one folder per stretch: Lightning 2.1's CSV logger rewrites an existing metrics.csv
        return pl.loggers.CSVLogger(run.logs_dir, name="csv", version=f"from-step-{start_step}")
    if kind == "tensorboard":
        return pl.loggers.TensorBoardLogger(run.logs_dir, name="tensorboard", version="")
    if kind == "wandb":
        return pl.loggers.WandbLogger(project=name, save_dir=run.logs_dir)
    return False


def _device_count(devices: str, cuda: bool) -> int:
    """How many processes Lightning starts on this node for ``--devices`` (``auto`` and -1: every GPU, or 1 CPU)."""
    import torch

    if "," in devices:
        return len([part for part in devices.split(",") if part.strip()])
    try:
        count = int(devices)
    except ValueError:
        if devices != "auto":
            raise FinetuneInputError(f"--devices {devices!r}: expected a count, a comma list of GPU ids, or auto") from None
        count = -1
    if count < 0:
        return max(1, torch.cuda.device_count()) if cuda else 1
    if count == 0:
        raise FinetuneInputError("--devices 0: training needs at least one device")
    return count


def _placement(request: TrainRequest, cuda: bool) -> tuple[int, int, list[Any]]:
    """Devices per node, nodes, and the cluster environment Lightning must use.

    Under ``torchrun`` (the SLURM script's launcher, one per node) the processes already exist and
    torchrun's variables say where each one is: Lightning is told so explicitly, because inside a
    SLURM job it would otherwise read SLURM's task variables (one task per node) and refuse.
    ``--devices``/``--num-nodes`` then do not apply. Otherwise Lightning starts the processes itself.
    """
    from lightning_fabric.plugins.environments import TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        per_node = int(os.environ["LOCAL_WORLD_SIZE"])
        return per_node, int(os.environ["WORLD_SIZE"]) // per_node, [TorchElasticEnvironment()]
    return _device_count(request.devices, cuda), request.num_nodes, []


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _build_model(choice: ModelChoice, resuming: bool) -> tuple[Any, str]:
    """The network: with its starting weights, unless ``resuming`` from a checkpoint that has them all (a LoRA
    checkpoint has the adapters only: its run loads the base again)."""
    from ..model.loading import build_model, create_model

    if resuming or choice.spec is None:
        return create_model(choice.config), "random weights" if not resuming else "from the checkpoint"
    try:
        return build_model(choice.spec, choice.ckpt_flag)
    except ModelLoadError as exc:
        raise FinetuneInputError(str(exc)) from None


def train(request: TrainRequest) -> int:
    """Check everything, then train until ``--max-steps`` or a stop signal; the exit code."""
    choice = choose_model(request.model)
    last = check_run(request, choice)
    start_step = last[0] if last else 0
    if last and request.max_steps is not None and start_step >= request.max_steps:
        _say(f"{request.run.folder} is complete: its last checkpoint is at step {start_step} (--max-steps "
             f"{request.max_steps}): {last[1]}\na larger --max-steps continues it; --restart starts over")  # fmt: skip
        return EXIT_OK
    demo_items = None
    if request.demo_yaml is not None:
        from .demos import plan_demos

        try:
            demo_items = plan_demos(request.demo_yaml, choice.config)
        except ConditionTreeError as exc:
            raise FinetuneInputError(f"--demo-yaml: {exc}") from None
    if request.check:
        from .loaders import DatasetConfigError, read_dataset_config

        try:
            for path, flag in ((request.dataset_config, "--dataset-config"), (request.val_dataset_config, "--val-dataset-config")):
                if path is not None:
                    read_dataset_config(path, flag)
        except DatasetConfigError as exc:
            raise FinetuneInputError(str(exc)) from None
        state = f"continues from step {start_step}" if last else "starts"
        _say(f"inputs OK: {request.run.folder} {state} ({choice.description})")
        return EXIT_OK
    return _fit(request, choice, last, demo_items)


def _fit(request: TrainRequest, choice: ModelChoice, last: tuple[int, Path] | None, demo_items: list | None) -> int:
    import pytorch_lightning as pl
    import torch

    from ..run.signals import GracefulStop
    from .callbacks import (
        AtomicCheckpointIO,
        EmbedModelConfig,
        LinePerSteps,
        StepCheckpoints,
        StopOnSignal,
        ValidationLosses,
    )
    from .demos import CheckpointDemos
    from .loaders import DatasetConfigError, build_loader
    from .upstream import encode_text_as_in_generation, use_torch_compatible_inverse_lr

    cuda = torch.cuda.is_available()
    precision = lightning_precision(request.precision, cuda, cuda and torch.cuda.is_bf16_supported())
    devices, num_nodes, environment = _placement(request, cuda)
    ranks = devices * num_nodes
    start_step = last[0] if last else 0
    config = choice.config
    try:
        train_loader = build_loader(request.dataset_config, "--dataset-config", config, request.batch_size,
                                    request.num_workers, ranks, shuffle=True)  # fmt: skip
        val_loader = None
        if request.val_dataset_config is not None:
            val_loader = build_loader(request.val_dataset_config, "--val-dataset-config", config, request.batch_size,
                                      request.num_workers, ranks, shuffle=False)  # fmt: skip
    except DatasetConfigError as exc:
        raise FinetuneInputError(str(exc)) from None

    pre_encoded = train_loader.config["dataset_type"] == "pre_encoded"
    if val_loader is not None and (val_loader.config["dataset_type"] == "pre_encoded") != pre_encoded:
        raise FinetuneInputError("--dataset-config and --val-dataset-config must both be audio or both pre-encoded latents")
    use_torch_compatible_inverse_lr()
    pl.seed_everything(request.seed)  # the same initial weights on every rank
    model, weights_read = _build_model(choice, resuming=last is not None and request.lora is None)
    encode_text_as_in_generation(model)
    if request.lora is not None:
        from .lora_training import add_trainable_adapters

        layers = add_trainable_adapters(model, request.lora)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        weights_read += f"; {trainable:,} parameters to train in rank-{request.lora.rank} adapters on {layers} layers, the rest frozen"

    run = request.run
    after_save: list[Any] = []
    lora_callbacks: list[pl.Callback] = []
    if request.lora is not None:
        from .lora_training import LoraCheckpoints, write_adapter_file

        after_save.append(write_adapter_file)
        lora_callbacks.append(LoraCheckpoints(request.lora))
    if demo_items:
        base = choice.spec if request.lora is not None else None
        after_save.append(CheckpointDemos(request.demo_yaml, demo_items, run, config, request.demo_batch_size, base))
    if request.keep_checkpoints:

        def keep_latest(trainer: pl.Trainer, module: pl.LightningModule, step: int, path: Path) -> None:
            if trainer.is_global_zero:  # the one rank that writes checkpoints
                run.keep_latest(request.keep_checkpoints)

        after_save.append(keep_latest)
    stop = GracefulStop()
    callbacks = [
        StepCheckpoints(run.checkpoints_dir, request.checkpoint_every, after_save),
        EmbedModelConfig(config),
        StopOnSignal(stop),
        *lora_callbacks,
    ]
    if val_loader is not None and request.logger != "wandb":  # upstream sends validation losses to wandb itself
        callbacks.append(ValidationLosses())
    interactive = sys.stderr.isatty()
    if not interactive:
        callbacks.append(LinePerSteps(max(1, min(50, request.checkpoint_every)), request.max_steps or -1))
    val_args: dict[str, Any] = {}
    if request.val_every > 0:  # Lightning counts batches, not optimizer steps: --accum-batches of them make one step
        val_args = {"check_val_every_n_epoch": None, "val_check_interval": request.val_every * request.accum_batches}
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=devices,
        num_nodes=num_nodes,
        strategy="ddp_find_unused_parameters_true" if ranks > 1 else "auto",  # as upstream: the conditioners
        precision=precision,
        accumulate_grad_batches=request.accum_batches,
        gradient_clip_val=request.gradient_clip_val or None,
        max_steps=request.max_steps or -1,
        max_epochs=-1,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO(), *environment],
        logger=_logger(request.logger, run, request.name, start_step),
        log_every_n_steps=1,
        default_root_dir=run.folder,
        enable_progress_bar=interactive,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **val_args,
    )
    wrapper = training_wrapper(config, model, pre_encoded, request.seed, trainer.global_rank, start_step, request.lora is not None)
    if request.lora is not None:
        from .lora_training import fill_base_weights

        wrapper.on_load_checkpoint = fill_base_weights(wrapper)  # Lightning calls the module's hook before loading strictly
    if trainer.is_global_zero:
        _prepare_folder(request, choice)
        _say_start(request, choice, weights_read, last, precision, ranks, train_loader.files,
                   val_loader.files if val_loader else None)  # fmt: skip
    try:
        with stop:
            trainer.fit(wrapper, train_loader.dataloader, val_loader.dataloader if val_loader else None,
                        ckpt_path=str(last[1]) if last else None)  # fmt: skip
    except torch.cuda.OutOfMemoryError as exc:
        if trainer.global_step > start_step:
            raise
        raise FinetuneInputError(
            f"--batch-size {request.batch_size} does not fit on this GPU at {precision} ({str(exc).splitlines()[0]}): "
            f"lower it and raise --accum-batches to keep the effective batch"
        ) from None
    if trainer.is_global_zero:
        _say_end(request, trainer.global_step, stop.signal_name)
    return EXIT_INTERRUPTED if stop.requested else EXIT_OK


def _prepare_folder(request: TrainRequest, choice: ModelChoice) -> None:
    """Rank 0, once every check has passed: set an old run aside (``--restart``), tidy, record the config (and a LoRA run's base)."""
    run = request.run
    if request.restart:
        aside = run.set_aside()
        if aside is not None:
            _say(f"--restart: the previous run's files are kept in {aside}")
    if run.checkpoints_dir.is_dir():
        remove_partial_files(run.checkpoints_dir)  # a checkpoint being written when the last job was killed
    if request.lora is not None:
        run.save_lora_info(run_info(request.lora, choice))
    run.save_config(choice.config)


def _files_text(files: int | None, role: str) -> str:
    """``"12 training files"``, or for a streamed dataset (shards, ``files`` None) what it is."""
    return f"{files} {role} files" if files is not None else f"{role} samples streamed from WebDataset shards"


def _say_start(request: TrainRequest, choice: ModelChoice, weights_read: str, last: tuple[int, Path] | None,
               precision: str, ranks: int, train_files: int | None, val_files: int | None) -> None:  # fmt: skip
    if last:
        _say(f"continuing {request.run.folder} from step {last[0]}: {last[1]}")
    else:
        _say(f"training {request.run.folder} from {choice.description} ({weights_read})")
    steps = f"to step {request.max_steps}" if request.max_steps else "until stopped (Ctrl-C or SIGTERM saves a checkpoint)"
    batch = request.batch_size * request.accum_batches * ranks
    val = f", {_files_text(val_files, 'validation')}" if request.val_dataset_config else ""
    _say(f"{_files_text(train_files, 'training')}{val}; batch {request.batch_size} x {request.accum_batches} accumulated x "
         f"{ranks} ranks = {batch}; precision {precision}; {steps}; a checkpoint every {request.checkpoint_every} steps")  # fmt: skip


def _say_end(request: TrainRequest, step: int, signal_name: str | None) -> None:
    last = request.run.last_checkpoint()
    why = f"stopped by {signal_name}" if signal_name else "done"
    _say(f"{why} at step {step}; checkpoint: {last[1] if last else 'none'}")
    info = request.run.lora_info()
    if last and info is not None:
        _say(f"its adapter: {adapter_file(last[1])}\ngenerate with it: python generate.py {' '.join(info.base_flags)} "
             f"--lora {adapter_file(last[1])} --cond-yaml-path TREE --output-dir OUT")  # fmt: skip
    elif last:
        _say(f"generate with it: python generate.py --ckpt-path {last[1]} --cond-yaml-path TREE --output-dir OUT")
    if signal_name:
        _say("the same command continues from that checkpoint")

