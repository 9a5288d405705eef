"""stable-audio-tools' LoRA adapter files, read without torch: what an adapter is before any weights load.

The format is stable-audio-tools 0.0.20's (``models/lora``): a ``.safetensors`` file whose metadata
holds ``lora_config``, a JSON object with ``rank``, ``alpha``, ``adapter_type``, ``include`` and
``exclude``; its tensors are named as ``get_lora_state_dict`` names them, by the layer's module path
relative to the submodule the adapter was added to (the DiT wrapper ``model.model``, or the
conditioner) and ``.parametrizations.weight.0.lora_A`` (``[rank, fan_in]``) or ``...lora_B``
(``[fan_out, rank]``). A safetensors file is an 8-byte header length, a JSON header naming every
tensor's dtype and shape, then the data, so the header alone says whether a file is an adapter of a
supported type: ``generate.py --check`` and ``--dry-run`` answer that without importing torch.
Whether its shapes fit the model is checked when the model is loaded (``lora``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..request import LeafAdapter

LORA_CONFIG_KEY = "lora_config"  # the metadata entry stable-audio-tools writes and reads
PARAMETRIZATION = ".parametrizations.weight.0."  # every key of a saved adapter: <module path> + this + factor
FACTORS = ("lora_A", "lora_B")
SUPPORTED_TYPES = ("lora",)
# Every adapter_type stable-audio-tools 0.0.20 writes. DoRA rescales each row of the updated weight
# to a learned norm and LoRA-XS needs the SVD of the base weights, so neither is a plain B @ A update.
KNOWN_TYPES = ("lora", "dora", "dora-rows", "dora-cols", "bora", "lora-xs", "dora-rows-xs", "dora-cols-xs", "bora-xs")
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
MAX_HEADER_BYTES = 100 << 20  # the safetensors library's own limit


def adapter_file(checkpoint: Path) -> Path:
    """The adapter file ``finetune.py train --lora-rank`` writes beside one of its checkpoints (same name, ``.safetensors``)."""
    return checkpoint.with_suffix(".safetensors")


class LoraFileError(ValueError):
    """An adapter file that cannot be used; the message names the file and, where one is at fault, the key."""


@dataclass(frozen=True)
class LoraConfig:
    """The ``lora_config`` of an adapter file: update = strength x (alpha / rank) x B @ A."""

    rank: int
    alpha: float
    adapter_type: str = "lora"
    include: tuple[str, ...] | None = None  # which layers training added adapters to (module-name substrings)
    exclude: tuple[str, ...] | None = None

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict[str, Any]:
        """As stable-audio-tools keeps it (lists, ``None``): in checkpoints as is, in files as JSON."""
        patterns = {name: None if value is None else list(value) for name, value in (("include", self.include), ("exclude", self.exclude))}
        return {"rank": self.rank, "alpha": self.alpha, "adapter_type": self.adapter_type, **patterns}

    def to_json(self) -> str:
        """The metadata value."""
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class LoraFile:
    """An adapter file as its header describes it: config, and the factor shapes per adapted layer."""

    path: Path
    config: LoraConfig
    layers: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]  # module path -> (lora_A shape, lora_B shape)

    def key(self, layer: str, factor: str) -> str:
        """The file's name for one factor of ``layer``."""
        return f"{layer}{PARAMETRIZATION}{factor}"


@dataclass(frozen=True)
class AdapterUse:
    """One adapter as a run uses it: the file, its content hash (its identity: renaming or moving it
    changes nothing) and the strength it is applied at."""

    file: LoraFile
    sha256: str
    strength: float

    def as_leaf(self) -> LeafAdapter:
        """The same adapter as a leaf's ``lora`` names it: one identity and one record for both."""
        return LeafAdapter(str(self.file.path), self.sha256, self.strength)

    def record(self) -> dict[str, Any]:
        """What the manifest records of it."""
        return self.as_leaf().record()

    def identity(self) -> str:
        return self.as_leaf().identity()


def _header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, or why the file is not one."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if size < 8 or length > min(size - 8, MAX_HEADER_BYTES):
                raise LoraFileError(f"LoRA adapter {path}: not a safetensors file")
            header = json.loads(handle.read(length))
    except FileNotFoundError:
        raise LoraFileError(f"LoRA adapter {path}: file not found") from None
    except IsADirectoryError:
        raise LoraFileError(f"LoRA adapter {path}: is a directory, not a .safetensors file") from None
    except OSError as exc:
        raise LoraFileError(f"LoRA adapter {path}: cannot read it ({exc.strerror})") from None
    except (UnicodeDecodeError, ValueError):
        raise LoraFileError(f"LoRA adapter {path}: not a safetensors file") from None
    if not isinstance(header, dict):
        raise LoraFileError(f"LoRA adapter {path}: not a safetensors file")
    return header


def _patterns(value: Any, name: str, path: Path) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise LoraFileError(f"LoRA adapter {path}: lora_config {name} must be a list of strings or null, not {value!r}")
    return tuple(value)


def _config(metadata: Any, ranks: list[int], path: Path) -> LoraConfig:
    """The file's ``lora_config``; without one, stable-audio-tools' defaults (rank from the tensors,
    alpha = rank, plain LoRA), as its loader takes such files."""
    text = metadata.get(LORA_CONFIG_KEY) if isinstance(metadata, dict) else None
    try:
        raw = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        raise LoraFileError(f"LoRA adapter {path}: its lora_config metadata is not valid JSON") from None
    if not isinstance(raw, dict):
        raise LoraFileError(f"LoRA adapter {path}: its lora_config metadata is not a JSON object")
    return config_from_dict(raw, ranks, path)


def config_from_dict(raw: dict[str, Any], ranks: list[int], path: Path) -> LoraConfig:
    """A ``lora_config`` (of a file's metadata or a LoRA checkpoint) checked; ``ranks``: its tensors' ranks, for the default."""
    adapter_type = raw.get("adapter_type", "lora")
    if adapter_type not in KNOWN_TYPES:
        raise LoraFileError(f"LoRA adapter {path}: unknown adapter_type {adapter_type!r} "
                            f"(stable-audio-tools writes {', '.join(KNOWN_TYPES)})")  # fmt: skip
    if adapter_type not in SUPPORTED_TYPES:
        raise LoraFileError(f"LoRA adapter {path}: adapter_type {adapter_type!r} is not supported; only plain "
                            f"'lora' adapters are (DoRA and LoRA-XS are not a B @ A update; docs/models.md)")  # fmt: skip
    rank = raw.get("rank", ranks[0] if ranks else None)
    alpha = raw.get("alpha", rank)
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise LoraFileError(f"LoRA adapter {path}: lora_config rank must be a positive integer, not {rank!r}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise LoraFileError(f"LoRA adapter {path}: lora_config alpha must be a number, not {alpha!r}")
    return LoraConfig(rank, float(alpha), adapter_type, _patterns(raw.get("include"), "include", path),
                      _patterns(raw.get("exclude"), "exclude", path))  # fmt: skip


def _layers(header: dict[str, Any], path: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    """Factor shapes by layer, every key checked to be a LoRA factor of a float dtype."""
    layers: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, info in sorted(header.items()):  # sorted: the first key at fault is the same every time
        layer, mark, factor = key.rpartition(PARAMETRIZATION)
        if not mark or not layer or factor not in FACTORS:
            raise LoraFileError(f"LoRA adapter {path}: {key} is not a LoRA factor (expected <layer>{PARAMETRIZATION}"
                                f"lora_A or lora_B): not a stable-audio-tools LoRA file of type 'lora'")  # fmt: skip
        shape = tuple(info.get("shape", ())) if isinstance(info, dict) else ()
        if len(shape) != 2 or info.get("dtype") not in FLOAT_DTYPES:
            raise LoraFileError(f"LoRA adapter {path}: {key} must be a 2-D float tensor, not {info.get('dtype')} {list(shape)}")
        layers.setdefault(layer, {})[factor] = shape
    if not layers:
        raise LoraFileError(f"LoRA adapter {path}: holds no tensors: not a LoRA file")
    return layers


def read_lora_file(path: Path) -> LoraFile:
    """Read and check an adapter file's header: its config, keys and factor shapes; raises ``LoraFileError``."""
    header = _header(path)
    metadata = header.pop("__metadata__", None)
    layers = _layers(header, path)
    config = _config(metadata, [f["lora_A"][0] for f in layers.values() if "lora_A" in f], path)
    checked: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for layer, factors in layers.items():
        missing = [f for f in FACTORS if f not in factors]
        if missing:
            raise LoraFileError(f"LoRA adapter {path}: {layer}{PARAMETRIZATION}{missing[0]} is missing (each layer needs both factors)")
        a_shape, b_shape = factors["lora_A"], factors["lora_B"]
        if a_shape[0] != config.rank or b_shape[1] != config.rank:
            raise LoraFileError(f"LoRA adapter {path}: {layer}{PARAMETRIZATION}lora_A {list(a_shape)} and lora_B "
                                f"{list(b_shape)} do not have the rank of its lora_config ({config.rank})")  # fmt: skip
        checked[layer] = (a_shape, b_shape)
    return LoraFile(path, config, checked)
