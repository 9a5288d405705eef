"""Tests of ``stable_audio_tools_ext.run``."""
