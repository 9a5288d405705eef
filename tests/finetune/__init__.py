"""Tests of ``stable_audio_tools_ext.finetune`` and ``finetune.py``: captioned audio in, a dataset stable-audio-tools reads out."""
