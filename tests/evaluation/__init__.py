"""Tests of ``stable_audio_tools_ext.evaluation`` and ``finetune.py evaluate``: several models on one tree, compared."""
