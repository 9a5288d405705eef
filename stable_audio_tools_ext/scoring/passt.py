"""PaSST class probabilities and KL_passt as stable-audio-metrics computes them.

KL_passt, as the Stable Audio Open paper reports it, is ``passt_kld`` in stable-audio-metrics'
``src/passt_kld.py`` (commit fd55536), on hear21passt's ``get_basic_model(mode="logits")``
(PaSST-S, ``passt_s_swa_p16_128_ap476``: AudioSet's 527 classes). Every step it takes is
reproduced here:

* audio: ``librosa.load(path, sr=32000, mono=True)`` (channels averaged, librosa's ``soxr_hq``
  resampling and length rule: ``clap_recipe.resample``), then peak -1 dBFS (``pyloudnorm``);
* windows (``windows``): 10 s windows every 5 s, starting at ``range(0, max(5 s, n - 5 s), 5 s)``;
  a window shorter than 10 s is zero-padded to 10 s when it holds more than 15% of a window
  (1.5 s), else fed to the model as it is. So a clip of up to 10 s gives one window, 12 s two
  (0-10 s, 5-12 s padded), 17 s three (0-10, 5-15, 10-17 padded); only a clip of at most 1.5 s is
  classified unpadded (MusicGen drops such a window; stable-audio-metrics' loop keeps it: no clip
  would be left without a window);
* per clip: the windows' logits are averaged, then a softmax over the 527 classes;
* KL: ``F.kl_div((ref + 1e-6).log(), eval, reduction="sum")`` = sum eval * (log eval - log(ref + 1e-6)),
  i.e. KL(eval || ref), for each id in both sets, averaged over the ids (``paired_kl``). The 1e-6
  makes a clip against itself score slightly below 0 (at least -527e-6), not exactly 0.

The model runs in eval mode (no spectrogram augmentation), several windows per forward pass:
windows of equal length are batched, which changes nothing but float round-off.

API (what ``finetune.py score`` calls)::

    classifier = PasstClassifier.load(device, weights=None)   # or weights=Path(".../passt-s-...-swa.pt")
    p = classifier.class_probabilities((samples, rate))        # (527,) float32, sums to 1
    ps = classifier.probabilities(clips)                       # (len(clips), 527)
    kl = paired_kl({"id": p_eval, ...}, {"id": p_ref, ...})    # mean KL(eval || ref) over the ids

Weights: hear21passt fetches ``passt-s-f128-p16-s10-ap.476-swa.pt`` once into torch hub's cache
(``$TORCH_HOME/hub/checkpoints``); ``load`` reads it from there (downloading it once if online) or
from ``weights``. A weights file may hold a narrower, shallower PaSST (the tiny random stand-in of
``standins``): the model is built at its width and depth, with one attention head per 64 channels
(PaSST-S: 768 wide, 12 heads), since the head count leaves no trace in the tensors.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .clap import Clip
from .clap_recipe import peak_normalize, resample
from .hub_weights import cached_path, weights_file

SAMPLE_RATE = 32000  # passt_kld's SAMPLING_RATE, PaSST's rate
WINDOW_SECONDS = 10  # return_probabilities' window_size: PaSST's training clip length
OVERLAP_SECONDS = 5  # return_probabilities' overlap
MIN_PADDED_FRACTION = 0.15  # a shorter last window is zero-padded only above this share of a window
KL_EPSILON = 1e-6  # passt_kld adds it to the reference probabilities before the log
N_CLASSES = 527  # AudioSet
HEAD_WIDTH = 64  # channels per attention head (PaSST-S: 768 / 12)
BATCH_SIZE = 8  # 10 s windows per forward pass
ARCH = "passt_s_swa_p16_128_ap476"  # get_basic_model's default arch
WEIGHTS_FILE = "passt-s-f128-p16-s10-ap.476-swa.pt"
WEIGHTS_URL = f"https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/{WEIGHTS_FILE}"


class PasstLoadError(RuntimeError):
    """The PaSST weights could not be found or read; the message says which file and where to put it."""


def recipe_waveform(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """``samples`` ((frames, channels) or (frames,), any rate) as passt_kld reads a file: 32 kHz mono, peak -1 dBFS."""
    mono = np.asarray(samples, dtype=np.float32).reshape(len(samples), -1).mean(axis=1)
    return peak_normalize(resample(mono, sample_rate, SAMPLE_RATE))


def windows(wave: np.ndarray) -> list[np.ndarray]:
    """The analysis windows of a 32 kHz waveform, as return_probabilities cuts them (see the module doc)."""
    size, step = WINDOW_SECONDS * SAMPLE_RATE, (WINDOW_SECONDS - OVERLAP_SECONDS) * SAMPLE_RATE
    cut = []
    for start in range(0, max(step, len(wave) - step), step):
        window = wave[start:start + size]
        if len(window) < size and len(window) > size * MIN_PADDED_FRACTION:
            window = np.pad(window, (0, size - len(window)))
        cut.append(window.astype(np.float32))
    return cut


class PasstClassifier:
    """PaSST (logits of AudioSet's 527 classes) on one device: class probabilities of clips, as passt_kld takes them."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model, self.device = model.eval().to(device), device

    @classmethod
    def load(cls, device: torch.device | None = None, weights: Path | None = None) -> PasstClassifier:
        """PaSST-S from ``weights`` (a file) or torch hub's cache (downloading it once if online)."""
        from hear21passt.models import passt as passt_module
        from hear21passt.models.preprocess import AugmentMelSTFT
        from hear21passt.wrapper import PasstBasicWrapper

        passt_module.first_RUN = False  # else its first forward pass prints every tensor shape
        state = _read_weights(weights)
        try:
            width, depth = state["cls_token"].shape[-1], len({k.split(".")[1] for k in state if k.startswith("blocks.")})
            net = build_net(width, depth)
            net.load_state_dict(passt_module.checkpoint_filter_fn(state, net))
        except (KeyError, RuntimeError, IndexError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PasstLoadError(f"{weights or WEIGHTS_FILE} is not a PaSST ({ARCH}-like) model: {first}") from exc
        # get_basic_model's spectrogram; its fmax=None means sr / 2 - fmax_aug_range / 2 (printed as a "Warning")
        mel = AugmentMelSTFT(n_mels=128, sr=SAMPLE_RATE, win_length=800, hopsize=320, n_fft=1024, freqm=48,
                             timem=192, htk=False, fmin=0.0, fmax=SAMPLE_RATE // 2 - 2000 // 2, norm=1,
                             fmin_aug_range=10, fmax_aug_range=2000)  # fmt: skip
        device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return cls(PasstBasicWrapper(mel=mel, net=net, mode="logits"), device)

    def class_probabilities(self, clip: Clip) -> np.ndarray:
        """The 527 class probabilities of one clip (windows' logits averaged, then softmax), float32."""
        return self.probabilities([clip])[0]

    def probabilities(self, clips: Sequence[Clip]) -> np.ndarray:
        """``class_probabilities`` of each clip, (len(clips), 527) float32; windows batched across clips."""
        cut = [windows(recipe_waveform(samples, rate)) for samples, rate in clips]
        flat = [(clip, window) for clip, clip_windows in enumerate(cut) for window in clip_windows]
        logits = torch.zeros((len(clips), N_CLASSES), dtype=torch.float64)
        for length in sorted({len(window) for _, window in flat}):
            same = [(clip, window) for clip, window in flat if len(window) == length]
            for start in range(0, len(same), BATCH_SIZE):
                batch = same[start:start + BATCH_SIZE]
                out = self._logits(np.stack([window for _, window in batch]))
                for (clip, _), row in zip(batch, out):
                    logits[clip] += row.double() / len(cut[clip])
        return torch.softmax(logits.float(), dim=1).numpy()

    def _logits(self, batch: np.ndarray) -> torch.Tensor:
        """The model's logits for a (windows, samples) batch, on the CPU."""
        with torch.inference_mode(), warnings.catch_warnings():
            # hear21passt's own: stft(return_complex=False), torch.cuda.amp.autocast, 1000 vs 998 mel frames
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            return self.model(torch.from_numpy(batch).to(self.device)).float().cpu()


def weights_path(weights: Path | None = None) -> Path:
    """The PaSST weights file ``load`` reads: ``weights``, or torch hub's cached copy (downloaded once if missing)."""
    try:
        return weights_file(weights, WEIGHTS_FILE, WEIGHTS_URL)
    except OSError as exc:  # missing file, offline (URLError is an OSError)
        raise PasstLoadError(f"cannot read the PaSST weights {weights or cached_path(WEIGHTS_FILE)}: {exc}; download "
                             f"{WEIGHTS_URL} there (docs/evaluation.md)") from exc  # fmt: skip


def _read_weights(weights: Path | None) -> dict[str, torch.Tensor]:
    """The state dict in ``weights``, or hear21passt's PaSST-S file through torch hub's cache."""
    path = weights_path(weights)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:  # unreadable, not torch's
        raise PasstLoadError(f"cannot read the PaSST weights {path}: {exc}; download {WEIGHTS_URL} there "
                             "(docs/evaluation.md)") from exc  # fmt: skip


def build_net(width: int = 768, depth: int = 12) -> torch.nn.Module:
    """A randomly initialised PaSST as ``get_model(arch=ARCH, pretrained=False)`` builds it, at ``width`` and ``depth``.

    PaSST-S: 16x16 patches every 10 mel bins and frames over a 128 x 998 mel image, distilled (two
    tokens, two heads averaged), 527 classes, ``width // HEAD_WIDTH`` attention heads.
    """
    from hear21passt.models.passt import PaSST

    return PaSST(img_size=(128, 998), patch_size=16, stride=(10, 10), in_chans=1, num_classes=N_CLASSES,
                 embed_dim=width, depth=depth, num_heads=max(1, width // HEAD_WIDTH), distilled=True)  # fmt: skip


def kl_divergence(eval_probs: np.ndarray, ref_probs: np.ndarray) -> float:
    """passt_kld's KL(eval || ref) of two probability vectors: sum eval * (log eval - log(ref + 1e-6))."""
    from scipy.special import xlogy

    p, q = np.asarray(eval_probs, dtype=np.float64), np.asarray(ref_probs, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"two probability vectors of the same shape are needed, got {p.shape} and {q.shape}")
    return float(np.sum(xlogy(p, p) - p * np.log(q + KL_EPSILON)))  # kl_div's 0 * log 0 = 0


def paired_kl(eval_probs: Mapping[str, np.ndarray], ref_probs: Mapping[str, np.ndarray]) -> float:
    """KL_passt: the mean ``kl_divergence`` over ids, each eval clip against the reference clip of its id.

    Both sets must have the same ids (prompt or file ids); a missing id is an error naming it, not a
    silent skip, so a score always rests on the whole set.
    """
    only_eval, only_ref = sorted(set(eval_probs) - set(ref_probs)), sorted(set(ref_probs) - set(eval_probs))
    if only_eval or only_ref or not eval_probs:
        raise ValueError(f"KL_passt pairs clips by id: ids without a reference {only_eval}, references without an "
                         f"evaluated clip {only_ref}" if eval_probs else "KL_passt needs at least one id")  # fmt: skip
    return float(np.mean([kl_divergence(eval_probs[key], ref_probs[key]) for key in sorted(eval_probs)]))
