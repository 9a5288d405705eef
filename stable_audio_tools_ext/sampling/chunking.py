"""Chunked VAE decoding's geometry, and the ``--decode-chunk`` flag that must respect it.

Torch-free on purpose: the command line parses the flag before any heavy library is imported.
"""

from __future__ import annotations

import argparse

# Chunked decoding overlaps neighbouring chunks by this many latent frames on each side; the Stable
# Audio Open paper reports decoding identical to whole-sequence decoding from 16 per side.
DECODE_OVERLAP_PER_SIDE = 16
# Upstream's decoder advances by ``chunk - overlap`` frames per chunk, so a chunk must be longer than
# the total overlap. Measured on the tiny model (80 frames): 32 fails with "range() arg 3 must not be
# zero", 16 and 31 with an UnboundLocalError - after the whole batch was sampled; 33 works and
# matches whole-sequence decoding within 4.2e-7 (one new frame per chunk: slow, but correct).
MIN_DECODE_CHUNK = 2 * DECODE_OVERLAP_PER_SIDE + 1


def decode_chunk_frames(text: str) -> int:
    """argparse type of ``--decode-chunk``: an integer chunk length the chunked decoder can work with."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {MIN_DECODE_CHUNK}, got {text!r}") from None
    if value < MIN_DECODE_CHUNK:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= {MIN_DECODE_CHUNK}, got {value}: chunks overlap {DECODE_OVERLAP_PER_SIDE} "
            f"latent frames on each side, so a chunk must be longer than {2 * DECODE_OVERLAP_PER_SIDE}"
        )
    return value
