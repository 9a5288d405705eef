"""Work items: output paths, seeds, window and collision checks, batching."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stable_audio_tools_ext.model.families import SAMPLER_NAMES
from stable_audio_tools_ext.request import LATENT_BUCKET_FRAMES, LatentGeometry, latent_frames_for
from stable_audio_tools_ext.run.views import imbalance, rank_costs
from stable_audio_tools_ext.tree.conditions import ConditionTreeError, warnings_report
from stable_audio_tools_ext.tree.plan import (
    SamplingDefaults,
    balanced_order,
    build_plan,
    derive_seed,
    make_batches,
    plan_warnings,
)
from stable_audio_tools_ext.tree.reader import parse_condition_tree
from tests.trees import SEED_DOCUMENT_TREE

WINDOW = 2097152 / 44100  # stable-audio-open-1.0: 47.55 s


def plan(text: str, window: float = WINDOW, **defaults):
    leaves = parse_condition_tree(text, SAMPLER_NAMES)
    return build_plan(leaves, SamplingDefaults(**defaults), window, "wav")


@pytest.mark.parametrize("n", [1, 2, 3])
def test_seed_document_tree_gives_exactly_the_documented_files(n: int) -> None:
    items = plan(SEED_DOCUMENT_TREE, n_samples=n)
    expected = [
        f"{leaf}_item-{k}.wav"
        for leaf in ("music/drum/sample-1", "music/drum/sample-2", "sfx/sample-1", "sfx/sample-2")
        for k in range(1, n + 1)
    ]
    assert [item.relpath for item in items] == expected
    assert [item.k for item in items[:n]] == list(range(1, n + 1))
    assert items[0].request.seconds_total == 30.0 and items[0].request.prompt == "128 BPM tech house drum loop"


def test_cli_defaults_fill_what_the_leaf_leaves_open() -> None:
    (item,) = plan("a:\n  b: {prompt: x}\n", steps=12, cfg_scale=3.5, sampler_type="dpmpp-2m", sigma_min=0.5, sigma_max=80)
    r = item.request
    assert (r.steps, r.cfg_scale, r.sampler_type, r.sigma_min, r.sigma_max) == (12, 3.5, "dpmpp-2m", 0.5, 80)
    assert r.seconds_start == 0.0 and r.seconds_total == pytest.approx(WINDOW)  # default: the whole window


def test_leaf_seed_counts_up_per_item_and_overrides_base_seed() -> None:
    items = plan("a:\n  b: {prompt: x, seed: 41, n_samples: 3}\n", base_seed=999)
    assert [i.request.seed for i in items] == [41, 42, 43]


def test_derived_seeds_depend_on_base_seed_leaf_and_k_only() -> None:
    items = plan(SEED_DOCUMENT_TREE, n_samples=2, base_seed=0)
    seeds = [i.request.seed for i in items]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**32 for s in seeds)
    assert seeds == [i.request.seed for i in plan(SEED_DOCUMENT_TREE, n_samples=2, base_seed=0)]
    assert seeds != [i.request.seed for i in plan(SEED_DOCUMENT_TREE, n_samples=2, base_seed=1)]
    # Adding a leaf or items elsewhere never moves an existing item's seed.
    grown = plan(SEED_DOCUMENT_TREE + "zzz:\n  new: {prompt: q}\n", n_samples=3)
    by_path = {i.relpath: i.request.seed for i in grown}
    assert all(by_path[i.relpath] == i.request.seed for i in items)


def test_derived_seed_is_stable_across_processes_and_hash_salts() -> None:
    code = "from stable_audio_tools_ext.tree.plan import derive_seed; print(derive_seed(0, 'music/drum/sample-1', 1))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": salt}, capture_output=True, text=True, check=True
        ).stdout.strip()
        for salt in ("1", "2")
    }
    assert outputs == {str(derive_seed(0, "music/drum/sample-1", 1))}
    # Pinned value: changing the derivation silently would change every user's dataset.
    assert derive_seed(0, "music/drum/sample-1", 1) == 1647447235


def test_duration_beyond_window_names_the_leaf() -> None:
    with pytest.raises(ConditionTreeError) as info:
        plan("a:\n  long: {prompt: x, seconds_start: 10, seconds_total: 40}\n  ok: {prompt: y, seconds_total: 5}\n")
    (problem,) = info.value.problems
    assert problem.yaml_path == "a/long" and "47.55 s window" in problem.message and problem.line == 2


def test_case_only_collisions_are_refused() -> None:
    with pytest.raises(ConditionTreeError, match="collides with a/Kick_item-1.wav"):
        plan("a:\n  Kick: {prompt: x}\n  kick: {prompt: y}\n")


def test_item_limit_is_checked_before_expanding() -> None:
    leaves = parse_condition_tree("a:\n  b: {prompt: x, n_samples: 5000}\n", SAMPLER_NAMES)
    with pytest.raises(ConditionTreeError, match="5,000 items, more than the limit of 1,000"):
        build_plan(leaves, SamplingDefaults(), WINDOW, "wav", max_items=1000)


def test_batches_group_compatible_items_and_respect_size() -> None:
    items = plan(
        "a:\n"
        "  x: {prompt: x, n_samples: 3}\n"
        "  y: {prompt: y, steps: 10, n_samples: 2}\n"
        "  z: {prompt: z, n_samples: 2}\n",
    )
    batches = make_batches(items, batch_size=2)
    assert [[i.relpath.split("/")[1] for i in b] for b in batches] == [
        ["x_item-1.wav", "x_item-2.wav"],
        ["x_item-3.wav", "z_item-1.wav"],
        ["z_item-2.wav"],
        ["y_item-1.wav", "y_item-2.wav"],
    ]
    assert all(len({i.request.batch_key() for i in b}) == 1 for b in batches)


GEOMETRY = LatentGeometry(sample_rate=44100, downsampling_ratio=2048, window_frames=1024)


@given(start=st.floats(0, 20), total=st.floats(0.01, 27.5))
def test_latent_buckets_never_truncate_the_requested_audio(start: float, total: float) -> None:
    frames = latent_frames_for(start + total, GEOMETRY)
    assert frames * 2048 / 44100 >= start + total  # every requested sample is generated
    assert frames % LATENT_BUCKET_FRAMES == 0 and frames <= 1024
    assert (frames - LATENT_BUCKET_FRAMES) * 2048 / 44100 < start + total  # and no more than one bucket extra
    assert latent_frames_for(start + total, GEOMETRY, "full") == 1024


def test_plan_assigns_latent_lengths_by_mode() -> None:
    text = "a:\n  short: {prompt: x, seconds_total: 10}\n  long: {prompt: y, seconds_start: 5, seconds_total: 42.5}\n"
    leaves = parse_condition_tree(text, SAMPLER_NAMES)
    auto = build_plan(leaves, SamplingDefaults(), WINDOW, "wav", geometry=GEOMETRY)
    assert [i.request.latent_frames for i in auto] == [224, 1024]  # 10 s = 215.3 frames -> 224
    full = build_plan(leaves, SamplingDefaults(), WINDOW, "wav", geometry=GEOMETRY, latent_mode="full")
    assert [i.request.latent_frames for i in full] == [1024, 1024]


@pytest.mark.parametrize("world_size", [2, 3, 4, 8])
def test_cost_balanced_order_keeps_ranks_within_10_percent(world_size: int) -> None:
    # A skewed sweep: many short effects, a few long beds, two step counts (mixed cost classes).
    rng = random.Random(world_size)
    lines = ["sweep:"]
    for i in range(120):
        seconds = round(min(47.0, rng.expovariate(1 / 6) + 0.5), 2)
        steps = 100 if i % 5 else 250
        lines.append(f"  s{i:03d}: {{prompt: sound {i}, seconds_total: {seconds}, steps: {steps}}}")
    leaves = parse_condition_tree("\n".join(lines) + "\n", SAMPLER_NAMES)
    items = build_plan(leaves, SamplingDefaults(), WINDOW, "wav", geometry=GEOMETRY)
    costs = rank_costs(balanced_order(items, world_size, 1024), world_size, 1024)
    assert imbalance(costs) <= 0.10, costs
    naive = rank_costs(items, world_size, 1024)  # the reference split: document order, by count
    assert imbalance(costs) < imbalance(naive)
    assert sorted(i.relpath for i in balanced_order(items, world_size, 1024)) == sorted(i.relpath for i in items)


def test_batch_size_can_depend_on_the_group() -> None:
    leaves = parse_condition_tree("a:\n  x: {prompt: x, n_samples: 5, seconds_total: 2}\n  y: {prompt: y, n_samples: 3, seconds_total: 40}\n", SAMPLER_NAMES)
    items = build_plan(leaves, SamplingDefaults(), WINDOW, "wav", geometry=GEOMETRY)
    size_by_length = {48: 4, 864: 2}  # as --batch-size auto would find: smaller batches for longer latents
    batches = make_batches(items, lambda item: size_by_length[item.request.latent_frames])
    assert [len(b) for b in batches] == [4, 1, 2, 1]


NEGATIVE_PROMPTS_TREE = """\
_defaults: {negative_prompt: muddy}
kit:
  kick: {prompt: kick, n_samples: 3}
  snare: {prompt: snare, cfg_scale: 1}
  hat: {prompt: hat, negative_prompt: null}
  clap: {prompt: clap, cfg_scale: 4}
"""


def test_a_negative_prompt_without_guidance_is_warned_once_per_leaf() -> None:
    # cfg 1 from the command line (Stable Audio Open Small's default): kick (3 items) and snare.
    # hat has no negative prompt, clap has guidance; the run goes on either way.
    items = plan(NEGATIVE_PROMPTS_TREE, cfg_scale=1.0)
    warnings = plan_warnings(items)
    assert [(w.yaml_path, w.line) for w in warnings] == [("kit/kick", 3), ("kit/snare", 4)]
    assert warnings_report(warnings, "t.yaml").splitlines()[0] == (
        "warning: t.yaml:3: kit/kick: negative_prompt is ignored: the cfg_scale this leaf gets is 1, which switches "
        "off the classifier-free guidance a negative prompt works through; set cfg_scale above 1 to use it"
    )
    # With guidance from the command line, only the leaf that sets cfg_scale 1 itself is warned.
    assert [w.yaml_path for w in plan_warnings(plan(NEGATIVE_PROMPTS_TREE, cfg_scale=7.0))] == ["kit/snare"]


def test_no_warning_without_a_negative_prompt_or_with_guidance() -> None:
    assert plan_warnings(plan("a:\n  b: {prompt: x, cfg_scale: 1}\n")) == []
    assert plan_warnings(plan("a:\n  b: {prompt: x, negative_prompt: hum, cfg_scale: 1.5}\n")) == []
    assert warnings_report([], "t.yaml") == ""
