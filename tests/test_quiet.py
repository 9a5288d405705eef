"""The upstream warnings the entry points hide (``stable_audio_tools_ext/quiet.py``): those, and only those.

``generate.py``'s output is checked by its own tests and the studio's in ``tests/studio/test_studio.py``
(a launched studio's log); here, the filters themselves and the export command.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

from stable_audio_tools_ext.quiet import KNOWN_LIBRARY_WARNINGS, hide_library_banners, hide_library_warnings
from tests.conftest import REPO_ROOT

# The warnings as stable-audio-tools 0.0.19, torch 2.14 and setuptools 80 raise them: (module, category, message).
RAISED = [
    ("clip.clip", UserWarning, "pkg_resources is deprecated as an API. See https://setuptools.pypa.io/en/latest/pkg_resources.html."),
    ("torch.nn.utils.weight_norm", FutureWarning,
     "`torch.nn.utils.weight_norm` is deprecated in favor of `torch.nn.utils.parametrizations.weight_norm`."),
    ("stable_audio_tools.models.conditioners", FutureWarning,
     "`torch.cuda.amp.autocast(args...)` is deprecated. Please use `torch.amp.autocast('cuda', args...)` instead."),
    ("torch.cuda.amp.autocast_mode", UserWarning, "CUDA is not available or torch_xla is imported. Disabling autocast."),
    # fine-tuning (finetune.py train): Lightning 2.1, the training wrapper, upstream's dataset, a CPU dataloader
    ("lightning_fabric", UserWarning, "pkg_resources is deprecated as an API. See https://setuptools.pypa.io/en/latest/pkg_resources.html."),
    ("stable_audio_tools.training.diffusion", FutureWarning,
     "`torch.cuda.amp.autocast(args...)` is deprecated. Please use `torch.amp.autocast('cuda', args...)` instead."),
    ("pytorch_lightning.utilities._pytree", FutureWarning,
     "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and treespec.is_leaf()` instead."),
    ("torchaudio", UserWarning, "The 'format' parameter is not supported by TorchCodec AudioDecoder."),
    ("torch.utils.data.dataloader", UserWarning,
     "'pin_memory' argument is set as true but no accelerator is found, then device pinned memory won't be used."),
    # the set metrics (finetune.py score, the demo's stand-ins): resampy 0.2.2, torchopenl3 1.0.1
    ("resampy.filters", UserWarning, "pkg_resources is deprecated as an API. See https://setuptools.pypa.io/en/latest/pkg_resources.html."),
    ("torchopenl3.models", UserWarning,
     "Empty filters detected in mel frequency basis. Some channels will produce empty responses. Try increasing your sampling rate (and fmax) or reducing n_mels."),
]  # fmt: skip


def _shown(module: str, category: type[Warning], message: str) -> bool:
    """Whether ``message`` raised from ``module`` still reaches the user once the filters are in place."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hide_library_warnings()
        warnings.warn_explicit(message, category, filename=module.replace(".", "/") + ".py", lineno=1, module=module)
    return bool(caught)


def test_the_known_warnings_are_hidden_and_only_from_their_own_module() -> None:
    for _, pattern, _ in KNOWN_LIBRARY_WARNINGS:  # every filter is exercised
        assert any(re.match(pattern, message) for _, _, message in RAISED), pattern
    for module, category, message in RAISED:
        assert not _shown(module, category, message), message
        assert _shown("stable_audio_tools_ext.run.job", category, message), f"hidden from our own code: {message}"
        assert _shown(module, RuntimeWarning, message)
        assert _shown(module, category, "a new warning: " + message)
    assert _shown("torch.nn.utils.weight_norm", FutureWarning, "`torch.nn.utils.spectral_norm` is deprecated")
    assert _shown("clip.clip_extra", UserWarning, RAISED[0][2]), "a module alternative matches the whole module name"


def test_export_prints_no_upstream_warnings(small_hub: Path, small_hub_env: dict[str, str], tmp_path: Path) -> None:
    """A real export builds the model (the VAE's weight_norm) and imports k-diffusion (pkg_resources)."""
    snapshot = next(small_hub.rglob("model_config.json")).parent  # SAO (the CLAP has a model.safetensors too)
    command = [sys.executable, "-m", "stable_audio_tools_ext.model.export", str(snapshot / "model.safetensors"),
               "--model-config", str(snapshot / "model_config.json"), "--output-dir", str(tmp_path / "exported")]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=small_hub_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "exported" / "model.safetensors").is_file()
    for _, message, _ in KNOWN_LIBRARY_WARNINGS:
        assert not re.search(message, result.stderr), result.stderr


def test_lightning_banners_are_hidden_and_its_warnings_kept() -> None:
    """``finetune.py train`` printed "GPU available: False, used: False", TPU/IPU/HPU lines and "Seed set
    to N" on every run; the loggers that say them are raised to WARNING (what ``finetune.py``'s main does)."""
    import logging

    import pytorch_lightning as pl

    said: list[str] = []
    keep = logging.Handler()
    keep.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    parents = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    for parent in parents:
        parent.addHandler(keep)
    try:
        hide_library_banners()
        pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        pl.seed_everything(3)
        logging.getLogger("pytorch_lightning.utilities.rank_zero").warning("a warning still shows")
    finally:
        for parent in parents:
            parent.removeHandler(keep)
    assert said == ["a warning still shows"]
