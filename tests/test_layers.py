"""The import-layer contract: core <- ingest, core <- lake <- app, demo on ingest; no back-edges.

Every import counts, function-local ones included (a local import does not make a back-edge
acceptable). ``core`` and ``ingest`` import only pyarrow and the standard library at module
level, so training code imports them fast and they are safe in forked processes.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Folder -> the runlake packages its modules may import (besides their own).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "ingest": {"core"},
    "lake": {"core"},
    "demo": {"core", "ingest"},
    "app": {"core", "lake", "demo", "assets", "mlflow_store"},
    # The MLflow tracking-store plugin writes as training code does and reads as the lake does.
    "mlflow_store": {"core", "ingest", "lake"},
}
# Third-party packages the pyarrow-only layers may import at module level.
LIGHT_LAYERS = {"core": {"pyarrow"}, "ingest": {"pyarrow"}}


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at module level) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno, id(node) in top))
    return found


def _files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_layers_import_only_downwards(folder):
    wrong = []
    for path in _files(folder):
        for module, line, _top in _imports(path):
            parts = module.split(".")
            if parts[0] != "runlake" or len(parts) < 2:
                continue
            if parts[1] != folder and parts[1] not in ALLOWED[folder]:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("folder", sorted(LIGHT_LAYERS))
def test_training_side_imports_only_pyarrow_at_module_level(folder):
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    wrong = []
    for path in _files(folder):
        for module, line, top in _imports(path):
            root = module.split(".")[0]
            if top and root not in stdlib and root != "runlake" and root not in LIGHT_LAYERS[folder]:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_contract_catches_a_back_edge(tmp_path, monkeypatch):
    # The check above must be able to fail: a lake module importing ingest is found.
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "bad.py").write_text("def f():\n    from runlake.ingest import LakeClient\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    with pytest.raises(AssertionError, match="imports runlake.ingest"):
        test_layers_import_only_downwards("lake")


def test_training_side_imports_no_heavy_package():
    # In a fresh interpreter: importing the training side loads none of the reader's engines.
    import subprocess

    code = (
        "import sys, runlake.ingest, runlake.core.rows, runlake.core.points\n"
        "heavy = {'duckdb', 'pandas', 'dash', 'lark', 'flask'} & {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
