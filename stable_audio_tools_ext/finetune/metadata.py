"""The metadata module ``finetune.py prepare`` writes: captions and timing for stable-audio-tools' trainer.

stable-audio-tools imports it by file path (the dataset config's ``custom_metadata_module``), so it
is written out as text, standard library only (``datasets.audio_dir.metadata_module_source``
provides the record lookup it shares with ``generate.py``'s module). Its records are
``dataset_captions.jsonl`` beside it: per linked file, ``{"path": "splits/<split>/<relpath>",
"captions": [...], "audio": ..., "source": "file:line"}``.

Timing, decided: ``seconds_start`` and ``seconds_total`` are the values stable-audio-tools' own crop
(``PadCrop_Normalized_T``) computes for the read, at the model's sample rate: the crop's offset in
the file rounded down to whole seconds, and the *whole file's* length rounded up - not the crop's.
That is what Stable Audio Open was pretrained on and what upstream's examples do, so fine-tuning
keeps the meaning the conditioning has at generation time (``seconds_start=0, seconds_total=T``
asks for a whole T-second sound, padded with silence to the window): a file shorter than the
window is one such sound; a longer one trains on random crops, each told where in the file it
starts and how long the file is.
"""

from __future__ import annotations

from ..datasets.audio_dir import metadata_module_source

CAPTIONS_NAME = "dataset_captions.jsonl"
CAPTION_POLICIES = ("random", "first")

_DOCSTRING = """Captions for stable-audio-tools' audio_dir dataset, from dataset_captions.jsonl next to this file.

Written by stable-audio-tools-ext (finetune.py prepare). stable-audio-tools imports this file by
path (the dataset config's custom_metadata_module) and calls get_custom_metadata(info, audio) for
every audio file it loads; info["path"] is the link under splits/<split>/ that it scanned.
Standard library only.
"""

_BODY = '''

def get_custom_metadata(info, audio):
    """The prompt and the timing conditions of one read of a file, and its padding mask.

    prompt: one of the file's captions; with CAPTION_POLICY "random" a new draw on every read (so
    successive epochs see different captions of a file), with "first" always the first.
    seconds_start, seconds_total: stable-audio-tools' own values for the crop it took - the crop's
    offset in seconds (rounded down) and the whole file's length in seconds (rounded up), as Stable
    Audio Open was trained, so the timing conditioning keeps its meaning at generation time; for
    pre-encoded latents (finetune.py encode) the latent crop's offset, likewise.
    padding_mask: wrapped in a list. stable-audio-tools 0.0.19's diffusion training step stacks
    md["padding_mask"][0] of every item; SampleDataset gives a flat mask, whose [0] is a scalar,
    and training fails in F.interpolate. Pre-encoded datasets already give a list; so does this.
    """
    record = _record_of(info["path"], info["path"])
    captions = record["captions"]
    return {
        "prompt": captions[0] if CAPTION_POLICY == "first" else random.choice(captions),
        "seconds_start": crop_seconds_start(info),
        "seconds_total": info["seconds_total"],
        "padding_mask": _wrapped_padding_mask(info),
    }
'''


def metadata_module_text(caption_policy: str) -> str:
    """The module's source for one ``--caption-policy``."""
    if caption_policy not in CAPTION_POLICIES:
        raise ValueError(f"caption policy must be one of {CAPTION_POLICIES}, got {caption_policy!r}")
    policy = f"CAPTION_POLICY = {caption_policy!r}  # --caption-policy: random (a caption per read) or first\n"
    return metadata_module_source(_DOCSTRING, CAPTIONS_NAME, policy + _BODY, imports=("random",))
