"""Condition trees shared by several tests."""

# The tree exactly as the reference tool's usage guide shows it (shared/seeds/000_*.txt).
SEED_DOCUMENT_TREE = """\
music:
  drum:
    sample-1:
      prompt: 128 BPM tech house drum loop
      seconds_start: 0
      seconds_total: 30
    sample-2:
      prompt: 140 BPM heavy metal drum solo
      seconds_start: 0
      seconds_total: 20
sfx:
  sample-1:
    prompt: Thunder claps, and hard rain falls and splashes on surfaces
    seconds_start: 0
    seconds_total: 10
  sample-2:
    prompt: Birds chirping and water dripping with some banging in the background
    seconds_start: 0
    seconds_total: 10
"""
