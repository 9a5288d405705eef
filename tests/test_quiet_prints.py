"""``quiet.hide_library_prints``: exactly stable-audio-tools' flash-attn notice is dropped from stdout."""

from __future__ import annotations

import contextlib
import io

from stable_audio_tools_ext.quiet import KNOWN_LIBRARY_PRINTS, hide_library_prints


def test_only_the_known_lines_are_dropped_and_everything_else_passes_in_order() -> None:
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        with hide_library_prints():
            for line in sorted(KNOWN_LIBRARY_PRINTS):
                print(line)
            print("a real message")
            print("flash_attn not installed, disabling Flash Attention (but something else)")
            print("no newline at the end", end="")
    assert captured.getvalue() == (
        "a real message\nflash_attn not installed, disabling Flash Attention (but something else)\nno newline at the end"
    )
