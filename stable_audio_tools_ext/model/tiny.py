"""A tiny, randomly initialised Stable Audio Open 1.0 in a fake Hugging Face hub cache.

Tests, ``make demo`` and benchmarks need a model that loads through the *unmodified*
``stable_audio_tools.get_pretrained_model("stabilityai/stable-audio-open-1.0")`` path,
but the real weights are gigabytes, gated, and the machines running us are offline.
So we write, into ``<hf_home>/hub``, the files the hub would have served:

* ``t5-base``: a one-layer T5 encoder (``d_model`` 768, as the conditioner requires)
  and a small Unigram tokenizer built from a corpus of sound prompts;
* ``stabilityai/stable-audio-open-1.0``: the real SAO 1.0 ``model_config.json`` with
  small widths, and the ``model.safetensors`` of the model it describes;
* ``laion/clap-htsat-fused`` (SAO 1.0 builds only): a CLAP of the real architecture (RoBERTa text
  encoder with a byte-level BPE tokenizer, HTSAT audio encoder with feature fusion) at tiny widths,
  for ``generate.py --score clap`` (``stable_audio_tools_ext.scoring``).

Loading needs the environment from :func:`offline_hub_env`.  Everything is seeded and
the snapshot commits are content hashes, so the same parameters give identical bytes.

CLI (for ``make demo``): ``python -m stable_audio_tools_ext.model.tiny --hf-home DIR [--sample-size N]``
builds the cache and prints ``DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from ..quiet import hide_library_prints, hide_library_warnings

DEMO_REPO_ID = "stabilityai/stable-audio-open-1.0"
SMALL_REPO_ID = "stabilityai/stable-audio-open-small"
T5_REPO_ID = "t5-base"
CLAP_REPO_ID = "laion/clap-htsat-fused"  # scoring.clap's default checkpoint (its docstring says why)
# Under a cache's HF_HOME: the TORCH_HOME whose hub/checkpoints/ holds the tiny stand-ins of OpenL3 and PaSST
# (scoring.standins writes them there, where torch hub keeps the real downloads; offline_hub_env points at it)
TORCH_HOME_DIR = "torch"

# Written last into a finished build; its presence is what "complete" means.
_MARKER = "tiny_sao.json"
# Bump when the layout or the recipe changes, so stale caches are not mistaken for current ones.
_FORMAT_VERSION = 2  # 2: SAO 1.0 builds hold the tiny CLAP

_CORPUS = """\
A beautiful piano arpeggio
Heavy rain falling on a tin roof
Thunder rumbling in the distance during a summer storm
Birds chirping in a forest at dawn
A punchy drum loop at 120 BPM with a tight snare
Lofi hip hop beat with vinyl crackle
Deep techno kick drum and rolling bassline
Ocean waves crashing on the shore
Wind blowing through tall grass
A crackling campfire at night
Footsteps on wooden floor in an empty hall
An acoustic guitar strumming folk chords
Soft ambient pad with slow evolving texture
Jazz saxophone solo over walking bass
Orchestral strings swelling to a dramatic climax
A dog barking in the backyard
City traffic with car horns and sirens
Church bells ringing in a small village
A cat purring softly
Glitchy electronic percussion with reverb
Warm analog synth lead melody in A minor
Children laughing in a playground
A door creaking open slowly
Rain and thunder with distant sirens
Crowd cheering at a stadium
Electric guitar riff with heavy distortion
Gentle harp glissando
Cinematic boom and riser sound effect
Hand claps and finger snaps at 90 BPM
Water dripping in a cave with echo
Old piano playing a sad waltz
Trap hi hats and 808 bass
A helicopter flying overhead
Frogs croaking near a pond at night
Marimba melody with light percussion
A train passing by on the tracks
"""
_WORD_START = "\u2581"  # SentencePiece's marker for a preceding space
_ALPHABET = [chr(c) for c in range(33, 127)]  # printable ASCII: each is a piece, so prompts avoid <unk>


def tiny_model_config(sample_size: int = 2097152) -> dict:
    """The real SAO 1.0 ``model_config.json``, shrunk so the model builds in seconds.

    Only widths shrink (autoencoder channels 4, DiT width 64 / depth 2 / 2 heads); strides,
    the 64-channel latent, 2048x downsampling, 44.1 kHz stereo and the 768-dim T5
    conditioning are kept, so code sized against the real model sees the same shapes.

    One flag differs: ``project_cond_tokens`` is true (as in Stable Audio Open Small). With the
    real ``false``, cross-attention keys/values keep the 768-dim token width and are split
    into 768 / head_dim "kv heads" for grouped-query attention; that only works when the
    query heads are a multiple of them, i.e. for DiT widths that are multiples of 768. At
    width 64 upstream's grouped-query repeat count rounds down to 0 and cross-attention
    silently outputs zeros - the prompt would have no effect at all. Projecting the tokens
    to the DiT width keeps the prompt path alive at a size that samples fast on a CPU.
    ``sample_size`` is the generation window in samples (default: the real 47.55 s =
    1024 latent frames); tests use small windows to stay fast.
    """
    if sample_size <= 0 or sample_size % 2048:
        raise ValueError(f"sample_size must be a positive multiple of 2048, got {sample_size}")
    autoencoder = {
        "encoder": {"type": "oobleck", "requires_grad": False, "config": {
            "in_channels": 2, "channels": 4, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
            "latent_dim": 128, "use_snake": True}},
        "decoder": {"type": "oobleck", "config": {
            "out_channels": 2, "channels": 4, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
            "latent_dim": 64, "use_snake": True, "final_tanh": False}},
        "bottleneck": {"type": "vae"},
        "latent_dim": 64,
        "downsampling_ratio": 2048,
        "io_channels": 2,
    }
    return {
        "model_type": "diffusion_cond",
        "sample_size": sample_size,
        "sample_rate": 44100,
        "audio_channels": 2,
        "model": {
            "pretransform": {"type": "autoencoder", "iterate_batch": True, "config": autoencoder},
            "conditioning": {
                "configs": [
                    {"id": "prompt", "type": "t5", "config": {"t5_model_name": T5_REPO_ID, "max_length": 128}},
                    {"id": "seconds_start", "type": "number", "config": {"min_val": 0, "max_val": 512}},
                    {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 512}},
                ],
                "cond_dim": 768,
            },
            "diffusion": {
                "cross_attention_cond_ids": ["prompt", "seconds_start", "seconds_total"],
                "global_cond_ids": ["seconds_start", "seconds_total"],
                "type": "dit",
                "config": {
                    "io_channels": 64, "embed_dim": 64, "depth": 2, "num_heads": 2, "cond_token_dim": 768,
                    "global_cond_dim": 1536, "project_cond_tokens": True,
                    "transformer_type": "continuous_transformer",
                },
            },
            "io_channels": 64,
        },
        "training": {
            "use_ema": True,
            "log_loss_info": False,
            "optimizer_configs": {"diffusion": {
                "optimizer": {"type": "AdamW", "config": {"lr": 5e-5, "betas": [0.9, 0.999], "weight_decay": 1e-3}},
                "scheduler": {"type": "InverseLR", "config": {"inv_gamma": 1000000, "power": 0.5, "warmup": 0.99}},
            }},
            "demo": {
                "demo_every": 2000, "demo_steps": 250, "num_demos": 4,
                "demo_cond": [{"prompt": "A beautiful piano arpeggio", "seconds_start": 0, "seconds_total": 40}],
                "demo_cfg_scales": [3, 6, 9],
            },
        },
    }


def tiny_small_model_config(sample_size: int = 524288) -> dict:
    """A tiny model with Stable Audio Open Small's architecture (default window: its 11.89 s).

    What sets Small apart is kept: the distilled rectified-flow objective (``rf_denoiser``, sampled
    with ``pingpong`` in a few steps without CFG), timing conditioning on ``seconds_total`` only,
    query-key layer norm in attention, and projected condition tokens. Widths are the tiny ones.
    """
    config = tiny_model_config(sample_size)
    model = config["model"]
    model["conditioning"]["configs"] = [
        {"id": "prompt", "type": "t5", "config": {"t5_model_name": T5_REPO_ID, "max_length": 64}},
        {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 256}},
    ]
    model["diffusion"] = {
        "cross_attention_cond_ids": ["prompt", "seconds_total"],
        "global_cond_ids": ["seconds_total"],
        "diffusion_objective": "rf_denoiser",
        "type": "dit",
        "config": {
            "io_channels": 64, "embed_dim": 64, "depth": 2, "num_heads": 2, "cond_token_dim": 768,
            "global_cond_dim": 768, "transformer_type": "continuous_transformer", "attn_kwargs": {"qk_norm": "ln"},
        },
    }  # fmt: skip
    return config


# Each tiny model: its config builder and the weights file the real repo ships.
_VARIANTS = {
    DEMO_REPO_ID: (tiny_model_config, "model.safetensors", 2097152),
    SMALL_REPO_ID: (tiny_small_model_config, "model.ckpt", 524288),
}


def offline_hub_env(hf_home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment (a copy of ``base``, default ``os.environ``) that loads from ``hf_home`` only.

    Meant for subprocesses (torchrun, the demo): huggingface_hub reads these variables at
    import time, so they cannot be switched inside a process that already imported it.
    The more specific cache variables are removed because they would override ``HF_HOME``.
    ``TORCH_HOME`` points at ``torch_home(hf_home)``, so OpenL3 and PaSST (FD_openl3, KL_passt) read
    their weights from torch hub's cache there: the stand-ins, when ``scoring.standins`` wrote them.
    """
    env = dict(os.environ if base is None else base)
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        env.pop(key, None)
    env.update(HF_HOME=str(Path(hf_home).resolve()), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TORCH_HOME=str(torch_home(hf_home)))  # fmt: skip
    return env


def torch_home(hf_home: Path) -> Path:
    """The ``TORCH_HOME`` that goes with the cache ``hf_home`` (``offline_hub_env``): ``hf_home/torch``."""
    return Path(hf_home).resolve() / TORCH_HOME_DIR


def build_tiny_hub_cache(
    hf_home: Path, sample_size: int | None = None, seed: int = 0, repo_id: str = DEMO_REPO_ID
) -> Path:
    """Build a tiny model's hub cache as ``hf_home`` and return ``hf_home``.

    ``repo_id`` picks the architecture (``DEMO_REPO_ID`` for Stable Audio Open 1.0,
    ``SMALL_REPO_ID`` for Small); ``sample_size`` defaults to that model's real window.
    One ``hf_home`` holds one build: use a different directory per model/``sample_size``/``seed``
    (asking an existing build for other parameters raises ``ValueError``).  ``hf_home``
    must not exist, be an empty directory, or hold a finished build, which is returned at
    once; a build of an older ``_FORMAT_VERSION`` is rebuilt and replaced.  The build happens
    in a temporary sibling directory that is renamed into place, so concurrent callers and
    interrupted builds never expose a half-written cache.
    """
    hf_home = Path(hf_home)
    make_config, weights_name, default_size = _VARIANTS[repo_id]
    sample_size = sample_size or default_size
    params = {"repo_id": repo_id, "sample_size": sample_size, "seed": seed, "format": _FORMAT_VERSION}
    if _finished(hf_home, params):
        return hf_home
    config = make_config(sample_size)  # validates sample_size before any work
    hf_home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{hf_home.name}.building-", dir=hf_home.parent))
    try:
        _build(tmp / "hub", config, seed, repo_id, weights_name)
        (tmp / _MARKER).write_text(json.dumps(params, sort_keys=True))
        try:
            _replace_stale(hf_home, params)
            tmp.rename(hf_home)  # atomic; also replaces an empty directory
        except OSError:
            if not _finished(hf_home, params):  # a concurrent build may have won the race
                raise FileExistsError(f"{hf_home} exists and is not a tiny model hub cache") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return hf_home


def _finished(hf_home: Path, params: dict) -> bool:
    """Whether ``hf_home`` holds a complete build; raises if it was built with other parameters."""
    marker = hf_home / _MARKER
    if not marker.is_file():
        return False
    found = json.loads(marker.read_text())
    if _stale(found, params):
        return False
    if found != params:
        raise ValueError(f"{hf_home} holds a tiny model built with {found}, not {params}; use another directory")
    return True


def _stale(found: dict, params: dict) -> bool:
    """Whether a build's marker ``found`` differs from ``params`` only by an older format."""
    return found.get("format", 0) < params["format"] and {**found, "format": params["format"]} == params


def _replace_stale(hf_home: Path, params: dict) -> None:
    """Move an older format's build at ``hf_home`` out of the way (then deleted), so the new one can take its place.

    The models it held are rebuilt with identical bytes and snapshot commits (the build is
    seeded), so a process still reading the old cache finds the same files in the new one.
    """
    marker = hf_home / _MARKER
    if marker.is_file() and _stale(json.loads(marker.read_text()), params):
        old = Path(tempfile.mkdtemp(prefix=f".{hf_home.name}.stale-", dir=hf_home.parent))
        hf_home.rename(old / "cache")
        shutil.rmtree(old, ignore_errors=True)


def _build(hub: Path, config: dict, seed: int, repo_id: str, weights_name: str) -> None:
    """Write the repos into ``hub``; T5 first, since building the SAO model loads it from there."""
    import torch

    with tempfile.TemporaryDirectory() as scratch, torch.random.fork_rng():  # keep the caller's RNG as it was
        t5_dir = Path(scratch) / "t5"
        torch.manual_seed(seed)
        _save_tiny_t5(t5_dir)
        _add_repo(hub, T5_REPO_ID, {p.name: p.read_bytes() for p in sorted(t5_dir.iterdir())})

        # The T5 conditioner loads "t5-base" from the hub cache in its constructor.  The env
        # vars were read when huggingface_hub was imported, but it (and transformers) look up
        # these module constants at call time, so point them at this cache while we build.
        from huggingface_hub import constants

        saved = constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(hub), True
        try:
            from stable_audio_tools.models.factory import create_model_from_config

            torch.manual_seed(seed)
            with hide_library_prints():  # the DiT's first import prints a flash-attn notice
                model = create_model_from_config(config)
        finally:
            constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = saved
        _make_prompt_audible(model)
        _add_repo(hub, repo_id, {
            "model_config.json": json.dumps(config, indent=2).encode(),
            weights_name: _weights_bytes(model.state_dict(), weights_name),
        })
        if repo_id == DEMO_REPO_ID:  # the demo setting: `make demo`'s cache, so --score clap works offline
            clap_dir = Path(scratch) / "clap"
            torch.manual_seed(seed)
            _save_tiny_clap(clap_dir)
            _add_repo(hub, CLAP_REPO_ID, {p.name: p.read_bytes() for p in sorted(clap_dir.iterdir())})


# Gain applied to the DiT's prompt path (token projection and cross-attention output); see below.
_PROMPT_PATH_GAIN = 4.0


def _make_prompt_audible(model) -> None:
    """Give the random model a prompt path as strong as a trained one's, in place.

    stable-audio-tools zero-initialises attention output projections (training starts from the
    identity), and at default init the prompt tokens reach the DiT very weakly: measured on this
    model, two different prompts changed the audio by 1.7e-4 (max abs) against 0.09 for two seeds.
    That is below the tolerance of the invariance tests, which then could not tell whether items in
    a batch got each other's prompts. All-zero weights get small random values, and the prompt path
    is scaled by ``_PROMPT_PATH_GAIN``: different prompts then differ by about 0.04, the same order
    as different seeds, while the output level stays the same.
    """
    import torch

    dit = model.model.model
    with torch.no_grad():
        for name, parameter in dit.named_parameters():
            if parameter.ndim > 1 and not parameter.any():
                parameter.normal_(std=0.02)
            if name.startswith("to_cond_embed.") or ".cross_attn.to_out." in name:
                parameter.mul_(_PROMPT_PATH_GAIN)


def _save_tiny_t5(out: Path) -> None:
    """Save a tokenizer and a one-layer T5 encoder that ``from_pretrained("t5-base")`` loads."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    # T5Tokenizer wraps the vocabulary in T5's layout (<pad>=0, </s>=1, <unk>=2, then the
    # pieces, then 100 <extra_id_*> sentinels), so no sentencepiece model file is needed.
    tokenizer = T5Tokenizer(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *_unigram_pieces()], extra_ids=100)
    tokenizer.save_pretrained(out)

    config = T5Config(vocab_size=len(tokenizer), d_model=768, d_kv=32, d_ff=64, num_layers=1, num_heads=2)
    T5EncoderModel(config).save_pretrained(out)


def _save_tiny_clap(out: Path) -> None:
    """Save a processor and a tiny CLAP that ``from_pretrained(CLAP_REPO_ID)`` loads.

    The architecture is the real checkpoint's: a RoBERTa text encoder, an HTSAT audio encoder with
    feature fusion (``aff_2d``) on 64-band mels of 10 s at 48 kHz (``spec_size`` 256, patch size 4,
    window 8, four stages), projection heads. Only widths and depths shrink. The tokenizer is
    byte-level BPE with no merges: every byte of a prompt is a token, so no prompt meets ``<unk>``,
    and nothing is trained (a trained vocabulary could differ between builds).
    """
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer
    from transformers.utils import logging

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0-4
    vocab = {token: index for index, token in enumerate(specials + sorted(ByteLevel.alphabet()))}
    tokenizer = RobertaTokenizer(vocab=vocab, merges=[], model_max_length=512)
    ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=tokenizer).save_pretrained(out)
    config = ClapConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 64, "projection_dim": 32},
        audio_config={"patch_embeds_hidden_size": 16, "hidden_size": 128, "depths": [1, 1, 1, 1],
                      "num_attention_heads": [1, 1, 2, 2], "enable_fusion": True, "fusion_type": "aff_2d",
                      "projection_dim": 32},
        projection_dim=32,
    )  # fmt: skip
    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()  # "Writing model shards" on stderr would interleave with test output
    try:
        ClapModel(config).save_pretrained(out)
    finally:
        if bars:
            logging.enable_progress_bar()


def _unigram_pieces() -> list[tuple[str, float]]:
    """Unigram pieces with log-frequency scores: the corpus words, and single characters as fallback.

    Counted here rather than trained with ``tokenizers.trainers.UnigramTrainer``, whose output
    changes from run to run (multithreaded float sums, hash-ordered scores for rare characters)
    and would make the cache, and its commit, differ between identical builds.
    """
    counts = Counter(_WORD_START + word for word in (_CORPUS + _CORPUS.lower()).split())
    counts.update([_WORD_START, *_ALPHABET])
    total = sum(counts.values())
    scores = {piece: round(math.log(count / total), 6) for piece, count in counts.items()}
    return sorted(scores.items(), key=lambda piece_score: (-piece_score[1], piece_score[0]))


def _weights_bytes(state_dict: Mapping, weights_name: str) -> bytes:
    """Serialise a state dict as the real repo ships it: safetensors, or a ``{"state_dict": ...}``
    ``.ckpt`` (Small). Clones make every tensor contiguous and unshared, as safetensors requires."""
    import io

    import torch
    from safetensors.torch import save

    tensors = {key: tensor.detach().clone().contiguous() for key, tensor in state_dict.items()}
    if weights_name.endswith(".safetensors"):
        return save(tensors)
    buffer = io.BytesIO()
    torch.save({"state_dict": tensors}, buffer)
    return buffer.getvalue()


def _add_repo(hub: Path, repo_id: str, files: Mapping[str, bytes]) -> None:
    """Lay ``files`` out as huggingface_hub caches a download: content-addressed blobs,
    a snapshot of symlinks named by a commit, and ``refs/main`` naming that commit."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    commit = hashlib.sha1(json.dumps(digests, sort_keys=True).encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (repo / "blobs" / digests[name]).write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", digests[name]))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)  # no trailing newline, as huggingface_hub writes it


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a tiny Stable Audio Open model into an offline HF cache.")
    parser.add_argument("--hf-home", type=Path, required=True, help="directory to use as HF_HOME")
    parser.add_argument("--sample-size", type=int, help="generation window in samples (default: the real model's)")
    parser.add_argument("--repo-id", choices=tuple(_VARIANTS), default=DEMO_REPO_ID, help="which architecture")
    args = parser.parse_args(argv)
    hide_library_warnings()
    # stable_audio_tools prints notices to stdout; keep stdout to the path so shells can capture it.
    with contextlib.redirect_stdout(sys.stderr):
        hf_home = build_tiny_hub_cache(args.hf_home, sample_size=args.sample_size, repo_id=args.repo_id)
    print(hf_home)


if __name__ == "__main__":
    main()
