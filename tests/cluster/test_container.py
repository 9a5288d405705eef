"""The Apptainer/Singularity definition, checked without an engine (none is installable here).

The definition is parsed twice: with spython (PyPI), the parser Singularity's own tooling uses to
convert recipes, and with a strict reading of the section headers as Apptainer reads them (``%name``
at the start of a line). The checks: the required sections exist and say what they must; the base
image is pinned; the shell in each section parses with ``sh`` (Apptainer runs them with /bin/sh);
and, most important, the image installs with exactly the commands CI uses - the Makefile's ``make
install`` - so the image and CI resolve the same pinned set from ``requirements/constraints.txt``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib

import pytest
import torch

from tests.conftest import REPO_ROOT

DEFINITION = REPO_ROOT / "container" / "stable-audio-tools-ext.def"
BUILD_SCRIPT = REPO_ROOT / "container" / "build.sh"
MAKEFILE = REPO_ROOT / "Makefile"
PROJECT_DIR = "/opt/stable-audio-tools-ext"  # where %files puts the project inside the image
REQUIRED_SECTIONS = ("files", "post", "environment", "runscript", "test", "labels", "help")


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
    files = dict(line.split() for line in sections["files"].strip().splitlines() if line.strip())
    assert files[constraints] == f"{PROJECT_DIR}/{constraints}"
    assert ["cd", PROJECT_DIR] in post[: post.index(next(c for c in post if "pip" in c))]
    every_pin = [args for args in image_installs if "-c" in args]
    assert every_pin and all(args[args.index("-c") + 1] == constraints for args in every_pin)
    # pip itself is the only thing installed without the constraints, exactly as in the Makefile
    assert all("-c" in args or args == ["--upgrade", "pip>=24"] for args in image_installs)


def test_files_copied_into_the_image_exist_and_make_a_buildable_project(definition) -> None:
    files = dict(line.split() for line in definition[1]["files"].strip().splitlines() if line.strip())
    for source in files:
        assert (REPO_ROOT / source).exists(), f"%files: {source} is not in the repository"
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for needed in ("pyproject.toml", project["readme"], "generate.py", "stable_audio_tools_ext"):
        assert files.get(needed) == f"{PROJECT_DIR}/{needed}", f"{needed} must be copied to {PROJECT_DIR}"


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
