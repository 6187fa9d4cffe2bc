"""The lifecycle commands: exit statuses a scheduler can trust, dry runs, TIME and DURATION parsing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import pytest

from runlake.app.cli import main
from runlake.app.cli.lifecycle import parse_duration, parse_time
from runlake.core import layout
from runlake.lake import Lake
from runlake.lake.maintenance import retention
from tests.lifecycle.conftest import listing, log_runs

T0 = 1_700_000_000_000


def run_cli(argv: Sequence[str]) -> int:
    """``runlake`` in-process; argparse's rejections (SystemExit) become their exit status."""
    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000000", T0),
        ("2023-11-14", 1_699_920_000_000),
        ("2023-11-14T22:13:20", T0),
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-15T00:13:20+02:00", T0),
        (" 2023-11-14 22:13:20 ", T0),
    ],
)
def test_time_is_epoch_ms_or_an_iso_date_in_utc(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2023-13-01", "-5", "1.5", ""])
def test_bad_time_is_rejected(text):
    with pytest.raises(argparse.ArgumentTypeError, match="epoch milliseconds"):
        parse_time(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 2_592_000), ("12h", 43_200), ("90m", 5_400), ("45s", 45), ("2w", 1_209_600), ("1.5h", 5_400), ("0d", 0)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "-1d", "3 days", "1y"])
def test_bad_durations_are_rejected(text):
    with pytest.raises(argparse.ArgumentTypeError, match="30d, 12h, 90m"):
        parse_duration(text)


@pytest.fixture
def lake(lake_dir):
    log_runs(lake_dir, runs=3, start_time=T0)
    return lake_dir


def test_delete_and_restore_runs(lake, capsys):
    assert run_cli(["delete-runs", "--lake", lake, "--experiment", "exp", "--before", str(T0 + 1000), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete 2 runs" in out
    assert len(Lake(lake).search_run_ids()) == 3  # the dry run changed nothing
    assert (
        run_cli(
            ["delete-runs", "--lake", lake, "--experiment", "exp", "--before", "2023-11-14T22:13:21", "--max-runs", "1"]
        )
        == 0
    )
    assert "deleted 1 runs" in capsys.readouterr().out
    assert len(Lake(lake).search_run_ids()) == 2
    assert run_cli(["restore-runs", "--lake", lake, "--experiment", "exp", "--since", "2020-01-01", "--dry-run"]) == 0
    assert "would restore 1 runs" in capsys.readouterr().out
    assert run_cli(["restore-runs", "--lake", lake, "--experiment", "exp", "--since", "2020-01-01"]) == 0
    assert len(Lake(lake).search_run_ids()) == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["delete-runs", "--experiment", "nope", "--before", "1"], "Experiment 'nope' not found"),
        (
            ["delete-runs", "--experiment", "exp", "--before", "1", "--max-runs", "0"],
            "max_runs must be a positive integer",
        ),
        (["delete-runs", "--experiment", "exp", "--before", "1", "--max-runs", "10001"], "no larger than 10,000"),
        (["delete-runs", "--experiment", "exp", "--before", "soon"], "invalid time"),
        (["restore-runs", "--experiment", "exp"], "--since"),
        (["retention", "--older-than", "forever"], "invalid duration"),
        (["compact", "--grace", "10"], "invalid duration"),
        (["export", "--experiment", "nope", "out.zip"], "Experiment 'nope' not found"),
        (["import", "missing-export"], "No export at"),
    ],
)
def test_bad_input_exits_2(lake, capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = listing(lake)
    assert run_cli([*argv, "--lake", lake]) == 2
    assert message in capsys.readouterr().err
    assert listing(lake) == before


def test_a_missing_lake_is_bad_input_not_an_empty_success(tmp_path, capsys):
    assert run_cli(["retention", "--lake", str(tmp_path / "typo")]) == 2
    assert "No lake at" in capsys.readouterr().err
    assert run_cli(["compact", "--lake", str(tmp_path / "typo")]) == 2


def test_retention_dry_run_then_purge_then_nothing(lake, capsys):
    Lake(lake).delete_run(Lake(lake).search_run_ids()[0])
    before = listing(lake)
    assert run_cli(["retention", "--lake", lake, "--older-than", "0s", "--dry-run"]) == 0
    assert "would purge 1 runs" in capsys.readouterr().out
    assert listing(lake) == before
    assert run_cli(["retention", "--lake", lake, "--older-than", "0s", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs_purged"] == 1 and report["ok"] is True and report["rows_removed"]["metrics"] == 40
    assert run_cli(["retention", "--lake", lake, "--older-than", "0s"]) == 0
    assert "purged 0 runs" in capsys.readouterr().out


def test_retention_exits_1_when_an_artifact_cannot_be_removed(lake, capsys, monkeypatch):
    run_id = Lake(lake).search_run_ids()[0]
    Lake(lake).delete_run(run_id)

    def refuse(fs, path):
        raise PermissionError("Permission denied")

    monkeypatch.setattr(retention, "delete_artifact_dir", refuse)
    assert run_cli(["retention", "--lake", lake, "--older-than", "0s"]) == 1
    captured = capsys.readouterr()
    assert f"FAILED {run_id}" in captured.out and "could not be purged" in captured.err


def test_maintenance_busy_exits_1(lake, capsys):
    from runlake.core.lease import maintenance_lease

    fs, root = layout.resolve_lake(lake)
    with maintenance_lease(fs, root, "compact"):
        assert run_cli(["retention", "--lake", lake, "--wait", "0.2"]) == 1
    assert "Another maintenance job" in capsys.readouterr().err


def test_compact_export_import(lake, tmp_path, capsys):
    assert run_cli(["compact", "--lake", lake, "--grace", "0s"]) == 0
    assert "metric_summaries" in capsys.readouterr().out
    out = str(tmp_path / "runs.zip")
    assert run_cli(["export", "--lake", lake, "--experiment", "exp", "--filter", "params.lr = '0.1'", out]) == 0
    assert "1 runs" in capsys.readouterr().out
    target = str(tmp_path / "target")
    assert run_cli(["import", out, "--lake", target, "--experiment", "copied"]) == 0
    assert run_cli(["import", out, "--lake", target, "--experiment", "copied"]) == 0
    assert "already present, skipped" in capsys.readouterr().out
    assert len(Lake(target).search_run_ids(experiment_names=["copied"])) == 1


def test_a_corrupt_export_exits_2(lake, tmp_path, capsys):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert run_cli(["import", str(bad), "--lake", str(tmp_path / "target")]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err
