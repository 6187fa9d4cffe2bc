"""Tests for run context capture (git, source, environment) and run names, with real git repos."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runlake.ingest import context
from runlake.ingest.context import (
    JOB_ENVIRONMENT_VARIABLES,
    SOURCE_TYPE_ENV,
    RunContext,
    capture_run_context,
    environment_json,
    requirements_txt,
    tags_for,
)
from runlake.ingest.names import ADJECTIVES, NOUNS, generate_run_name

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

# Prints the captured context as JSON; run as a real script so __main__ is this file.
PROBE = textwrap.dedent(
    """
    import base64, dataclasses, json
    from runlake.ingest.context import capture_run_context, environment_json, tags_for

    ctx = capture_run_context(capture_packages=False)
    out = dataclasses.asdict(ctx)
    out["script_bytes"] = None if ctx.script_bytes is None else base64.b64encode(ctx.script_bytes).decode()
    out["source_version"] = ctx.source_version
    out["tags"] = tags_for(ctx)
    out["environment"] = environment_json(ctx)
    print(json.dumps(out))
    """
)

# Pretends to be a Jupyter kernel (ipykernel imported, a shell with a kernel).
FAKE_KERNEL = textwrap.dedent(
    """
    import sys, types

    class ZMQInteractiveShell:
        kernel = object()
        user_ns = {"__session__": sys.argv[1]} if len(sys.argv) > 1 else {}

    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: ZMQInteractiveShell()
    sys.modules["IPython"] = ipython
    sys.modules["ipykernel"] = types.ModuleType("ipykernel")
    """
)
NOTEBOOK_PROBE = FAKE_KERNEL + PROBE


def _env(**extra: str) -> dict[str, str]:
    """The test process's environment, isolated from the user's git config and any scheduler."""
    env = {k: v for k, v in os.environ.items() if k not in JOB_ENVIRONMENT_VARIABLES and k != SOURCE_TYPE_ENV}
    env.update(
        GIT_AUTHOR_NAME="Runlake Test",
        GIT_AUTHOR_EMAIL="test@runlake.invalid",
        GIT_COMMITTER_NAME="Runlake Test",
        GIT_COMMITTER_EMAIL="test@runlake.invalid",
        # A developer's commit.gpgsign or init.defaultBranch must not change what tests see.
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
    )
    env.update(extra)
    return env


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, env=_env(), capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def _make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _git(root, "init", "-q", "-b", "main")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "initial")
    return root


def _probe(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env or _env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _outside_git(tmp_path: Path) -> dict[str, str]:
    # Stop git from finding a repository above tmp_path on machines that keep /tmp in one.
    return _env(GIT_CEILING_DIRECTORIES=str(tmp_path))


@needs_git
def test_dirty_repo_records_commit_branch_diff_and_snapshot(tmp_path: Path) -> None:
    repo = _make_repo(tmp_path / "repo", {"src/train.py": PROBE, "config.txt": "lr = 0.1\n"})
    _git(repo, "remote", "add", "origin", "https://x-access-token:s3cret@example.com/team/repo.git")
    (repo / "config.txt").write_text("lr = 0.2\n")
    script = repo / "src" / "train.py"

    out = _probe(str(script), cwd=tmp_path)

    head = _git(repo, "rev-parse", "HEAD")
    assert out["git_commit"] == head
    assert out["git_branch"] == "main"
    assert out["git_dirty"] is True
    assert "-lr = 0.1" in out["git_diff"] and "+lr = 0.2" in out["git_diff"]
    assert out["git_remote"] == "https://example.com/team/repo.git"
    assert out["source_type"] == "LOCAL"
    assert out["source_name"] == str(script)
    assert out["entry_point"] == "train.py"
    assert out["script_name"] == "train.py"
    assert out["script_bytes"] is not None
    assert base64.b64decode(out["script_bytes"]) == script.read_bytes()
    assert out["script_sha256"] == hashlib.sha256(script.read_bytes()).hexdigest()
    assert out["source_version"] == head
    assert out["tags"] == {
        "mlflow.user": out["user"],
        "mlflow.source.name": str(script),
        "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": head,
        "mlflow.source.git.branch": "main",
        "mlflow.source.git.repoURL": "https://example.com/team/repo.git",
        "mlflow.gitRepoURL": "https://example.com/team/repo.git",
        "mlflow.source.git.dirty": "true",
        "runlake.source.entryPoint": "train.py",
        "runlake.source.sha256": out["script_sha256"],
    }
    assert out["environment"]["git"]["diff"] == out["git_diff"]
    assert out["environment"]["source"]["version"] == head


@needs_git
def test_clean_repo_is_not_dirty_and_has_no_diff(tmp_path: Path) -> None:
    repo = _make_repo(tmp_path / "repo", {"train.py": PROBE})
    _git(repo, "remote", "add", "upstream", "git@example.com:team/repo.git")

    out = _probe("train.py", cwd=repo)

    assert out["git_dirty"] is False
    assert out["git_diff"] is None
    assert out["git_remote"] == "git@example.com:team/repo.git"
    assert out["tags"]["mlflow.source.git.dirty"] == "false"
    assert out["source_name"] == str(repo / "train.py")


@needs_git
def test_untracked_script_counts_as_dirty(tmp_path: Path) -> None:
    repo = _make_repo(tmp_path / "repo", {"README.md": "hello\n"})
    (repo / "experiment.py").write_text(PROBE)

    out = _probe("experiment.py", cwd=repo)

    assert out["git_commit"] == _git(repo, "rev-parse", "HEAD")
    assert out["git_dirty"] is True
    assert out["git_remote"] is None
    assert "mlflow.source.git.repoURL" not in out["tags"]


@needs_git
def test_detached_head_has_commit_but_no_branch(tmp_path: Path) -> None:
    repo = _make_repo(tmp_path / "repo", {"train.py": PROBE})
    head = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "--detach", head)

    out = _probe("train.py", cwd=repo)

    assert out["git_commit"] == head
    assert out["git_branch"] is None
    assert "mlflow.source.git.branch" not in out["tags"]


def test_outside_git_source_version_falls_back_to_sha256(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(PROBE)

    out = _probe(str(script), cwd=tmp_path, env=_outside_git(tmp_path))

    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    assert [out[k] for k in ("git_commit", "git_branch", "git_remote", "git_dirty", "git_diff")] == [None] * 5
    assert out["script_sha256"] == digest
    assert out["source_version"] == f"sha256:{digest}"
    assert out["tags"]["runlake.source.sha256"] == digest
    assert not any(key.startswith("mlflow.source.git") for key in out["tags"])


@needs_git
def test_missing_git_binary_leaves_git_fields_empty(tmp_path: Path) -> None:
    repo = _make_repo(tmp_path / "repo", {"train.py": PROBE})
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()

    out = _probe(str(repo / "train.py"), cwd=repo, env=_env(PATH=str(empty_bin)))

    assert out["git_commit"] is None and out["git_dirty"] is None
    assert out["source_version"] == f"sha256:{out['script_sha256']}"


@needs_git
def test_python_dash_m_records_module_as_entry_point(tmp_path: Path) -> None:
    repo = _make_repo(tmp_path / "repo", {"pkg/__init__.py": "", "pkg/train.py": PROBE})

    out = _probe("-m", "pkg.train", cwd=repo)

    assert out["entry_point"] == "pkg.train"
    assert out["source_name"] == str(repo / "pkg" / "train.py")
    assert out["script_name"] == "train.py"
    assert out["git_commit"] == _git(repo, "rev-parse", "HEAD")
    assert out["command_line"][1:] == ["-m", "pkg.train"]


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [(("-",), PROBE, "<stdin>"), (("-c", PROBE), None, "<interactive>")],
    ids=["stdin", "dash-c"],
)
def test_code_without_a_file_uses_a_placeholder_source(
    tmp_path: Path, args: tuple[str, ...], stdin: str | None, expected: str
) -> None:
    out = _probe(*args, cwd=tmp_path, env=_outside_git(tmp_path), stdin=stdin)

    assert out["source_name"] == expected
    assert out["entry_point"] == expected
    assert out["script_bytes"] is None and out["script_sha256"] is None
    assert out["source_version"] is None


@needs_git
def test_notebook_kernel_snapshots_the_ipynb_file(tmp_path: Path) -> None:
    notebook_text = json.dumps({"cells": [], "nbformat": 4, "nbformat_minor": 5})
    repo = _make_repo(tmp_path / "repo", {"analysis.ipynb": notebook_text})
    probe = tmp_path / "kernel.py"
    probe.write_text(NOTEBOOK_PROBE)
    notebook = repo / "analysis.ipynb"

    out = _probe(str(probe), str(notebook), cwd=repo, env=_env(KUBERNETES_SERVICE_HOST="10.0.0.1"))

    assert out["source_type"] == "NOTEBOOK"
    assert out["source_name"] == str(notebook)
    assert out["entry_point"] == "analysis.ipynb"
    assert out["script_name"] == "analysis.ipynb"
    assert base64.b64decode(out["script_bytes"]) == notebook.read_bytes()
    assert out["git_commit"] == _git(repo, "rev-parse", "HEAD")
    assert out["git_dirty"] is False


def test_notebook_path_from_jpy_session_name(tmp_path: Path) -> None:
    notebook = tmp_path / "explore.ipynb"
    notebook.write_text("{}")
    probe = tmp_path / "kernel.py"
    probe.write_text(NOTEBOOK_PROBE)

    out = _probe(str(probe), cwd=tmp_path, env=_outside_git(tmp_path) | {"JPY_SESSION_NAME": str(notebook)})

    assert out["source_type"] == "NOTEBOOK"
    assert out["source_name"] == str(notebook)
    assert out["source_version"] == f"sha256:{hashlib.sha256(b'{}').hexdigest()}"


def test_kernel_without_notebook_path_is_interactive(tmp_path: Path) -> None:
    probe = tmp_path / "kernel.py"
    probe.write_text(NOTEBOOK_PROBE)

    out = _probe(str(probe), cwd=tmp_path, env=_outside_git(tmp_path))

    assert out["source_type"] == "NOTEBOOK"
    assert out["source_name"] == "<interactive>"
    assert out["script_bytes"] is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "LOCAL"),
        ({SOURCE_TYPE_ENV: "JOB"}, "JOB"),
        ({SOURCE_TYPE_ENV: "job"}, "JOB"),
        ({"SLURM_JOB_ID": "42"}, "JOB"),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "JOB"),
        ({"GITHUB_ACTIONS": "true"}, "JOB"),
        ({"SLURM_JOB_ID": "42", SOURCE_TYPE_ENV: "LOCAL"}, "LOCAL"),
        ({"SLURM_JOB_ID": ""}, "LOCAL"),
    ],
    ids=lambda value: ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value,
)
def test_source_type_rules(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str) -> None:
    for name in (*JOB_ENVIRONMENT_VARIABLES, SOURCE_TYPE_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert capture_run_context(capture_packages=False).source_type == expected


def test_unknown_source_type_value_warns_and_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in JOB_ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(SOURCE_TYPE_ENV, "BATCH")

    with pytest.warns(UserWarning, match="RUNLAKE_SOURCE_TYPE='BATCH'"):
        ctx = capture_run_context(capture_packages=False)

    assert ctx.source_type == "LOCAL"


def test_packages_are_complete_deduplicated_and_pinned() -> None:
    ctx = capture_run_context()

    assert ctx.packages["pytest"] == importlib.metadata.version("pytest")
    lowered = [name.lower() for name in ctx.packages]
    assert len(lowered) == len(set(lowered))
    lines = requirements_txt(ctx).splitlines()
    assert f"pytest=={ctx.packages['pytest']}" in lines
    names = [line.split("==", 1)[0] for line in lines]
    assert names == sorted(names, key=str.lower)
    assert capture_run_context(capture_packages=False).packages == {}


def test_environment_json_shape_and_requirements_round_trip() -> None:
    ctx = capture_run_context()

    doc = environment_json(ctx)

    assert set(doc) == {"python", "platform", "hostname", "command_line", "packages", "git", "source"}
    assert doc["python"] == ctx.python_version and doc["command_line"] == ctx.command_line
    assert json.loads(json.dumps(doc)) == doc
    assert dict(line.split("==", 1) for line in requirements_txt(ctx).splitlines()) == doc["packages"]


def test_source_version_prefers_commit_then_script_hash() -> None:
    ctx = capture_run_context(capture_packages=False)
    fields = {"git_commit": None, "script_sha256": None}

    assert RunContext(**{**ctx.__dict__, **fields}).source_version is None
    assert RunContext(**{**ctx.__dict__, **fields, "script_sha256": "ab"}).source_version == "sha256:ab"
    assert RunContext(**{**ctx.__dict__, "git_commit": "c0ffee", "script_sha256": "ab"}).source_version == "c0ffee"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_cached_facts_are_recaptured_in_forked_children(monkeypatch: pytest.MonkeyPatch) -> None:
    original = capture_run_context(capture_packages=False).hostname
    monkeypatch.setattr(context.socket, "gethostname", lambda: "elsewhere")

    # Cached in this process: the patched lookup is not consulted again.
    assert capture_run_context(capture_packages=False).hostname == original

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write_end, capture_run_context(capture_packages=False).hostname.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_hostname = pipe.read().decode()
    os.waitpid(pid, 0)

    assert child_hostname == "elsewhere"


def test_tags_leave_out_unknown_values() -> None:
    ctx = capture_run_context(capture_packages=False)
    bare = RunContext(
        **{
            **ctx.__dict__,
            "git_commit": None,
            "git_remote": None,
            "git_branch": None,
            "git_dirty": None,
            "script_sha256": None,
        }
    )

    assert set(tags_for(bare)) == {
        "mlflow.user",
        "mlflow.source.name",
        "mlflow.source.type",
        "runlake.source.entryPoint",
    }


def test_ingest_modules_import_without_heavy_libraries(tmp_path: Path) -> None:
    # Blocking the modules proves no import chain needs them; pyarrow treats numpy as optional.
    code = (
        "import sys\n"
        "for name in ('pandas', 'numpy', 'duckdb', 'dash', 'sklearn', 'matplotlib', 'plotly', 'cloudpickle'):\n"
        "    sys.modules[name] = None\n"
        "import runlake.ingest.context, runlake.ingest.models, runlake.ingest.names\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_ingest_modules_do_not_load_heavy_libraries(tmp_path: Path) -> None:
    check = "print(sorted(m for m in ('pandas', 'numpy', 'duckdb', 'dash') if m in sys.modules))"

    def loaded(imports: str) -> list[str]:
        code = f"import sys, {imports}; {check}"
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
        return json.loads(proc.stdout.replace("'", '"'))

    # pyarrow (which the package needs) imports numpy whenever numpy is installed; that much
    # is not ours to avoid.
    allowed = set(loaded("pyarrow"))
    assert set(loaded("runlake.ingest.context, runlake.ingest.models, runlake.ingest.names")) <= allowed


def test_run_names_are_readable_and_reproducible() -> None:
    assert len(set(ADJECTIVES)) == len(ADJECTIVES) >= 50
    assert len(set(NOUNS)) == len(NOUNS) >= 50

    names = [generate_run_name() for _ in range(50)]

    for name in names:
        adjective, noun, number = name.split("-")
        assert adjective in ADJECTIVES and noun in NOUNS and 0 <= int(number) <= 999
        assert re.fullmatch(r"[a-z]+-[a-z]+-\d{1,3}", name)
    assert len(set(names)) > 1
    assert generate_run_name(random.Random(7)) == generate_run_name(random.Random(7))
