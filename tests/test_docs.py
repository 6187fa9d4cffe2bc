"""The README documents every setting, CLI command and SQL view, and quotes the real test command."""

from __future__ import annotations

import argparse
from pathlib import Path

from runlake.app.cli import build_parser
from runlake.app.settings import Settings
from runlake.lake import views

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_every_cli_command_is_documented():
    missing = [c for c in _commands() if f"`runlake {c}" not in README]
    assert not missing


def test_every_setting_is_documented():
    missing = [name for name in Settings.names() if f"`{name}`" not in README]
    assert not missing


def test_every_sql_view_is_documented():
    missing = [view for view in views.VIEW_DOCS if f"`{view}`" not in README]
    assert not missing


def test_ci_runs_exactly_the_readme_test_command():
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci[-1] in README
