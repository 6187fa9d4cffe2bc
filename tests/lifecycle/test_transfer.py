"""Export and import: round trips, idempotence, parent links, and every kind of bad input."""

from __future__ import annotations

import json
import os
import shutil
import zipfile

import pytest

from runlake.core.errors import ExperimentNotFound, InvalidArgument, LakeFormatError
from runlake.ingest.client import LakeClient
from runlake.lake import Lake, transfer
from runlake.lake.export_format import PENDING_TAG
from tests.lifecycle.conftest import listing


@pytest.fixture
def source(tmp_path):
    root = str(tmp_path / "source")
    client = LakeClient(root)
    exp = client.create_experiment("vision")
    parent = client.create_run(exp, run_name="sweep", start_time=1_000, run_id="parent1")
    client.log_batch(parent, params={"trials": 2}, tags={"kind": "sweep"})
    client.set_terminated(parent, end_time=9_000)
    for i in range(2):
        child = client.create_run(
            exp, run_name=f"trial-{i}", start_time=2_000 + i, parent_run_id=parent, run_id=f"child{i}"
        )
        points = [("loss", 1.0 / (s + 1), 3_000 + s, s) for s in range(500)] + [("nan", float("nan"), 5, 0)]
        client.log_batch(child, metrics=points, params={"lr": f"0.{i + 1}"}, tags={"kind": "trial"})
        client.log_text(child, f"trial {i}", "notes/readme.txt")
        client.log_bytes(child, bytes(range(256)), "model/weights.bin")
        client.set_terminated(child, "FAILED" if i else "FINISHED", end_time=8_000)
    client.create_run(exp, run_name="gone", start_time=500, run_id="deleted1")
    client.delete_run("deleted1")
    return Lake(root)


def _snapshot(lake: Lake, run_ids):
    out = {}
    for run_id in run_ids:
        run = lake.get_run(run_id)
        info = {
            k: run.info[k]
            for k in ("run_name", "status", "start_time", "end_time", "parent_run_id", "user_id", "lifecycle_stage")
        }
        history = lake.metric_histories([run_id])[["key", "step", "timestamp", "value"]].astype(str).values.tolist()
        out[run_id] = (info, run.params, run.tags, history)
    return out


@pytest.mark.parametrize("name", ["export", "export.zip"])
def test_round_trip_keeps_ids_parents_histories_tags_and_artifacts(source, tmp_path, name):
    out = str(tmp_path / name)
    exported = transfer.export_runs(source, "vision", out)
    assert sorted(exported.runs) == ["child0", "child1", "parent1"]  # active runs only
    assert exported.runs.index("parent1") == 0 and exported.metric_points == 2 * 501 and exported.artifact_files == 4
    target = Lake(str(tmp_path / "target"))
    imported = transfer.import_runs(target, out)
    assert sorted(imported.runs) == sorted(exported.runs) and imported.skipped == []
    assert _snapshot(target, exported.runs) == _snapshot(source, exported.runs)
    assert target.get_experiment_by_name("vision") is not None
    art = target.get_run("child1").info["artifact_uri"].removeprefix("file://")
    with open(os.path.join(art, "model", "weights.bin"), "rb") as handle:
        assert handle.read() == bytes(range(256))
    assert PENDING_TAG not in target.get_run("child0").tags


def test_export_follows_the_mlflow_export_import_layout(source, tmp_path):
    out = tmp_path / "export"
    transfer.export_runs(source, "vision", str(out), filter_string="tags.kind = 'trial'")
    manifest = json.loads((out / "experiment.json").read_text())
    assert manifest["mlflow"]["experiment"]["name"] == "vision"
    assert sorted(manifest["mlflow"]["runs"]) == ["child0", "child1"]
    assert manifest["info"]["num_total_runs"] == 2 and manifest["runlake"]["format_version"] == 1
    run = json.loads((out / "child0" / "run.json").read_text())
    assert run["mlflow"]["info"]["run_id"] == "child0" and run["mlflow"]["info"]["status"] == "FINISHED"
    assert run["mlflow"]["params"] == {"lr": "0.1"}
    assert run["mlflow"]["metrics"]["loss"][0] == {"value": 1.0, "timestamp": 3000, "step": 0}
    assert run["mlflow"]["tags"]["mlflow.parentRunId"] == "parent1"
    assert (out / "child0" / "artifacts" / "notes" / "readme.txt").read_text() == "trial 0"


def test_importing_twice_duplicates_nothing(source, tmp_path):
    out = str(tmp_path / "e.zip")
    transfer.export_runs(source, "vision", out)
    target = Lake(str(tmp_path / "target"))
    transfer.import_runs(target, out, experiment="copy")
    files = listing(target.root)
    again = transfer.import_runs(target, out, experiment="copy")
    assert again.runs == [] and sorted(again.skipped) == ["child0", "child1", "parent1"]
    assert listing(target.root) == files
    assert len(target.metric_history("child0", "loss")) == 500


def test_an_import_cut_off_midway_is_completed_by_the_next_one(source, tmp_path, monkeypatch):
    out = str(tmp_path / "e")
    transfer.export_runs(source, "vision", out)
    target = Lake(str(tmp_path / "target"))
    original = transfer.write_run
    calls = []

    def dies_on_second_run(lake, experiment_id, run, read, *, resume=False):
        calls.append(run.run_id)
        if len(calls) == 2:
            # A run created with its pending tag, then the process dies before the run's data.
            LakeClient(lake.root).create_run(
                experiment_id,
                run_name=run.run_name,
                start_time=run.start_time,
                user_id=run.user_id,
                tags={**run.tags, PENDING_TAG: "1"},
                parent_run_id=run.parent_run_id,
                run_id=run.run_id,
            )
            raise KeyboardInterrupt
        original(lake, experiment_id, run, read, resume=resume)

    monkeypatch.setattr(transfer, "write_run", dies_on_second_run)
    with pytest.raises(KeyboardInterrupt):
        transfer.import_runs(target, out)
    monkeypatch.setattr(transfer, "write_run", original)
    report = transfer.import_runs(target, out)
    assert calls[1] in report.runs and calls[0] in report.skipped
    assert _snapshot(target, [calls[1]]) == _snapshot(source, [calls[1]])


def test_unknown_experiment_and_bad_filter(source, tmp_path):
    with pytest.raises(ExperimentNotFound):
        transfer.export_runs(source, "nope", str(tmp_path / "x"))
    with pytest.raises(ValueError):
        transfer.export_runs(source, "vision", str(tmp_path / "y"), filter_string="metrics.loss <<< 1")
    assert not os.path.exists(tmp_path / "y" / "experiment.json")


def test_export_refuses_a_non_empty_directory(source, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidArgument, match="not empty"):
        transfer.export_runs(source, "vision", str(tmp_path / "full"))


def _export(source, tmp_path, name="e") -> str:
    out = str(tmp_path / name)
    transfer.export_runs(source, "vision", out)
    return out


def _edit(path: str, mutate) -> None:
    with open(path) as handle:
        document = json.load(handle)
    mutate(document)
    with open(path, "w") as handle:
        json.dump(document, handle)


BAD_EXPORTS = {
    "newer format version": (
        lambda d: _edit(os.path.join(d, "experiment.json"), lambda m: m["runlake"].update(format_version=99)),
        "newer runlake",
    ),
    "newer run format": (
        lambda d: _edit(os.path.join(d, "child1", "run.json"), lambda r: r["system"].update(runlake_format_version=2)),
        "newer runlake",
    ),
    "missing manifest": (lambda d: os.remove(os.path.join(d, "experiment.json")), "has no experiment.json"),
    "missing run.json": (lambda d: os.remove(os.path.join(d, "child1", "run.json")), "has no child1/run.json"),
    "truncated run.json": (lambda d: open(os.path.join(d, "child1", "run.json"), "r+").truncate(200), "not valid JSON"),
    "missing status": (
        lambda d: _edit(os.path.join(d, "child1", "run.json"), lambda r: r["mlflow"]["info"].pop("status")),
        "status must be one of",
    ),
    "start_time not a number": (
        lambda d: _edit(os.path.join(d, "child1", "run.json"), lambda r: r["mlflow"]["info"].update(start_time="soon")),
        "start_time must be an integer",
    ),
    "metric value not a number": (
        lambda d: _edit(
            os.path.join(d, "child1", "run.json"),
            lambda r: r["mlflow"]["metrics"]["loss"].append({"value": "x", "timestamp": 1}),
        ),
        "invalid metric points",
    ),
    "metric point without timestamp": (
        lambda d: _edit(
            os.path.join(d, "child1", "run.json"), lambda r: r["mlflow"]["metrics"]["loss"].append({"value": 1})
        ),
        "without value or timestamp",
    ),
    "run id mismatch": (
        lambda d: _edit(os.path.join(d, "child1", "run.json"), lambda r: r["mlflow"]["info"].update(run_id="other")),
        "does not match",
    ),
    "bad tag key": (
        lambda d: _edit(os.path.join(d, "child1", "run.json"), lambda r: r["mlflow"]["tags"].update({"a\nb": "x"})),
        "Invalid tag key",
    ),
    "runs not a list": (
        lambda d: _edit(os.path.join(d, "experiment.json"), lambda m: m["mlflow"].update(runs="child1")),
        "must list the exported run ids",
    ),
}


@pytest.mark.parametrize("case", list(BAD_EXPORTS), ids=list(BAD_EXPORTS))
def test_bad_exports_are_clear_errors_and_import_nothing(source, tmp_path, case):
    out = _export(source, tmp_path)
    damage, message = BAD_EXPORTS[case]
    damage(out)
    target = Lake(str(tmp_path / "target"))
    LakeClient(target.root).create_experiment("vision")
    before = listing(target.root)
    with pytest.raises(LakeFormatError, match=message) as info:
        transfer.import_runs(target, out)
    assert info.value.to_dict()["error"] == "LakeFormatError"
    assert listing(target.root) == before  # nothing half-imported


def test_truncated_and_corrupt_zips_are_clear_errors(source, tmp_path):
    out = _export(source, tmp_path, "e.zip")
    data = open(out, "rb").read()
    target = Lake(str(tmp_path / "target"))
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(LakeFormatError, match="corrupt or truncated"):
        transfer.import_runs(target, str(truncated))
    corrupt = bytearray(data)
    with zipfile.ZipFile(out) as zf:
        member = zf.getinfo("child0/run.json")
    corrupt[member.header_offset + 30 + len(member.filename) + 5] ^= 0xFF  # flip a byte inside the data
    (tmp_path / "corrupt.zip").write_bytes(bytes(corrupt))
    with pytest.raises(LakeFormatError, match="corrupt"):
        transfer.import_runs(target, str(tmp_path / "corrupt.zip"))
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    with pytest.raises(LakeFormatError):
        transfer.import_runs(target, str(tmp_path / "junk.zip"))
    assert not os.path.exists(os.path.join(target.root, "runs"))


def test_an_artifact_name_climbing_out_of_its_run_is_refused(source, tmp_path):
    out = _export(source, tmp_path, "e.zip")
    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr("child0/artifacts/../../../escape.txt", "x")
    with pytest.raises(LakeFormatError, match="unsafe artifact name"):
        transfer.import_runs(Lake(str(tmp_path / "target")), out)


def test_missing_export_path_is_invalid_argument(tmp_path):
    with pytest.raises(InvalidArgument, match="No export at"):
        transfer.import_runs(Lake(str(tmp_path / "target")), str(tmp_path / "nothing"))


def test_an_export_made_by_mlflow_export_import_without_runlake_fields_imports(source, tmp_path):
    out = _export(source, tmp_path)
    _edit(os.path.join(out, "experiment.json"), lambda m: (m.pop("runlake"), m["system"].pop("runlake_format_version")))
    for run_id in ("parent1", "child0", "child1"):
        _edit(os.path.join(out, run_id, "run.json"), lambda r: r.pop("runlake"))
    shutil.rmtree(os.path.join(out, "child1", "artifacts"))
    target = Lake(str(tmp_path / "target"))
    report = transfer.import_runs(target, out)
    assert len(report.runs) == 3
    assert target.get_run("child0").info["parent_run_id"] == "parent1"  # from the mlflow.parentRunId tag


def test_a_symlink_in_a_directory_export_is_refused(source, tmp_path):
    out = _export(source, tmp_path, "dir-export")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy me")
    os.symlink(secret, os.path.join(out, "child0", "artifacts", "passwd.txt"))
    target = Lake(str(tmp_path / "target"))
    with pytest.raises(LakeFormatError, match="symbolic link"):
        transfer.import_runs(target, out)
    assert not os.path.exists(os.path.join(target.root, "runs"))  # nothing half-imported
