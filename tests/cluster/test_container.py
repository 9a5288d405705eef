"""The Apptainer/Singularity definition, checked without an engine (none is installable here).

The definition is parsed twice: with spython (PyPI), the parser Singularity's own tooling uses to
convert recipes, and with a strict reading of the section headers as Apptainer reads them (``%name``
at the start of a line). The checks: the required sections exist and say what they must; the base
image is pinned; the shell in each section parses with ``sh`` (Apptainer runs them with /bin/sh);
and, most important, the image installs with exactly the commands CI uses - the Makefile's ``make
install`` - so the image and CI resolve the same pinned set from ``requirements/constraints.txt``.
The image carries the three scripts (generate.py, finetune.py, run_gradio.py) and everything they
import; every command that ``%help`` shows parses with its script's own argument parser; and the
commands of ``%test`` run here, in the same pinned environment, with the project's paths in place of
the image's (the script ``-h`` checks always, the whole self-test as a slow test).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO_ROOT

DEFINITION = REPO_ROOT / "container" / "stable-audio-tools-ext.def"
BUILD_SCRIPT = REPO_ROOT / "container" / "build.sh"
MAKEFILE = REPO_ROOT / "Makefile"
PROJECT_DIR = "/opt/stable-audio-tools-ext"  # where %files puts the project inside the image
REQUIRED_SECTIONS = ("files", "post", "environment", "runscript", "test", "labels", "help")
SCRIPTS = ("generate.py", "finetune.py", "run_gradio.py")  # the image's commands, all in PROJECT_DIR
IMAGE_SCRIPT = re.compile(rf"{re.escape(PROJECT_DIR)}/(\w+\.py)")


def read_definition(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """Header keywords (Bootstrap, From ...) and section bodies, as Apptainer splits the file."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = re.match(r"^%(\w+)\s*$", line)
        if match:
            assert match.group(1) not in sections, f"section %{match.group(1)} appears twice"
            current = sections[match.group(1)] = []
        elif current is not None:
            current.append(line)
        elif (keyword := re.match(r"^(\w+):\s*(\S.*?)\s*$", line)) and not line.startswith("#"):
            header[keyword.group(1).lower()] = keyword.group(2)
    return header, {name: "\n".join(lines) for name, lines in sections.items()}


@pytest.fixture(scope="module")
def definition() -> tuple[dict[str, str], dict[str, str]]:
    return read_definition(DEFINITION.read_text())


@pytest.fixture(scope="module")
def recipe():
    from spython.main.parse.parsers import SingularityParser

    (stage,) = SingularityParser(str(DEFINITION)).recipe.values()
    return stage


def shell_commands(script: str) -> list[list[str]]:
    """The commands of a shell fragment (comments dropped, continuation lines joined), as argv lists."""
    joined = re.sub(r"\\\n", " ", script)
    commands = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            commands.append(shlex.split(line, comments=True))
    return commands


def pip_installs(commands: list[list[str]]) -> list[list[str]]:
    """The arguments of every `pip install`, without options that change output, not the result."""
    cosmetic = {"--quiet", "-q", "--no-cache-dir", "-e", "--editable"}
    installs = []
    for argv in commands:
        if "pip" in argv and "install" in argv[argv.index("pip"):]:
            args = argv[argv.index("install", argv.index("pip")) + 1:]
            installs.append([a for a in args if a not in cosmetic])
    return installs


def copied_files(sections: dict[str, str]) -> dict[str, str]:
    """%files as {source in the repository: destination in the image}."""
    return dict(line.split() for line in sections["files"].strip().splitlines() if line.strip())


def in_repository(image_path: Path, sections: dict[str, str]) -> Path | None:
    """Where a path inside the image comes from in the repository, by %files (None: nothing copies it)."""
    for source, destination in copied_files(sections).items():
        if image_path.is_relative_to(destination):
            return REPO_ROOT / source / image_path.relative_to(destination)
    return None


def help_commands(help_text: str) -> list[tuple[str, str, list[str]]]:
    """Every apptainer command %help shows on a line of its own, as (launcher, script, its arguments).

    ``apptainer run ... IMAGE.sif ARGS`` is the runscript: launcher "run", generate.py with ARGS.
    ``apptainer exec ... IMAGE.sif python|torchrun [OPTIONS] SCRIPT ARGS`` runs SCRIPT with launcher
    "python" or "torchrun"; an exec of anything else has launcher "exec" and script "".
    """
    joined = re.sub(r"\\\n\s*", " ", help_text)
    commands = []
    for line in joined.splitlines():
        if not re.match(r"\s*apptainer (run|exec)\s", line):
            continue
        argv = shlex.split(line)
        image = next(i for i, arg in enumerate(argv) if arg.endswith(".sif"))
        rest = argv[image + 1:]
        script = next((i for i, arg in enumerate(rest) if arg.endswith(".py")), None)
        if argv[1] == "run":
            commands.append(("run", f"{PROJECT_DIR}/generate.py", rest))
        elif rest[0] in ("python", "torchrun") and script is not None:
            commands.append((rest[0], rest[script], rest[script + 1:]))
        else:
            commands.append(("exec", "", rest))
    return commands


def script_parser(name: str):
    """The argument parser of one of the image's scripts, imported from the repository."""
    if name == "generate.py":
        from stable_audio_tools_ext.run.cli import build_parser
    elif name == "finetune.py":
        from stable_audio_tools_ext.finetune_main import build_parser
    else:
        assert name == "run_gradio.py", name
        from run_gradio import build_parser
    return build_parser()


def top_level_imports(path: Path) -> set[str]:
    """The top-level names a Python file imports absolutely (relative imports stay in its package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def run_here(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """A shell fragment of the definition, run with this checkout in place of PROJECT_DIR and the
    project's Python first on PATH (as /opt/venv/bin is in the image)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        ["sh", "-c", script.replace(PROJECT_DIR, str(REPO_ROOT))], cwd=cwd, env=env, capture_output=True, text=True
    )


def makefile_install() -> tuple[dict[str, str], list[list[str]]]:
    """The Makefile's variables and the commands of the recipe that `make install` runs."""
    text = MAKEFILE.read_text()
    variables = dict(re.findall(r"^(\w+)\s*[:?]?=\s*(.*?)\s*$", text, flags=re.M))
    recipe = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", text, flags=re.M)
    assert recipe, "Makefile: no $(STAMP) recipe (the install step) found"
    body = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), recipe.group(1))
    return variables, shell_commands(body.replace("\t", ""))


def test_spython_parses_the_definition_with_every_required_section(definition, recipe) -> None:
    header, sections = definition
    assert header["bootstrap"] == "docker"
    missing = [name for name in REQUIRED_SECTIONS if name not in sections or not sections[name].strip()]
    assert not missing, f"empty or missing sections: {missing}"
    # spython read the same recipe: base image, files, environment, labels, runscript and test
    assert recipe.fromHeader == header["from"]
    assert recipe.files and recipe.environ and recipe.labels
    assert recipe.cmd and recipe.test
    post_lines = [line.strip() for line in sections["post"].splitlines() if line.strip()]
    assert recipe.install[: len(post_lines)] == post_lines


def test_base_image_is_pinned_and_matches_the_cuda_of_the_pinned_torch(definition) -> None:
    image = definition[0]["from"]
    match = re.fullmatch(r"([\w./-]+):([\w.-]+?)(@sha256:[0-9a-f]{64})?", image)
    assert match, f"From: {image} must be name:tag[@sha256:digest]"
    name, tag, _digest = match.groups()
    assert tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), f"pin a full version tag, not {tag}"
    assert name == "nvidia/cuda"
    # the torch wheel ships CUDA libraries of its own; the image's CUDA must be the same release
    assert torch.version.cuda and tag.startswith(torch.version.cuda + "."), (tag, torch.version.cuda)


def test_image_installs_with_exactly_the_commands_and_constraints_ci_uses(definition) -> None:
    header, sections = definition
    variables, make_commands = makefile_install()
    constraints = variables["CONSTRAINTS"]
    assert constraints == "requirements/constraints.txt"
    post = shell_commands(sections["post"])
    ci_installs, image_installs = pip_installs(make_commands), pip_installs(post)
    assert image_installs == ci_installs, "the image must run make install's pip commands, no more, no less"
    # the constraints file the image uses is the repository's, copied in unchanged by %files
    files = copied_files(sections)
    assert files[constraints] == f"{PROJECT_DIR}/{constraints}"
    assert ["cd", PROJECT_DIR] in post[: post.index(next(c for c in post if "pip" in c))]
    every_pin = [args for args in image_installs if "-c" in args]
    assert every_pin and all(args[args.index("-c") + 1] == constraints for args in every_pin)
    # pip itself is the only thing installed without the constraints, exactly as in the Makefile
    assert all("-c" in args or args == ["--upgrade", "pip>=24"] for args in image_installs)


def test_files_copied_into_the_image_exist_and_make_a_buildable_project(definition) -> None:
    files = copied_files(definition[1])
    for source in files:
        assert (REPO_ROOT / source).exists(), f"%files: {source} is not in the repository"
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for needed in ("pyproject.toml", project["readme"], "stable_audio_tools_ext", *SCRIPTS):
        assert files.get(needed) == f"{PROJECT_DIR}/{needed}", f"{needed} must be copied to {PROJECT_DIR}"


def test_the_copied_code_imports_nothing_of_the_repository_that_is_not_copied(definition) -> None:
    """The scripts and the package import the standard library, installed packages and what %files
    copies; nothing else of the repository (tests/, bench/, scripts/ are not in the image)."""
    files = copied_files(definition[1])
    copied = {Path(source).name.removesuffix(".py") for source in files}
    local = {path.name.removesuffix(".py") for path in REPO_ROOT.iterdir() if path.suffix == ".py" or path.is_dir()}
    sources = [REPO_ROOT / source for source in files if source.endswith(".py")]
    sources += [path for source in files if (REPO_ROOT / source).is_dir() for path in (REPO_ROOT / source).rglob("*.py")]
    assert {REPO_ROOT / script for script in SCRIPTS} <= set(sources)
    for path in sources:
        for name in top_level_imports(path):
            where = path.relative_to(REPO_ROOT)
            if name in local:
                assert name in copied, f"{where} imports {name}, which is in the repository but not in %files"
            else:
                assert importlib.util.find_spec(name), f"{where} imports {name}, which is not installed"


def test_scripts_are_where_the_help_labels_and_test_say(definition) -> None:
    sections = definition[1]
    files = copied_files(sections)
    destinations = set(files.values())
    # every script path that %help, %labels, %runscript or %test names is one that %files copies
    for name in ("help", "labels", "runscript", "test"):
        for script in IMAGE_SCRIPT.findall(sections[name]):
            assert f"{PROJECT_DIR}/{script}" in destinations, f"%{name} names {script}, which %files does not copy"
    for script in SCRIPTS:  # generate.py is the runscript; the others are run by path (below)
        assert script in sections["help"], f"%help does not show {script}"
    for script in ("finetune.py", "run_gradio.py"):
        assert f"python {PROJECT_DIR}/{script} " in sections["help"], f"%help does not show how to run {script}"
    # %test builds every script's command line (their -h), finetune's subcommands included
    test_lines = {line.strip() for line in sections["test"].splitlines()}
    finetune_commands = [f"finetune.py {command} -h" for command in ("prepare", "train", "encode")]
    for command in ("generate.py -h", "finetune.py -h", *finetune_commands, "run_gradio.py -h"):
        assert f"python {PROJECT_DIR}/{command} >/dev/null" in test_lines, f"%test does not run {command}"
    labels = dict(line.strip().split(None, 1) for line in sections["labels"].strip().splitlines())
    listed = IMAGE_SCRIPT.findall(labels["io.github.stable-audio-tools-ext.scripts"])
    assert sorted(listed) == sorted(SCRIPTS)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # third-party deprecations on importing the studio
def test_help_shows_fine_tuning_and_studio_commands_that_parse(definition) -> None:
    """Each command %help shows is complete: its script is in the image and its own parser accepts it."""
    help_text = definition[1]["help"]
    commands = help_commands(help_text)
    destinations = set(copied_files(definition[1]).values())
    shown: list[tuple[str, str, str | None]] = []
    for launcher, script, args in commands:
        if not script:
            continue
        assert script in destinations, f"%help runs {script}, which %files does not copy"
        name = Path(script).name
        try:
            parsed = script_parser(name).parse_args(args)
        except SystemExit as exc:
            assert exc.code == 0 and args[-1:] == ["-h"], f"%help: {name} {shlex.join(args)} does not parse"
            shown.append((launcher, name, "-h"))
            continue
        shown.append((launcher, name, getattr(parsed, "command", None)))
        for value in vars(parsed).values():  # a file of the image it names (a demo tree) is copied there
            if isinstance(value, Path) and value.is_relative_to(PROJECT_DIR):
                origin = in_repository(value, definition[1])
                assert origin and origin.exists(), f"%help: {value} is not in the image"
    # prepare, train and the studio with `apptainer exec ... python` (train is one process: Lightning
    # starts the per-GPU processes), encode under torchrun (it shards files over ranks), generation
    # (from a checkpoint too) with the runscript, which is generate.py's only
    assert ("python", "finetune.py", "prepare") in shown and ("python", "finetune.py", "train") in shown
    assert ("torchrun", "finetune.py", "encode") in shown
    assert ("python", "run_gradio.py", None) in shown
    assert not [s for s in shown if s[1] != "generate.py" and s[0] == "run"]
    assert any(launcher == "run" and "--ckpt-path" in args for launcher, _, args in commands)
    for text in ("finetune.py prepare", "finetune.py train", "run_gradio.py", "--bind", "HF_HOME", "--devices", "torchrun"):
        assert text in help_text, f"%help does not mention {text}"


def test_the_script_checks_of_the_self_test_pass_here(definition, tmp_path) -> None:
    """The -h lines of %test, run with this checkout's scripts: they pass in the image only if they pass here."""
    checks = [line.strip() for line in definition[1]["test"].splitlines() if re.search(r"\.py\b.* -h\b", line)]
    assert len(checks) >= len(SCRIPTS)
    result = run_here("set -eu\n" + "\n".join(checks), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_the_whole_self_test_passes_here(definition, tmp_path) -> None:
    """%test (pins, script checks, a CPU generation on the tiny offline model), run in this environment."""
    result = run_here(definition[1]["test"], tmp_path)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    assert "stable-audio-tools-ext image: OK" in result.stdout


def test_python_version_is_the_one_ci_uses(definition) -> None:
    variables, _ = makefile_install()
    python = variables["PYTHON"]  # python3.11
    post = definition[1]["post"]
    assert re.search(rf"apt-get install[^\n]*\b{re.escape(python)}\b", post.replace("\\\n", " "))
    assert f"{python} -m venv /opt/venv" in post


def test_environment_runscript_test_labels_and_help_say_what_they_must(definition, recipe) -> None:
    sections = definition[1]
    environment = dict(entry.split("=", 1) for entry in recipe.environ)
    assert environment["PYTHONUNBUFFERED"] == "1"
    assert re.fullmatch(r'"\$\{HF_HOME:-.+\}"', environment["HF_HOME"]), "HF_HOME must stay overridable"
    assert "/opt/venv/bin" in environment["PATH"]

    runscript = sections["runscript"]
    assert re.search(r"exec torchrun .*/opt/stable-audio-tools-ext/generate\.py \"\$@\"", runscript)
    assert "--nproc_per_node gpu" in runscript

    assert runscript.index('generate.py "$@" --check || exit $?') < runscript.index("exec torchrun")
    assert "export OMP_NUM_THREADS=" in runscript
    assert "generate.py" in sections["test"] and "stable_audio_tools_ext.model.tiny" in sections["test"]

    labels = dict(line.strip().split(None, 1) for line in sections["labels"].strip().splitlines())
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.base.name"] == definition[0]["from"].split("@")[0]

    assert "HF_TOKEN" in sections["help"] and "apptainer run --nv" in sections["help"]


@pytest.mark.parametrize("section", ["post", "environment", "runscript", "test"])
def test_section_shell_parses_with_sh(definition, section) -> None:
    result = subprocess.run(["sh", "-n"], input=definition[1][section], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_no_token_or_secret_is_baked_into_the_image(definition) -> None:
    assert not re.search(r"hf_[A-Za-z0-9]{20,}", DEFINITION.read_text())
    for name, body in definition[1].items():  # %help may show how to pass one; nothing may set one
        if name != "help":
            assert not re.search(r"\bHF_TOKEN=", body), f"%{name} sets HF_TOKEN"


def test_build_script_parses_and_builds_this_definition() -> None:
    text = BUILD_SCRIPT.read_text()
    assert subprocess.run(["bash", "-n", str(BUILD_SCRIPT)]).returncode == 0
    assert "container/stable-audio-tools-ext.def" in text and "--fakeroot" in text
    assert re.search(r"command -v apptainer \|\| command -v singularity", text)
    assert '"$engine" build' in text
