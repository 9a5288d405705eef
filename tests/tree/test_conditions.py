"""YAML condition tree: the reference format, extensions, inheritance and error reporting."""

from __future__ import annotations

import textwrap

import pytest

from stable_audio_tools_ext.datasets.report import REPORT_NAME
from stable_audio_tools_ext.datasets.training import CONFIG_NAME, METADATA_MODULE_NAME, SPLITS_DIRNAME
from stable_audio_tools_ext.model.families import SAMPLER_NAMES
from stable_audio_tools_ext.output.atomic import PARTIAL_SUFFIX
from stable_audio_tools_ext.output.manifest import MANIFEST_NAME, PARTS_DIRNAME
from stable_audio_tools_ext.run.progress import PROGRESS_DIRNAME
from stable_audio_tools_ext.tree.conditions import ConditionTreeError, Problem
from stable_audio_tools_ext.tree.reader import parse_condition_tree, read_condition_file
from stable_audio_tools_ext.tree.reserved import reserved_branch_problem, split_config_name
from stable_audio_tools_ext.tree.yaml_nodes import YamlNodes
from tests.conftest import REPO_ROOT
from tests.trees import SEED_DOCUMENT_TREE, alias_bomb


def parse(text: str, max_items: int = 1_000_000):
    return parse_condition_tree(textwrap.dedent(text), SAMPLER_NAMES, source="tree.yaml", max_items=max_items)


def problems_of(text: str, max_items: int = 1_000_000) -> list[str]:
    with pytest.raises(ConditionTreeError) as info:
        parse(text, max_items)
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


# Aliases: counted on the node graph before anything is built -------------------------------------


@pytest.fixture
def mapping_reads(monkeypatch) -> list[int]:
    """Counts the reader's reads of a mapping's entries, failing the test past 1,000 of them.

    Every bomb below has fewer than 100 mappings; a reader that expands aliases before it counts
    reads the same mappings millions of times (and with the limits used here would never finish).
    """
    reads = [0]
    read_entries = YamlNodes.entries

    def counted(self, node, path):
        reads[0] += 1
        assert reads[0] <= 1000, "the reader reads the same mappings over and over: it expands aliases"
        return read_entries(self, node, path)

    monkeypatch.setattr(YamlNodes, "entries", counted)
    return reads


def test_an_alias_bomb_is_refused_before_any_leaf_is_built_naming_where(tmp_path, mapping_reads) -> None:
    tree = tmp_path / "bomb.yaml"
    tree.write_text(alias_bomb(levels=10, width=10))  # 10^10 leaves in about a kilobyte
    assert len(tree.read_bytes()) < 1200
    leaves, problems = read_condition_file(tree, SAMPLER_NAMES, max_items=1000)
    assert leaves == []  # nothing is built from a tree that is too big
    (problem,) = problems
    # The 1,001st leaf in document order: its index 1000 spelled in base 10 over the ten levels.
    assert problem.render("bomb.yaml") == (
        "bomb.yaml:1: top/a0/a0/a0/a0/a0/a0/a1/a0/a0/a0: too many leaves: the tree makes 10,000,000,000 leaves (an "
        "alias counts once per use) and passes 1,000 here; every leaf makes at least one item, so the tree exceeds "
        "the limit of 1,000 items (raise it with --max-items)"
    )  # the line is where the repeated leaf is written
    assert mapping_reads[0] < 100


def _merge_bomb(levels: int, width: int) -> str:
    """``alias_bomb``'s tree with every level's entries brought in by a merge key (``<<:``) only."""
    lines = ["x-l0: &l0 {prompt: boom}"]
    for level in range(1, levels + 1):
        entries = ", ".join(f"a{i}: *l{level - 1}" for i in range(width))
        lines.append(f"x-l{level}: &l{level} {{<<: [{{{entries}}}]}}")
    return "\n".join(lines) + f"\ntop: *l{levels}\n"


def _sweep_bomb(variables: int) -> str:
    """One leaf whose ``_sweep`` names the same 100-value list ``variables`` times: 100**variables leaves."""
    values = "[" + ", ".join(map(str, range(100))) + "]"
    swept = ", ".join(f"v{i}: *v" for i in range(variables))
    return f"x-v: &v {values}\nkit:\n  hits: {{_sweep: {{{swept}}}, prompt: x}}\n"


def _swept_leaf_bomb(levels: int) -> str:
    """``alias_bomb`` over a leaf that is itself a 10-combination sweep: 10**(levels + 1) leaves."""
    return alias_bomb(levels, 10).replace("{prompt: boom}", "{prompt: boom, _sweep: {g: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}}")


ZEROS = "/a0" * 25


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (alias_bomb(levels=30, width=10), f"top/a0/a0/a0/a0/a1{ZEROS}", "the tree makes 1" + ",000" * 10),
        (_merge_bomb(levels=30, width=10), f"top/a0/a0/a0/a0/a1{ZEROS}", "the tree makes 1" + ",000" * 10),
        (_sweep_bomb(variables=15), "kit/hits", "this sweep makes 1" + ",000" * 10 + " leaves, and the tree makes"),
        (_swept_leaf_bomb(levels=29), "top/a0/a0/a0/a0/a1" + "/a0" * 24, "this sweep makes 10 leaves"),
        (alias_bomb(levels=30, width=10).replace("top: *l30", "a: &a {loop: *a, big: *l30}"),
         "a/big/a0/a0/a0/a0/a0" + "/a9" * 25, "the tree makes 1" + ",000" * 9 + ",001"),  # the loop counts once
    ],
    ids=["mappings", "merge-keys", "sweep-lists", "swept-leaves", "with-a-recursive-alias"],
)
def test_alias_bombs_of_every_shape_are_refused_without_expanding_them(mapping_reads, text, where, what) -> None:
    # 10^30 leaves against a limit of 10^25: a reader that walked them, even only up to the limit, would never end.
    (problem,) = problems_of(text, max_items=10**25)
    assert f": {where}: too many leaves: " in problem and what in problem and "(raise it with --max-items)" in problem
    assert mapping_reads[0] < 1000


def test_lists_built_from_nested_aliases_are_reported_not_expanded() -> None:
    # 10^30 scalars in a list of lists of lists...: anything that walked into them would never end.
    lines = ["x-s0: &s0 [" + ", ".join(["boom"] * 10) + "]"]
    lines += [f"x-s{i}: &s{i} [" + ", ".join([f"*s{i - 1}"] * 10) + "]" for i in range(1, 31)]
    leaves = ["a: *s30", "b: {c: *s30}", "d: {e: {prompt: *s30}}", "f: {g: {prompt: x, cfg_interval: *s30}}",
              "h: {i: {prompt: x, _sweep: {cfg_interval: *s30}}}", "j: {k: {prompt: x, _sweep: {v: *s30}}}"]  # fmt: skip
    rendered = problems_of("\n".join(lines + leaves) + "\n", max_items=10**25)
    reported = {line.split(": ", 2)[1] for line in rendered}
    assert {"<root>", "a", "b", "d/e", "f/g/cfg_interval[0]", "h/i/_sweep/cfg_interval[9][0]", "j/k/_sweep/v[9]"} <= reported
    assert all("expected" in line for line in rendered)


def _spy(monkeypatch, owner, name: str) -> list[tuple]:
    """The arguments of every call to ``owner.name``, which still runs."""
    calls: list[tuple] = []
    real = getattr(owner, name)

    def recorded(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(owner, name, recorded)
    return calls


def test_a_mapping_used_through_many_aliases_is_classified_and_counted_once(monkeypatch, mapping_reads) -> None:
    looked_at = _spy(monkeypatch, YamlNodes, "prepare")  # by every classification and every read of entries
    fields = ", ".join(f"f{i}: 1" for i in range(1000))
    uses = ", ".join(f"a{i}: *wide" for i in range(1000))
    text = f"x-wide: &wide {{prompt: x, {fields}}}\nx-many: &many {{{uses}}}\ntop: {{p: *many, q: *many}}\n"
    (problem,) = problems_of(text, max_items=10)  # 1,000 aliases to a leaf of 1,000 fields: read once, not 1,000 times
    assert "tree.yaml:1: top/p/a10: too many leaves: the tree makes 2,000 leaves" in problem
    assert len(looked_at) < 20 and mapping_reads[0] < 10  # the root, top, x-many and x-wide, a few times each


def test_a_mapping_merged_many_times_into_one_is_read_once(monkeypatch) -> None:
    merged = _spy(monkeypatch, YamlNodes, "_last_wins")
    fields = ", ".join(f"f{i}: 1" for i in range(1000))
    text = f"x-wide: &wide {{{fields}}}\nkit:\n  kick: {{<<: [{', '.join(['*wide'] * 1000)}], prompt: x}}\n"
    rendered = problems_of(text)
    assert len(rendered) == 1000 and rendered[0].startswith("tree.yaml:1: kit/kick/f0: unknown leaf field")
    assert [len(entries) for _, entries, _ in merged] == [1001]  # not 1,000 x 1,000 merged entries


def test_the_item_limit_counts_leaves_not_distinct_nodes() -> None:
    assert len(parse(alias_bomb(levels=2, width=10), max_items=100)) == 100  # exactly at the limit: fine
    with pytest.raises(ConditionTreeError, match="makes 100 leaves .* and passes 99 here"):
        parse(alias_bomb(levels=2, width=10), max_items=99)
    broken = "x-bad: &bad {seconds_total: 1}\nx-l1: &l1 {a: *bad, b: *bad, c: *bad}\ntop: {a: *l1, b: *l1}\n"
    # Broken leaves count too: a bomb of them is refused as early, before any is reported.
    assert [line.split(": ")[1:] for line in problems_of(broken, max_items=6)] == [
        [f"top/{i}/{j}", "leaf has no 'prompt' (every leaf needs the text to generate)"] for i in "ab" for j in "abc"]
    (refused,) = problems_of(broken, max_items=4)
    assert refused.startswith("tree.yaml:1: top/b/b: too many leaves: the tree makes 6 leaves")


def test_merge_keys_keep_one_entry_per_key_however_often_merged() -> None:
    # PyYAML's own merge appends every merged entry: ten levels of ten-fold merges are 10^10 entries.
    lines = ["x-m0: &m0 {seconds_total: 3, steps: 9, cfg_scale: 2}"]
    lines += [f"x-m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}" for i in range(1, 11)]
    (leaf,) = parse("\n".join(lines) + "\nkit:\n  kick: {<<: *m10, prompt: kick, steps: 4}\n")
    assert (leaf.seconds_total, leaf.steps, leaf.cfg_scale) == (3.0, 4, 2.0)


def test_merge_order_follows_yaml_earlier_sources_and_own_keys_win() -> None:
    text = """
    x-a: &a {steps: 1, cfg_scale: 1}
    x-b: &b {steps: 2, cfg_scale: 2, seed: 2}
    kit:
      kick: {<<: [*a, *b], prompt: kick, cfg_scale: 3}
    """
    (leaf,) = parse(text)
    assert (leaf.steps, leaf.cfg_scale, leaf.seed) == (1, 3.0, 2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &a {b: *a}\n", "tree.yaml:1: a/b: recursive alias: this mapping contains itself"),
        ("a: &a {b: {c: *a}}\n", "a/b/c: recursive alias"),
        ("a: &a {<<: *a, prompt: x}\n", "tree.yaml:1: a: invalid merge key: a mapping cannot merge itself"),
        ("a:\n  b: {<<: [1, 2], prompt: x}\n", "a/b: invalid merge key: expected a mapping or a list of mappings, got the scalar '1'"),
    ],
)
def test_recursive_aliases_and_bad_merges_are_reported_not_followed(text: str, expected: str) -> None:
    rendered = problems_of(text)
    assert any(expected in line for line in rendered), rendered


# x- blocks: a home for anchors -------------------------------------------------------------------

ANCHORS_TREE = """
x-common: &common {seconds_total: 4, negative_prompt: noisy}
x-kick: &kick {prompt: a kick drum, seed: 7}
x-notes: [any, list]
x-version: 2
x-draft: {prompt: 808, steps: zero, unknown: 1}
_defaults: {steps: 20}
kit:
  _defaults: {<<: *common, cfg_scale: 5}
  kick: *kick
  snare: {<<: *common, prompt: a snare, seconds_total: 2}
sfx:
  x-ray: {prompt: an x-ray machine hums}
"""


def test_top_level_x_blocks_are_ignored_and_their_anchors_merge() -> None:
    by_name = {leaf.name: leaf for leaf in parse(ANCHORS_TREE)}
    assert list(by_name) == ["kit/kick", "kit/snare", "sfx/x-ray"]  # no x- block became a leaf or an error
    kick, snare = by_name["kit/kick"], by_name["kit/snare"]
    assert (kick.prompt, kick.seed, kick.seconds_total, kick.negative_prompt, kick.cfg_scale, kick.steps) == (
        "a kick drum", 7, 4.0, "noisy", 5.0, 20)  # fmt: skip
    assert (snare.prompt, snare.seconds_total, snare.negative_prompt, snare.line) == ("a snare", 2.0, "noisy", 11)
    assert by_name["sfx/x-ray"].prompt == "an x-ray machine hums"  # below the top, x- is an ordinary name


def test_x_blocks_below_the_top_level_are_ordinary_names_with_a_hint() -> None:
    (line,) = problems_of("kit:\n  x-common: &c {seconds_total: 4}\n  kick: {<<: *c, prompt: kick}\n")
    assert line.startswith("tree.yaml:2: kit/x-common: leaf has no 'prompt'")
    assert "keys starting with 'x-' are ignored only at the top level" in line


def test_values_merged_from_an_x_block_are_checked_where_they_are_used() -> None:
    (line,) = problems_of("x-common: &c {seconds_total: ten}\nkit:\n  kick: {<<: *c, prompt: kick}\n")
    assert line == "tree.yaml:1: kit/kick/seconds_total: expected a number, got str 'ten'"


def test_a_tree_of_only_x_blocks_has_no_leaves() -> None:
    assert any("<root>: empty mapping" in line for line in problems_of("x-common: {seconds_total: 4}\n"))


def test_the_example_sweep_shows_x_anchors_across_branches() -> None:
    leaves = parse((REPO_ROOT / "example" / "generation" / "sound_design_sweep.yaml").read_text())
    by_name = {leaf.name: leaf for leaf in leaves}
    assert sorted(by_name) == sorted(["foley/footsteps-gravel", "foley/door-creak", "foley/glass-break",
                                      "ambience/rain-city", "ambience/forest-dawn", "ambience/thunder-clap"])  # fmt: skip
    glass, thunder = by_name["foley/glass-break"], by_name["ambience/thunder-clap"]
    assert (glass.seconds_total, glass.steps, glass.negative_prompt, glass.n_samples) == (
        2.0, 50, "reverb, room tone, low quality", 3)  # fmt: skip
    assert (thunder.seconds_total, thunder.steps, thunder.cfg_scale) == (4.0, 50, 5.0)


# Names the tool keeps for itself at the top of the output folder ---------------------------------


@pytest.mark.parametrize(
    "name",
    ["splits", "Splits", ".progress", ".manifest-parts", "manifest.jsonl", "report.html", "dataset_config.json",
     "dataset_config.train.json", "dataset_metadata.py", ".manifest.jsonl.abc123.partial"],
)  # fmt: skip
def test_top_level_branches_named_like_the_tools_own_files_are_refused(name: str) -> None:
    (line,) = problems_of(f"'{name}':\n  a: {{prompt: x}}\nok:\n  b: {{prompt: y}}\n")
    assert line.startswith(f"tree.yaml:1: {name}: '{name}' is reserved: generate.py keeps ")
    assert "rename the branch" in line


def test_only_paths_that_collide_are_refused() -> None:
    text = """
    report: {prompt: "a leaf's files are report_item-1.wav: no clash"}
    splits: {prompt: splits_item-1.wav}
    manifest.jsonl: {prompt: manifest.jsonl_item-1.wav}
    .hidden:
      a: {prompt: hidden folders are fine unless they are temporary-file names}
    music:
      splits:
        b: {prompt: only the top level of the output folder is reserved}
    """
    assert [leaf.name for leaf in parse(text)] == ["report", "splits", "manifest.jsonl", ".hidden/a", "music/splits/b"]
    (line,) = problems_of("music:\n  .take.partial:\n    a: {prompt: x}\n")  # every run deletes these, at any depth
    assert line.startswith("tree.yaml:2: music/.take.partial: '.take.partial' is reserved")


def test_every_name_the_tool_writes_in_the_output_folder_is_reserved() -> None:
    """The writers take their names from tree.reserved; this fails if one goes back to its own copy."""
    top_level = [MANIFEST_NAME, PARTS_DIRNAME, PROGRESS_DIRNAME, REPORT_NAME, CONFIG_NAME, METADATA_MODULE_NAME,
                 SPLITS_DIRNAME, split_config_name("val")]  # fmt: skip
    assert all(reserved_branch_problem(name, top_level=True) for name in top_level)
    assert reserved_branch_problem(f".{MANIFEST_NAME}.x1y2{PARTIAL_SUFFIX}", top_level=False)
