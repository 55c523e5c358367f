"""The layers of docs/design.md, checked by walking every module's imports (STYLE.md item 13).

A rule names a folder and the packages its modules may never import; a violation names the
module, the line and the import, so a drifting layer fails here rather than in review.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# folder -> imported prefixes it must never reach (whole-word prefixes: "simulator.model" also
# forbids "simulator.model.pipeline")
FORBIDDEN = {
    "simulator/engine": ("simulator.model", "simulator.planning", "simulator.scenario", "simulator.output",
                         "simulator.studies", "simulator.cli", "simulator.hardware", "workloads", "predictors"),
    "simulator/output": ("simulator.model", "simulator.planning", "simulator.scenario", "simulator.studies",
                         "simulator.cli", "simulator.hardware"),
    "simulator/model": ("simulator.studies", "simulator.cli", "simulator.hardware"),
    "simulator/planning": ("simulator.scenario", "simulator.output", "simulator.studies", "simulator.cli",
                           "simulator.engine", "simulator.model.pipeline", "simulator.model.training_step"),
    "simulator/scenario": ("simulator.studies", "simulator.cli"),
    "simulator/studies": ("simulator.cli",),
    "topologies": ("simulator",),
    "workloads": ("simulator",),
    "predictors": ("simulator",),
}
# the leaf modules every package may use: the shared error type, the one registry shape and the
# safe readers (simulator.safeio imports nothing else of simulator)
ALLOWED = ("simulator.errors", "simulator.registry", "simulator.safeio")


def imports(path: Path):
    """(line, module) of every import in `path`, relative imports resolved, lazy ones included."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            yield node.lineno, base
            for alias in node.names:  # `from simulator import engine` reaches simulator.engine
                yield node.lineno, f"{base}.{alias.name}"


def reaches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(folder: str) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in imports(path):
            if any(reaches(module, allowed) for allowed in ALLOWED):
                continue
            for prefix in FORBIDDEN[folder]:
                if reaches(module, prefix):
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({folder} never imports {prefix})")
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layer_never_imports_what_design_md_forbids(folder):
    assert violations(folder) == []


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """A forbidden import written into a module is caught (the test can fail)."""
    bad = ROOT / "simulator" / "engine" / "_layer_probe.py"
    bad.write_text("from simulator.model import pipeline\n")
    try:
        assert violations("simulator/engine") == [
            "simulator/engine/_layer_probe.py:1 imports simulator.model (simulator/engine never imports "
            "simulator.model)",
            "simulator/engine/_layer_probe.py:1 imports simulator.model.pipeline (simulator/engine never "
            "imports simulator.model)"]
    finally:
        bad.unlink()


def test_design_md_lists_every_layer():
    text = (ROOT / "docs" / "design.md").read_text()
    for folder in FORBIDDEN:
        assert f"`{folder}/`" in text, folder
