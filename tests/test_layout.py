"""The package layout is the architecture: imports run one way, and every documented entry point runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from stable_audio_tools_ext.model.families import FAMILIES, K_DIFFUSION_SAMPLERS
from stable_audio_tools_ext.sampling import samplers
from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "stable_audio_tools_ext"

# What each subpackage may import from the rest of the package (``request`` is the shared value type).
ALLOWED = {
    "request": set(),
    "quiet": set(),  # the upstream warnings every entry point hides
    "tree": {"request"},
    "model": {"request", "output", "quiet"},  # output: export writes its files atomically; quiet: export's main
    "output": {"tree", "request"},
    "sampling": {"model", "tree", "request"},
    "datasets": {"output", "tree", "request", "scoring"},  # scoring: may use the scorer (the report reads records)
    "scoring": {"model", "output", "tree", "quiet", "request"},  # model: the tiny CLAP's repo id
    "run": {"tree", "model", "sampling", "output", "datasets", "scoring", "request", "quiet"},
    "studio": {"tree", "model", "sampling", "output", "datasets", "run", "request"},
    # finetune.py: prepare (datasets: configs, links), train (run: signals, demos through the in-process engine)
    "finetune": {"datasets", "output", "tree", "model", "run", "request"},
    # finetune.py evaluate: generate.py's job (run) per model, scores (scoring), run folders (finetune)
    "evaluation": {"finetune", "run", "scoring", "datasets", "output", "model", "request"},
    # finetune.py's dispatcher, above both packages whose subcommands it lists
    "finetune_main": {"finetune", "evaluation", "quiet"},
}


def _stage(module: Path) -> str:
    """``tree`` for stable_audio_tools_ext/tree/reader.py, ``request`` for stable_audio_tools_ext/request.py."""
    return module.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_stages(module: Path) -> set[str]:
    """The subpackages a module imports (relative and absolute imports, at any depth in the file)."""
    parts = module.relative_to(PACKAGE).with_suffix("").parts
    stages = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(parts[: len(parts) - node.level])
            target = base + (node.module.split(".") if node.module else [])
            names = [alias.name for alias in node.names] if not node.module else [None]
            for name in names:
                full = target + ([name] if name else [])
                if full:
                    stages.add(full[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stable_audio_tools_ext."):
            stages.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            stages |= {a.name.split(".")[1] for a in node.names if a.name.startswith("stable_audio_tools_ext.")}
    return stages


def test_every_module_lives_in_a_known_stage() -> None:
    modules = [m for m in PACKAGE.rglob("*.py") if m.parent != PACKAGE or m.name != "__init__.py"]
    assert {_stage(m) for m in modules} == set(ALLOWED)
    for sub in ALLOWED:
        if (PACKAGE / sub).is_dir():
            doc = ast.get_docstring(ast.parse((PACKAGE / sub / "__init__.py").read_text()))
            assert doc and "import" in doc, f"{sub}/__init__.py must say what the subpackage owns and may import"


@pytest.mark.parametrize("module", sorted(PACKAGE.rglob("*.py")), ids=lambda m: m.relative_to(PACKAGE).as_posix())
def test_imports_run_one_way(module: Path) -> None:
    if module.parent == PACKAGE and module.name == "__init__.py":
        return
    stage = _stage(module)
    foreign = _imported_stages(module) - {stage}
    assert foreign <= ALLOWED[stage], f"{stage} must not import {sorted(foreign - ALLOWED[stage])}"


def test_import_checker_sees_relative_imports() -> None:
    """Guards the test above against passing vacuously."""
    assert _imported_stages(PACKAGE / "run" / "job.py") >= {"output", "sampling", "model", "tree"}
    assert _imported_stages(PACKAGE / "run" / "outputs.py") >= {"request", "tree"}
    assert _imported_stages(PACKAGE / "studio" / "actions.py") >= {"run", "tree"}


def test_every_sampler_a_family_lists_is_implemented() -> None:
    assert set(samplers._K_SOLVERS) == set(K_DIFFUSION_SAMPLERS)
    assert FAMILIES["v"].samplers == K_DIFFUSION_SAMPLERS


@pytest.mark.parametrize(
    "module",
    [
        "stable_audio_tools_ext.model.tiny",
        "stable_audio_tools_ext.model.export",
        "stable_audio_tools_ext.run.demo",
        "stable_audio_tools_ext.datasets.training",
        "stable_audio_tools_ext.datasets.report",
        "stable_audio_tools_ext.datasets.shards",
    ],
)
def test_module_entry_points_run(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


def test_console_script_runs() -> None:
    script = Path(sys.executable).with_name("sat-generate")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--cond-yaml-path" in result.stdout
