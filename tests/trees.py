"""Condition trees shared by several test files, and the files each one yields.

Trees used by one test file only stay in that file, next to the assertions that depend on them.
"""

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

# Two branches, _defaults, a start offset and a negative prompt; short clips so a run takes seconds.
# Used where a whole job runs end to end: resume and signals (run/), SLURM (cluster/).
DRUMS_AND_FX_TREE = """\
drums:
  _defaults: {seconds_total: 1.5, n_samples: 2}
  kick: {prompt: kick drum}
  snare: {prompt: snare drum, seconds_start: 0.5}
fx:
  rain: {prompt: rain on a roof, seconds_total: 2}
  door: {prompt: a door slams, seconds_total: 1, negative_prompt: music}
"""
DRUMS_AND_FX_FILES = {
    "drums/kick_item-1.wav", "drums/kick_item-2.wav", "drums/snare_item-1.wav", "drums/snare_item-2.wav",
    "fx/rain_item-1.wav", "fx/door_item-1.wav",
}  # fmt: skip


def alias_bomb(levels: int = 10, width: int = 10) -> str:
    """A "billion laughs" tree: each level names the one below ``width`` times, so ``width**levels`` leaves.

    The anchors live in top-level ``x-`` blocks (ignored as such); ``top`` expands them all. The
    defaults make 10^10 leaves from about a kilobyte: a reader that expands before it counts never ends.
    """
    lines = ["x-l0: &l0 {prompt: boom}"]
    for level in range(1, levels + 1):
        lines.append(f"x-l{level}: &l{level} {{" + ", ".join(f"a{i}: *l{level - 1}" for i in range(width)) + "}")
    return "\n".join(lines) + f"\ntop: *l{levels}\n"

# The sweep of issue 16: 3 genres x 2 tempos x 2 CFG scales = 12 leaves under drums/loops, plus a plain leaf.
SWEEP_TREE = """\
drums:
  loops:
    _sweep: {genre: [techno, hip hop, jazz], bpm: [90, 120], cfg_scale: [3, 7]}
    _name: "{genre}-{bpm}-cfg{cfg_scale}"
    prompt: "{bpm} BPM {genre} drum loop"
    seconds_total: 10
  kick: {prompt: a kick drum, seconds_total: 1}
"""
