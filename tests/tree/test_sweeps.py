"""Sweeps in the tree: ``_sweep``/``_zip``/``_name`` expansion, templates, naming, errors, seeds; new leaf fields."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from stable_audio_tools_ext.model.families import SAMPLER_NAMES
from stable_audio_tools_ext.output.resume import OutputSettings, fingerprint
from stable_audio_tools_ext.request import GenerationRequest
from stable_audio_tools_ext.tree.conditions import ConditionTreeError
from stable_audio_tools_ext.tree.plan import SamplingDefaults, build_plan
from stable_audio_tools_ext.tree.reader import parse_condition_tree, read_condition_file
from tests.conftest import REPO_ROOT
from tests.trees import SWEEP_TREE

WINDOW = 2097152 / 44100


def parse(text: str, max_items: int = 1_000_000, base_dir: Path | None = None):
    return parse_condition_tree(textwrap.dedent(text), SAMPLER_NAMES, "tree.yaml", max_items, base_dir)


def problems_of(text: str, max_items: int = 1_000_000, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConditionTreeError) as info:
        parse(text, max_items, base_dir)
    return [p.render("tree.yaml") for p in info.value.problems]


def plan(text: str, **defaults):
    return build_plan(parse(text), SamplingDefaults(**defaults), WINDOW, "wav")


def test_the_issue_example_gives_twelve_named_leaves_with_filled_prompts() -> None:
    leaves = parse(SWEEP_TREE)
    loops = [leaf for leaf in leaves if leaf.path[:2] == ("drums", "loops")]
    assert [leaf.path[-1] for leaf in loops] == [
        f"{genre}-{bpm}-cfg{cfg}" for genre in ("techno", "hip hop", "jazz") for bpm in (90, 120) for cfg in (3, 7)
    ]
    first = loops[0]
    assert first.prompt == "90 BPM techno drum loop" and first.cfg_scale == 3.0 and first.seconds_total == 10
    assert first.vars == {"genre": "techno", "bpm": 90, "cfg_scale": 3}
    assert first.line == 3  # the swept leaf's line, for messages about any of its combinations
    items = plan(SWEEP_TREE)
    assert items[0].relpath == "drums/loops/techno-90-cfg3_item-1.wav" and items[0].vars == first.vars


def test_zip_advances_together_and_multiplies_with_sweep_and_defaults_apply() -> None:
    leaves = parse(
        """
        fx:
          _defaults: {seconds_total: 4, prompt: "{size} {thing} at {bpm} BPM"}
          hits:
            _sweep: {size: [big, small]}
            _zip: {thing: [door, drum], bpm: [60, 120]}
        """
    )
    assert [leaf.name for leaf in leaves] == ["fx/hits/big-door-60", "fx/hits/big-drum-120",
                                              "fx/hits/small-door-60", "fx/hits/small-drum-120"]  # fmt: skip
    assert leaves[1].prompt == "big drum at 120 BPM" and all(leaf.seconds_total == 4 for leaf in leaves)


def test_default_names_are_readable_and_templates_take_format_specs_and_literal_braces() -> None:
    leaves = parse(
        """
        loops:
          _sweep: {genre: [hip hop], cfg_scale: [3.5], cfg_interval: [[0, 0.5]]}
          prompt: "{genre} {{live}} at cfg {cfg_scale:g}"
        """
    )
    assert leaves[0].name == "loops/hip-hop-3.5-0-0.5"
    assert leaves[0].prompt == "hip hop {live} at cfg 3.5" and leaves[0].cfg_interval == (0.0, 0.5)


def test_every_leaf_fills_its_templates_so_a_double_brace_is_one_brace_everywhere() -> None:
    plain, swept = parse(
        """
        plain: {prompt: "a {{live}} beat", negative_prompt: "no {{x}}"}
        swept: {_sweep: {g: [jazz]}, prompt: "a {g} {{live}} beat", negative_prompt: "no {{x}}"}
        """
    )
    assert (plain.prompt, plain.negative_prompt) == ("a {live} beat", "no {x}")
    assert (swept.prompt, swept.negative_prompt) == ("a jazz {live} beat", "no {x}")


def test_a_placeholder_in_a_leaf_without_a_sweep_is_a_problem_at_its_line_and_path() -> None:
    rendered = problems_of(
        """
        loops:
          _defaults: {prompt: "a {genre} beat", seconds_total: 4}
          swept: {_sweep: {genre: [jazz, techno]}}
          plain: {seconds_total: 2}
        fx:
          door: {prompt: "a {door} slams"}
          brace: {prompt: "a { brace"}
        """
    )
    no_sweep = "this leaf has no '_sweep' or '_zip' whose variables could fill it; write '{{' and '}}' for literal braces"
    assert rendered == [
        f"tree.yaml:5: loops/plain/prompt: unknown placeholder {{genre}} in 'a {{genre}} beat': {no_sweep}; the "
        "prompt comes from '_defaults'",
        f"tree.yaml:7: fx/door/prompt: unknown placeholder {{door}} in 'a {{door}} slams': {no_sweep}",
        "tree.yaml:8: fx/brace/prompt: invalid template 'a { brace': expected '}' before end of string (write '{{' "
        "and '}}' for literal braces)",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("leaf", "expected"),
    [
        ("{_sweep: {cfg_scale: [7, 7.0]}, prompt: x}", "a/b/_sweep/cfg_scale[1]: 7.0 is the same cfg_scale as 7 at [0]"),
        ("{_sweep: {seconds_total: [2, 3, 2.0]}, prompt: x}", "a/b/_sweep/seconds_total[2]: 2.0 is the same "
         "seconds_total as 2 at [0], so both would make the same leaves; keep one"),  # fmt: skip
        ("{_sweep: {cfg_interval: [[0, 1], [0.0, 1.0]]}, prompt: x}", "a/b/_sweep/cfg_interval[1]: [0.0, 1.0] is the same"),
        ("{_sweep: {g: [a, b, a]}, prompt: '{g}'}", "a/b/_sweep/g[2]: 'a' is the same g as 'a' at [0]"),
        ("{_zip: {cfg_scale: [7, 5, 7.0], steps: [10, 10, 10]}, prompt: x}", "a/b/_zip: position [2] (cfg_scale=7.0, "
         "steps=10) is the same as position [0], so both would make the same leaves; keep one"),  # fmt: skip
    ],
)
def test_sweep_values_that_make_the_same_leaves_are_reported_where_they_repeat(leaf: str, expected: str) -> None:
    (problem,) = problems_of(f"a:\n  b: {leaf}\n")
    assert problem.startswith("tree.yaml:2: ") and expected in problem


def test_values_alike_only_as_numbers_stay_apart_where_they_read_differently() -> None:
    leaves = parse("a: {_sweep: {n: [7, 7.0]}, prompt: '{n} hits'}\nb: {_zip: {cfg_scale: [7, 7.0], steps: [1, 2]}, prompt: x}\n")
    assert [(leaf.name, leaf.prompt) for leaf in leaves[:2]] == [("a/7", "7 hits"), ("a/7.0", "7.0 hits")]
    assert [(leaf.name, leaf.cfg_scale, leaf.steps) for leaf in leaves[2:]] == [("b/7-1", 7.0, 1), ("b/7.0-2", 7.0, 2)]


def test_one_problem_in_a_sweep_hides_no_other_of_the_same_leaf() -> None:
    # The issue's leaf: a bad value and an unknown placeholder, both reported.
    assert problems_of('a:\n  b: {_sweep: {cfg_scale: [4, "x"]}, prompt: "{nope} loop"}\n') == [
        "tree.yaml:2: a/b/_sweep/cfg_scale[1]: expected a finite number, got str 'x'",
        "tree.yaml:2: a/b/prompt: unknown placeholder {nope} in '{nope} loop'; the sweep's variables are: cfg_scale",
    ]
    rendered = problems_of(
        """
        a:
          b:
            _sweep: {g: [x, y], cfg_scale: [4, high]}
            _name: "n-{cfg_scale}"
            prompt: "{g} {nope}"
            negative_prompt: "{g:d}"
          c: {_sweep: {cfg_scale: high}, _name: "{cfg_scale}", prompt: "{nope}"}
        """
    )
    assert [line.split(": ", 2)[1] for line in rendered] == [
        "a/b/_sweep/cfg_scale[1]",  # left out of the grid, which is still expanded with cfg_scale 4:
        "a/b/_name",  # g='y', cfg_scale=4 and g='x', cfg_scale=4 both get the leaf name 'n-4'
        "a/b/prompt",  # unknown placeholder {nope}; {g} is known
        "a/b/negative_prompt", "a/b/negative_prompt",  # cannot fill '{g:d}' with g='x' (and g='y')
        "a/c/_sweep/cfg_scale",  # not a list: no grid, but its name still is a variable the templates may use
        "a/c/prompt",
    ]
    assert "both get the leaf name 'n-4'" in rendered[1] and "cannot fill '{g:d}' with g='y'" in rendered[4]
    assert rendered[6].endswith("unknown placeholder {nope} in '{nope}'; the sweep's variables are: cfg_scale")


@pytest.mark.parametrize(
    "leaf, expected",
    [
        ('{_sweep: {g: [a]}, prompt: "{genre} loop"}', "tree.yaml:2: a/b/prompt: unknown placeholder {genre} in "
         "'{genre} loop'; the sweep's variables are: g"),  # fmt: skip
        ('{_sweep: {g: [a]}, prompt: "{g loop"}', "a/b/prompt: invalid template"),
        ("{_sweep: {g: a}, prompt: x}", "a/b/_sweep/g: expected a list of values, got the scalar 'a'"),
        ("{_sweep: [g, h], prompt: x}", "a/b/_sweep: expected a mapping of variable names to lists, got a list"),
        ("{_sweep: {g: []}, prompt: x}", "a/b/_sweep/g: empty list"),
        ("{_sweep: {g: [a, null]}, prompt: x}", "a/b/_sweep/g[1]: expected a value, got null"),
        ("{_sweep: {cfg_scale: [3, high]}, prompt: x}", "a/b/_sweep/cfg_scale[1]: expected a finite number, got str"),
        ("{_sweep: {steps: [10, 0]}, prompt: x}", "a/b/_sweep/steps[1]: expected an integer >= 1"),
        ("{_sweep: {cfg_interval: [[0.5, 0.2]]}, prompt: x}", "a/b/_sweep/cfg_interval[0]: expected [lo, hi]"),
        ('{_sweep: {g: [a, b], h: [1, 2]}, _name: "{g}", prompt: x}',
         "a/b/_name: g='a', h=2 and g='a', h=1 both get the leaf name 'a'"),  # fmt: skip
        ("{_sweep: {g: [Jazz, jazz]}, prompt: x}", "both get the leaf name 'jazz' / 'Jazz' (names differing only in case"),
        ('{_sweep: {g: ["x/y"]}, _name: "{g}", prompt: x}', "a/b/_name: the leaf name 'x/y' for g='x/y' cannot be a "
         "file name: name must not contain '/'"),  # fmt: skip
        ("{_sweep: {g: ['..']}, prompt: x}", "'..' is not allowed as a name (set '_name' to name the combinations)"),
        ("{_zip: {g: [a, b], h: [1]}, prompt: x}", "a/b/_zip: the lists of '_zip' advance together, so they must be "
         "equally long; got g: 2, h: 1"),  # fmt: skip
        ("{_sweep: {g: [a]}, _zip: {g: [b]}, prompt: x}", "a/b/_zip/g: 'g' is in both '_sweep' and '_zip'"),
        ("{_sweep: {prompt: [a]}, prompt: x}", "a/b/_sweep/prompt: 'prompt' is both swept and set as a field"),
        ("{_sweep: {my-var: [a]}, prompt: x}", "a/b/_sweep/my-var: a sweep variable name must be letters"),
        ('{_name: "{g}", prompt: x}', "a/b/_name: '_name' names the leaves of a '_sweep' or '_zip'"),
        ('{_sweep: {g: [a]}, _name: "{h}", prompt: x}', "a/b/_name: unknown placeholder {h}"),
        ('{_sweep: {g: [""]}, _name: "n{g}", prompt: "{g}"}', "a/b/prompt: after filling in g='': must not be empty"),
        ('{_sweep: {g: [a]}, _name: "{g:d}", prompt: x}', "a/b/_name: cannot fill '{g:d}' with g='a'"),
        ("{_sweep: {g: [a]}}", "a/b: leaf has no 'prompt'"),
        ("{prompt: x, cfg_interval: [0.2]}", "a/b/cfg_interval: expected [lo, hi] with 0 <= lo <= hi <= 1"),
        ("{prompt: x, cfg_interval: [0, 2]}", "a/b/cfg_interval: expected [lo, hi]"),
        ("{prompt: x, cfg_interval: 0.5}", "a/b/cfg_interval: expected [lo, hi]"),
        ("{prompt: x, init_noise_level: 0}", "a/b/init_noise_level: expected a number > 0"),
    ],
)
def test_each_sweep_problem_names_its_line_and_yaml_path(leaf: str, expected: str) -> None:
    rendered = problems_of(f"a:\n  b: {leaf}\n")
    assert any(expected in line for line in rendered), rendered
    assert all(line.startswith("tree.yaml:2: ") for line in rendered), rendered


def test_sweep_keys_belong_in_leaves_not_defaults() -> None:
    rendered = problems_of("a:\n  _defaults: {_sweep: {g: [a]}}\n  b: {prompt: x}\n")
    assert any("a/_defaults/_sweep: unknown '_defaults' field ('_sweep' belongs in a leaf" in r for r in rendered)


def test_a_sweep_problem_repeated_over_many_combinations_is_reported_once_and_floods_are_cut() -> None:
    rendered = problems_of('a:\n  b: {_sweep: {g: [a, b, c], h: [1, 2, 3]}, _name: "x{h}", prompt: x}\n')
    assert sum("both get the leaf name" in line for line in rendered) == 6  # every later g collides, once per h
    many = problems_of("a:\n  b: {_sweep: {g: [%s], h: [1, 2]}, _name: '{h}', prompt: x}\n" % ", ".join(map(str, range(30))))
    assert len(many) == 11 and "... and 48 more problems in this sweep" in many[-1]


def test_the_item_limit_counts_a_sweep_before_building_it() -> None:
    values = "[" + ", ".join(str(i) for i in range(100)) + "]"
    tree = f"x-v: &v {values}\na:\n  b: {{_sweep: {{g: *v, h: *v, i: *v}}, prompt: x}}\n"
    rendered = problems_of(tree, max_items=1000)
    assert rendered == ["tree.yaml:3: a/b: too many leaves: this sweep makes 1,000,000 leaves, and the tree makes "
                        "1,000,000 leaves (an alias counts once per use) and passes 1,000 here; every leaf makes at "
                        "least one item, so the tree exceeds the limit of 1,000 items (raise it with --max-items)"]  # fmt: skip
    assert len(parse(tree.replace("i: *v", "i: [1]"), max_items=10_000)) == 10_000


def test_growing_a_sweep_keeps_every_existing_combinations_seed_and_file() -> None:
    before = {item.relpath: item.request for item in plan(SWEEP_TREE, base_seed=7)}
    grown = {item.relpath: item.request for item in plan(SWEEP_TREE.replace("[90, 120]", "[90, 120, 140]"), base_seed=7)}
    assert len(grown) == len(before) + 6
    assert all(grown[path] == request for path, request in before.items())
    assert len({request.seed for request in grown.values()}) == len(grown)


def test_a_seed_set_on_a_sweep_is_shared_so_combinations_compare_like_for_like() -> None:
    items = plan("a:\n  b: {_sweep: {cfg_scale: [3, 7]}, seed: 42, prompt: x}\n", n_samples=2)
    assert [(item.relpath, item.request.seed) for item in items] == [
        ("a/b/3_item-1.wav", 42), ("a/b/3_item-2.wav", 43), ("a/b/7_item-1.wav", 42), ("a/b/7_item-2.wav", 43)]  # fmt: skip


def test_init_audio_is_found_beside_the_yaml_file_and_identified_by_its_bytes(tmp_path: Path) -> None:
    (tmp_path / "stems").mkdir()
    (tmp_path / "stems" / "a.wav").write_bytes(b"RIFF-a")
    (tmp_path / "stems" / "b.wav").write_bytes(b"RIFF-b")
    tree = tmp_path / "tree.yaml"
    tree.write_text('v:\n  x: {_sweep: {stem: [a, b], init_noise_level: [0.5]}, init_audio: "stems/{stem}.wav", '
                    "prompt: p}\n")  # fmt: skip
    leaves, problems = read_condition_file(tree, SAMPLER_NAMES)
    assert problems == [] and [leaf.name for leaf in leaves] == ["v/x/a-0.5", "v/x/b-0.5"]
    assert leaves[0].init_audio.path == str(tmp_path / "stems" / "a.wav")
    assert leaves[0].init_audio.sha256 == hashlib.sha256(b"RIFF-a").hexdigest()
    item = build_plan(leaves, SamplingDefaults(), WINDOW, "wav")[0]
    assert item.request.init_noise_level == 0.5
    moved = dataclasses.replace(item, request=dataclasses.replace(
        item.request, init_audio=dataclasses.replace(item.request.init_audio, path="/elsewhere/a.wav")))  # fmt: skip
    settings = OutputSettings("m", "r", "fp32", "wav", False)
    assert fingerprint(moved, settings) == fingerprint(item, settings)  # same bytes, same items


def test_init_audio_without_a_level_gets_upstreams_default_and_others_get_none(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"x")
    items = build_plan(parse("a: {prompt: x, init_audio: a.wav}\nb: {prompt: y, init_noise_level: 3}\n", base_dir=tmp_path),
                       SamplingDefaults(), WINDOW, "wav")  # fmt: skip
    assert items[0].request.init_noise_level == 1.0 and items[1].request.init_noise_level is None


def test_a_missing_init_audio_file_is_reported_at_its_line(tmp_path: Path) -> None:
    rendered = problems_of("a:\n  b:\n    prompt: x\n    init_audio: nothere.wav\n", base_dir=tmp_path)
    assert rendered == [f"tree.yaml:4: a/b/init_audio: file not found: {tmp_path / 'nothere.wav'} "
                        "(init_audio paths are relative to the YAML file)"]  # fmt: skip


def test_fingerprints_of_items_without_the_new_fields_are_unchanged() -> None:
    """Datasets written before init audio, cfg_interval and leaf LoRA adapters existed must resume without regenerating."""
    item = plan("a: {prompt: x}\n")[0]
    settings = OutputSettings("m", "r", "fp32", "wav", False)
    old_request = {f.name: getattr(item.request, f.name) for f in dataclasses.fields(GenerationRequest)
                   if f.name not in ("init_audio", "init_noise_level", "cfg_interval", "lora")}  # fmt: skip
    payload = {"request": old_request, "output": dataclasses.asdict(settings)}
    assert fingerprint(item, settings) == hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    interval = dataclasses.replace(item, request=dataclasses.replace(item.request, cfg_interval=(0.0, 0.5)))
    assert fingerprint(interval, settings) != fingerprint(item, settings)
    no_adapter = dataclasses.replace(item, request=dataclasses.replace(item.request, lora=()))  # lora: [] in the leaf
    assert fingerprint(no_adapter, settings) != fingerprint(item, settings)


def test_the_parameter_grid_example_expands_as_its_comments_say() -> None:
    leaves, problems = read_condition_file(REPO_ROOT / "example" / "generation" / "parameter_grid.yaml", SAMPLER_NAMES)
    assert problems == []
    by_branch: dict[str, list] = {}
    for leaf in leaves:
        by_branch.setdefault("/".join(leaf.path[:2]), []).append(leaf)
    assert {branch: len(group) for branch, group in by_branch.items()} == {
        "drums/loops": 18, "drums/fills": 4, "foley/impacts": 3}  # fmt: skip
    assert by_branch["drums/loops"][-1].name == "drums/loops/afrobeat-124bpm-cfg7"
    fills = by_branch["drums/fills"]
    assert [leaf.path[-1] for leaf in fills] == ["guidance-from-0", "guidance-from-0.1", "guidance-from-0.3",
                                                 "guidance-from-0.5"]  # fmt: skip
    assert {leaf.seed for leaf in fills} == {2024} and fills[1].cfg_interval == (0.1, 1.0)
    door = by_branch["foley/impacts"][0]
    assert (door.name, door.seconds_total, door.n_samples) == ("foley/impacts/wooden door", 3, 2)
    assert door.prompt == "wooden door slammed shut, close microphone, dry"
    assert door.negative_prompt == "low quality, distorted"  # _defaults still apply


def test_init_audio_is_refused_where_no_files_may_be_read_and_devices_are_never_read(tmp_path: Path) -> None:
    assert problems_of("a: {prompt: x, init_audio: a.wav}\n") == [
        "tree.yaml:1: a/init_audio: init audio files are not read here: use generate.py, which reads them beside "
        "its YAML file"]  # fmt: skip
    tree = tmp_path / "tree.yaml"
    tree.write_text("a: {prompt: x, init_audio: /dev/zero}\nb: {prompt: y, init_audio: .}\n")
    _, problems = read_condition_file(tree, SAMPLER_NAMES)  # /dev/zero would never finish hashing
    assert [p.message for p in problems] == ["cannot read /dev/zero: not a regular file",
                                             f"cannot read {tmp_path}: not a regular file"]  # fmt: skip
    assert read_condition_file(tree, SAMPLER_NAMES, read_init_audio=False)[1][0].message.startswith("init audio files are not read here")
