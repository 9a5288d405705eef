"""YAML condition tree: the reference format, extensions, inheritance and error reporting."""

from __future__ import annotations

import textwrap

import pytest

from stable_audio_tools_ext.model.families import SAMPLER_NAMES
from stable_audio_tools_ext.tree.conditions import ConditionTreeError, Problem
from stable_audio_tools_ext.tree.reader import parse_condition_tree, read_condition_file
from tests.trees import SEED_DOCUMENT_TREE


def parse(text: str):
    return parse_condition_tree(textwrap.dedent(text), SAMPLER_NAMES, source="tree.yaml")


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConditionTreeError) as info:
        parse(text)
    return [p.render("tree.yaml") for p in info.value.problems]


def test_seed_document_tree_parses_in_document_order() -> None:
    leaves = parse(SEED_DOCUMENT_TREE)
    assert [leaf.name for leaf in leaves] == ["music/drum/sample-1", "music/drum/sample-2", "sfx/sample-1", "sfx/sample-2"]
    first = leaves[0]
    assert first.prompt == "128 BPM tech house drum loop"
    assert (first.seconds_start, first.seconds_total) == (0.0, 30.0)
    assert first.negative_prompt is None and first.seed is None and first.steps is None
    assert first.line == 4


def test_defaults_inherit_nearest_level_wins_and_leaf_wins() -> None:
    leaves = parse(
        """
        _defaults: {seconds_total: 8, cfg_scale: 5, negative_prompt: muddy}
        a:
          _defaults: {seconds_total: 4, steps: 20}
          x: {prompt: one}
          y: {prompt: two, seconds_total: 2, negative_prompt: null}
        b:
          z: {prompt: three, sampler_type: dpmpp-2m, seed: 7, n_samples: 3}
        """
    )
    by_name = {leaf.name: leaf for leaf in leaves}
    assert by_name["a/x"].seconds_total == 4.0 and by_name["a/x"].steps == 20 and by_name["a/x"].cfg_scale == 5.0
    assert by_name["a/x"].negative_prompt == "muddy"
    assert by_name["a/y"].seconds_total == 2.0 and by_name["a/y"].negative_prompt is None
    assert by_name["b/z"].seconds_total == 8.0 and by_name["b/z"].steps is None
    assert (by_name["b/z"].sampler_type, by_name["b/z"].seed, by_name["b/z"].n_samples) == ("dpmpp-2m", 7, 3)


def test_anchors_and_merge_keys_are_plain_yaml() -> None:
    leaves = parse(
        """
        _defaults: &common {seconds_start: 1, seconds_total: 5}
        kit:
          kick: {<<: *common, prompt: kick drum}
          snare: {<<: *common, prompt: snare, seconds_total: 2}
        """
    )
    assert [(leaf.name, leaf.seconds_start, leaf.seconds_total) for leaf in leaves] == [
        ("kit/kick", 1.0, 5.0),
        ("kit/snare", 1.0, 2.0),
    ]


def test_numeric_keys_become_path_segments() -> None:
    assert [leaf.name for leaf in parse("2024:\n  7: {prompt: x}\n")] == ["2024/7"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("music: [a, b\n", "tree.yaml:2: <root>: YAML syntax error"),
        ("- a\n- b\n", "the root must be a mapping"),
        ("prompt: x\nseconds_total: 3\n", "single leaf without a name"),
        ("a:\n  b: {seconds_total: 3}\n", "a/b: leaf has no 'prompt'"),
        ("a:\n  b: {prompt: '   '}\n", "a/b/prompt: must not be empty"),
        ("a:\n  b: {prompt: 808}\n", "a/b/prompt: expected text, got int"),
        ("a:\n  b: {prompt: x, seconds_total: ten}\n", "a/b/seconds_total: expected a number, got str 'ten'"),
        ("a:\n  b: {prompt: x, seconds_total: -1}\n", "a/b/seconds_total: expected a number > 0"),
        ("a:\n  b: {prompt: x, seconds_total: 0}\n", "a/b/seconds_total: expected a number > 0"),
        ("a:\n  b: {prompt: x, seconds_total: .nan}\n", "a/b/seconds_total: expected a finite number"),
        ("a:\n  b: {prompt: x, seconds_start: -2}\n", "a/b/seconds_start: expected a number >= 0"),
        ("a:\n  b: {prompt: x, seed: 1.5}\n", "a/b/seed: expected an integer"),
        ("a:\n  b: {prompt: x, seed: -1}\n", "a/b/seed: expected an integer >= 0"),
        ("a:\n  b: {prompt: x, steps: 0}\n", "a/b/steps: expected an integer >= 1"),
        ("a:\n  b: {prompt: x, cfg_scale: high}\n", "a/b/cfg_scale: expected a finite number"),
        ("a:\n  b: {prompt: x, n_samples: 0}\n", "a/b/n_samples: expected an integer >= 1"),
        ("a:\n  b: {prompt: x, sampler_type: dpmpp-3m}\n", "a/b/sampler_type: unknown sampler 'dpmpp-3m'; did you mean"),
        ("a:\n  b: {prompt: x, secons_total: 3}\n", "a/b/secons_total: unknown leaf field; did you mean 'seconds_total'?"),
        ("a:\n  b: {prompt: x}\n  b: {prompt: y}\n", "tree.yaml:3: a/b: duplicate key (first defined on line 2)"),
        ("a:\n  x: 1\n  b: {prompt: y}\n", "a: mixes leaf fields (x) with sub-branches (b)"),
        ("a:\n  b: [prompt, x]\n", "a: lists are not supported (b)"),
        ("a: {}\n", "a: empty mapping"),
        ("'..':\n  b: {prompt: x}\n", "..: '..' is not allowed as a name"),
        ("'a/b':\n  c: {prompt: x}\n", "a/b: name must not contain '/'"),
        ("'a\\\\b':\n  c: {prompt: x}\n", "name must not contain '\\\\'"),
        ("\"a\\tb\":\n  c: {prompt: x}\n", "name must not contain control characters"),
        ("'':\n  c: {prompt: x}\n", ": empty name"),
        ("a:\n  b: !!python/object/apply:os.system [echo hi]\n", "a/b: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"),
        ("a:\n  b: {prompt: !!python/name:os.system x}\n", "a/b/prompt: YAML tag 'tag:yaml.org,2002:python/name:os.system'"),
        ("_defaults: {prompt: !!python/name:os.system x}\na:\n  b: {seed: 1}\n", "_defaults/prompt: cannot read value"),
        ("a:\n  _defaults: {seconds: 3}\n  b: {prompt: x}\n", "a/_defaults/seconds: unknown '_defaults' field"),
    ],
)
def test_each_problem_names_its_yaml_path(text: str, expected: str) -> None:
    rendered = problems_of(text)
    assert any(expected in line for line in rendered), rendered


def test_every_problem_is_reported_at_once() -> None:
    rendered = problems_of(
        """
        a:
          b: {seconds_total: 3}
          c: {prompt: x, steps: 0}
        d:
          e: {prompt: y, secons_total: 2, cfg_scale: loud}
        """
    )
    assert len(rendered) == 4, rendered
    assert [line.split(": ")[1] for line in rendered] == ["a/b", "a/c/steps", "d/e/secons_total", "d/e/cfg_scale"]
    assert all(line.startswith("tree.yaml:") for line in rendered)


def test_file_level_errors(tmp_path) -> None:
    assert read_condition_file(tmp_path / "missing.yaml", SAMPLER_NAMES) == ([], [Problem("", "file not found")])
    assert read_condition_file(tmp_path, SAMPLER_NAMES)[1] == [Problem("", "is a directory, expected a YAML file")]
    binary = tmp_path / "tree.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    (problem,) = read_condition_file(binary, SAMPLER_NAMES)[1]
    assert problem.message.startswith("not UTF-8 text")


def test_reading_a_file_keeps_the_valid_leaves_beside_the_problems(tmp_path) -> None:
    tree = tmp_path / "tree.yaml"
    tree.write_text("a:\n  good: {prompt: fine}\n  bad: {prompt: x, steps: 0}\n")
    leaves, problems = read_condition_file(tree, SAMPLER_NAMES)
    assert [leaf.name for leaf in leaves] == ["a/good"]
    assert [p.yaml_path for p in problems] == ["a/bad/steps"]
