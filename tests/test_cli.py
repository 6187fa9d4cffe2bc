"""The command line, through the real console script and through ``main``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runlake.app.cli import build_parser, main
from runlake.demo import build_demo
from runlake.lake import Lake
from tests.conftest import RUNLAKE


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("demo") / "lake")
    build_demo(root, runs=40)
    return root


def test_console_script_runs(demo_lake):
    exe = RUNLAKE
    assert os.access(exe, os.X_OK), f"the runlake console script is installed next to {sys.executable}"
    result = subprocess.run(
        [exe, "experiments", "--lake", demo_lake, "--format", "json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    names = {row["name"] for row in json.loads(result.stdout)}
    assert names == {"image-classifier-sweep", "tabular-baselines", "llm-finetune"}


def test_demo_is_deterministic_and_realistic(tmp_path, demo_lake):
    other = str(tmp_path / "again")
    build_demo(other, runs=40)
    a = Lake(demo_lake).sql("SELECT run_id, status, run_name FROM runs ORDER BY run_id")
    b = Lake(other).sql("SELECT run_id, status, run_name FROM runs ORDER BY run_id")
    assert a.equals(b)
    lake = Lake(demo_lake)
    statuses = set(lake.sql("SELECT DISTINCT status FROM runs")["status"])
    assert {"FINISHED", "FAILED", "KILLED", "RUNNING"} <= statuses
    assert lake.sql("SELECT count(*) AS n FROM runs WHERE parent_run_id IS NOT NULL")["n"][0] > 0
    assert lake.sql("SELECT count(*) AS n FROM runs WHERE lifecycle_stage = 'deleted'")["n"][0] >= 1
    assert lake.sql("SELECT count(*) AS n FROM tags WHERE key = 'mlflow.log-model.history'")["n"][0] > 0
    assert lake.sql("SELECT count(*) AS n FROM tags WHERE key = 'model family'")["n"][0] > 0
    per_run = lake.sql("SELECT run_id, count(DISTINCT key) AS k FROM params GROUP BY run_id HAVING k = 10")
    assert len(per_run) > 30
    loss = lake.metric_history(per_run["run_id"][0], "train_loss")["value"]
    assert loss.iloc[:10].mean() > loss.iloc[-10:].mean()  # training-like: the loss falls


def test_demo_refuses_a_foreign_lake_and_reuses_its_own(tmp_path, demo_lake, capsys):
    assert main(["demo", "--lake", demo_lake, "--runs", "40"]) == 0
    assert "already built" in capsys.readouterr().out
    assert main(["demo", "--lake", demo_lake, "--runs", "41"]) == 2
    assert main(["demo", "--lake", str(tmp_path / "x"), "--runs", "0"]) == 2


def test_sql_one_shot_formats(demo_lake, capsys):
    assert main(["sql", "--lake", demo_lake, "--format", "csv", "SELECT count(*) AS n FROM experiments"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "3"]
    assert main(["sql", "--lake", demo_lake, "--format", "json", "SELECT 1 AS one"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"one": 1}]


def test_sql_error_exits_nonzero(demo_lake, capsys):
    code = main(["sql", "--lake", demo_lake, "SELECT * FROM no_such_view"])
    assert code != 0
    assert "no_such_view" in capsys.readouterr().err


def test_sql_print_views_is_runnable_duckdb(demo_lake, capsys):
    import duckdb

    assert main(["sql", "--lake", demo_lake, "--print-views"]) == 0
    script = capsys.readouterr().out
    con = duckdb.connect()
    for statement in script.split(";\n"):
        if statement.strip():
            con.execute(statement)
    plain = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert plain == len(Lake(demo_lake).sql("SELECT run_id FROM runs"))


def test_sql_interactive_shell(demo_lake):
    result = subprocess.run(
        [RUNLAKE, "sql", "--lake", demo_lake],
        input="SELECT count(*) AS n\nFROM experiments;\nSELECT nope;\n",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert " 3" in result.stdout and "error" in result.stderr


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["frobnicate"])
    assert info.value.code == 2


def test_bench_runs_the_checkouts_benchmarks_and_says_where_they_are_otherwise(monkeypatch, capsys):
    from benchmarks.suites import SUITES
    from runlake.app.cli import bench

    with pytest.raises(SystemExit) as info:
        main(["bench", "--help"])  # the benchmarks' own parser: every suite is a choice
    assert info.value.code == 0
    assert "{" + ",".join([*SUITES, "all"]) + "}" in capsys.readouterr().out
    monkeypatch.setattr(bench, "find_benchmarks", lambda: None)  # as from a wheel install
    assert main(["bench", "ingest"]) == 2
    assert "python -m benchmarks" in capsys.readouterr().err
