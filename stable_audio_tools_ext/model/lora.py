"""LoRA adapters on a loaded model: read them, check they fit, apply them at a strength, write them.

Files are stable-audio-tools 0.0.20's (``lora_files`` reads and checks their headers). As its
``load_and_apply_loras(model, paths, "diffusion_cond")`` does, one file serves both the DiT wrapper
(``model.model``) and the conditioner: each tensor's layer path is looked up in one or the other,
and only ``Linear`` and ``Conv1d`` weights take an update, strength x (alpha / rank) x B @ A (a
``Conv1d`` weight as its ``[out, in * kernel]`` matrix). Several adapters add up in order.

Upstream re-parametrizes every adapted weight, recomputing W + update on every forward pass. Here
the update is merged into the weight instead, computed the same way in float32 and rounded once to
the weight's dtype, so sampling costs nothing extra and ``torch.compile`` sees plain weights. The
base weight of every adapted layer is kept beside it (as many extra parameters as the adapted layers
hold, in their dtype), so strengths change and adapter sets switch without reloading the model, and
strength 0 (or no adapter) gives back the base weights bit for bit.

Unlike upstream's loader, which loads with ``strict=False`` and silently skips what does not fit, a
tensor naming a layer the model does not have, or of a shape the layer cannot take, is an error
naming the file and that key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..output.atomic import atomic_open
from ..request import LeafAdapter
from .lora_files import LORA_CONFIG_KEY, AdapterUse, LoraConfig, LoraFileError, read_lora_file
from .spec import ModelLoadError

ADAPTED_TYPES = (torch.nn.Linear, torch.nn.Conv1d)  # the layer types stable-audio-tools' loader adapts
PARTS = ("model", "conditioner")  # the submodules of a diffusion_cond model an adapter's paths are relative to


@dataclass(frozen=True)
class Adapter:
    """An adapter read and checked against one model: its factors per adapted layer, on the model's device."""

    use: AdapterUse
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]  # "<part>.<layer path>" -> (A, B), float32

    def update(self, layer: str, strength: float, shape: torch.Size) -> torch.Tensor:
        """strength x (alpha / rank) x B @ A for ``layer``, shaped like its weight (float32)."""
        a, b = self.factors[layer]
        # fp32(alpha / rank) x fp32(strength), in upstream's order: the merged weights then match its own bit for bit
        scale = torch.tensor(self.use.file.config.scale, dtype=torch.float32) * torch.tensor(strength, dtype=torch.float32)
        return (scale.to(a.device) * (b @ a)).view(shape)


def _layer(model: torch.nn.Module, path: str) -> tuple[str, torch.nn.Module] | None:
    """The adaptable layer ``path`` names in the DiT wrapper or the conditioner, with its part."""
    for part in PARTS:
        try:
            module = getattr(model, part).get_submodule(path)
        except AttributeError:
            continue
        return part, module
    return None


def read_adapter(model: torch.nn.Module, use: AdapterUse, device: torch.device) -> Adapter:
    """Read ``use``'s tensors and check each fits the model (``ModelLoadError`` naming the first key that does not)."""
    file = use.file
    where = f"LoRA adapter {file.path}"
    try:
        tensors = load_file(str(file.path), device="cpu")
    except (OSError, SafetensorError) as exc:
        raise ModelLoadError(f"{where}: cannot read its tensors ({exc})") from None
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for layer, (a_shape, b_shape) in sorted(file.layers.items()):
        found = _layer(model, layer)
        if found is None or not isinstance(found[1], ADAPTED_TYPES):
            what = "has no such layer" if found is None else f"has {type(found[1]).__name__} there, not Linear or Conv1d"
            raise ModelLoadError(f"{where}: {file.key(layer, 'lora_A')} does not fit this model: it {what} "
                                 "(an adapter made for another model?)")  # fmt: skip
        part, module = found
        weight = module.weight
        fan_out, fan_in = weight.shape[0], weight[0].numel()
        for factor, shape, expected in (("lora_A", a_shape, (file.config.rank, fan_in)), ("lora_B", b_shape, (fan_out, file.config.rank))):
            if tuple(shape) != expected:
                raise ModelLoadError(f"{where}: {file.key(layer, factor)} has shape {list(shape)}, but the model's "
                                     f"{part}.{layer} needs {list(expected)} (an adapter made for another model?)")  # fmt: skip
        a, b = (tensors[file.key(layer, f)].to(device, torch.float32) for f in ("lora_A", "lora_B"))
        factors[f"{part}.{layer}"] = (a, b)
    return Adapter(use, factors)


class AdaptedWeights:
    """The adapters merged into a model's weights, with the base weights kept to change them later."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._model = model
        self._base: dict[str, torch.Tensor] = {}  # base weight of every layer an adapter has touched
        self.active: tuple[tuple[Adapter, float], ...] = ()
        self.default: tuple[tuple[Adapter, float], ...] = ()  # --lora's set: what items without leaf adapters get
        self._read: dict[str, Adapter] = {}  # leaf adapters by content hash, each read once per process

    def read(self, adapters: Sequence[LeafAdapter], device: torch.device) -> list[tuple[Adapter, float]]:
        """Leaf adapters read and checked against the model (once per file content), with their strengths;
        raises ``ModelLoadError`` naming the file and the first key that does not fit."""
        read = []
        for leaf in adapters:
            if leaf.sha256 not in self._read:
                try:
                    use = AdapterUse(read_lora_file(Path(leaf.path)), leaf.sha256, leaf.strength)
                except LoraFileError as exc:  # changed since the tree was checked
                    raise ModelLoadError(str(exc)) from None
                self._read[leaf.sha256] = read_adapter(self._model, use, device)
            read.append((self._read[leaf.sha256], leaf.strength))
        return read

    def use(self, adapters: Sequence[LeafAdapter] | None, device: torch.device) -> None:
        """Make the weights those of an item's adapters (``None``: ``default``), unless they already are.

        The engine calls this per batch (a batch shares one set: ``GenerationRequest.batch_key``), so
        runs of batches with the same set cost nothing and a switch costs one merge, no reload."""
        wanted = self.default if adapters is None else tuple(self.read(adapters, device))
        key = lambda pairs: [(a.use.sha256, s) for a, s in pairs]  # noqa: E731
        if key(wanted) != key(self.active):
            self.set(wanted)

    def set(self, adapters: Sequence[tuple[Adapter, float]]) -> None:
        """Make the weights base + the update of each adapter at its strength (in order); ``[]``: the base."""
        layers = set(self._base)
        for adapter, _ in adapters:
            layers.update(adapter.factors)
        with torch.no_grad():
            for layer in sorted(layers):
                weight = self._model.get_submodule(layer).weight
                base = self._base.setdefault(layer, weight.detach().clone())
                merged = base.float()
                touched = False
                for adapter, strength in adapters:
                    if strength != 0 and layer in adapter.factors:
                        merged = merged + adapter.update(layer, strength, weight.shape)
                        touched = True
                weight.copy_(merged if touched else base)
        self.active = tuple(adapters)

    def set_strengths(self, strengths: Sequence[float]) -> None:
        """The same adapters at new strengths, one per adapter."""
        if len(strengths) != len(self.active):
            raise ValueError(f"{len(strengths)} strengths for {len(self.active)} adapters")
        self.set([(adapter, s) for (adapter, _), s in zip(self.active, strengths)])


def apply_adapters(model: torch.nn.Module, uses: Sequence[AdapterUse], device: torch.device) -> AdaptedWeights:
    """Read, check and merge ``uses`` into ``model`` (on ``device``) at their strengths.

    A leaf naming the same file content later (the studio's leaves name its ``--lora`` adapters, at
    the page's strengths) reuses these tensors: the file is not read again, nor held twice."""
    adapted = AdaptedWeights(model)
    adapted.set([(read_adapter(model, use, device), use.strength) for use in uses])
    adapted.default = adapted.active
    adapted._read.update((adapter.use.sha256, adapter) for adapter, _ in adapted.active)
    return adapted


def write_lora(path: Path, tensors: Mapping[str, torch.Tensor], config: LoraConfig) -> None:
    """Write an adapter file in stable-audio-tools' format, atomically: fp16 tensors named as
    ``get_lora_state_dict`` names them, ``lora_config`` in the metadata."""
    half = {key: tensor.detach().to("cpu", torch.float16).contiguous() for key, tensor in tensors.items()}
    with atomic_open(path) as handle:
        handle.write(save(half, metadata={LORA_CONFIG_KEY: config.to_json()}))
