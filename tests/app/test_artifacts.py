"""Artifact access is confined to the run's directory: `..`, absolute paths and symlinks out are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from runlake.app.web.artifacts import RunArtifacts, UnsafeArtifactPath, content_type, kind


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    root = tmp_path / "artifacts" / "1" / "run"
    (root / "plots").mkdir(parents=True)
    (root / "plots" / "a.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "notes.txt").write_text("hello")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "key.pem").write_text("PRIVATE")
    os.symlink(secret, root / "leak.txt")
    os.symlink(outside, root / "leakdir")
    os.symlink(root / "notes.txt", root / "alias.txt")  # a symlink that stays inside is fine
    return root


@pytest.mark.parametrize(
    "bad",
    [
        "../secret.txt",
        "plots/../../secret.txt",
        "/etc/passwd",
        "C:/x",
        "a\\b",
        "",
        "plots//a.svg",
        "./notes.txt",
        "a\x00b",
    ],
    ids=repr,
)
def test_paths_with_dotdot_absolute_or_odd_parts_are_refused(run_dir, bad):
    with pytest.raises(UnsafeArtifactPath):
        RunArtifacts(pafs.LocalFileSystem(), str(run_dir)).resolve(bad)


def test_symlinks_out_of_the_run_are_refused_and_not_listed(run_dir):
    store = RunArtifacts(pafs.LocalFileSystem(), str(run_dir))
    with pytest.raises(UnsafeArtifactPath):
        store.read("leak.txt")
    with pytest.raises(UnsafeArtifactPath):
        store.read("leakdir/key.pem")
    assert store.read("alias.txt") == b"hello"
    listed = [e.path for e in store.list()]
    assert "leak.txt" not in listed and not any(p.startswith("leakdir") for p in listed)
    assert {"notes.txt", "plots", "plots/a.svg", "alias.txt"} <= set(listed)


def test_preview_kinds_and_safe_content_types():
    assert kind("plots/x.plotly.json") == "plotly"
    assert kind("a.png") == "image" and kind("m.csv") == "csv" and kind("c.json") == "json"
    assert kind("model/MLmodel") == "text" and kind("model.pkl") == "binary"
    assert content_type("page.html").startswith("text/plain")
    assert content_type("a.png") == "image/png"


def test_route_serves_inside_and_refuses_outside(app, lake):
    run_id = lake.search_run_ids(filter_string="attributes.run_name = 'tabular-004'")[0]
    services = app.server.config["RUNLAKE_SERVICES"]
    record = services.get_run(run_id)
    run_root = Path(lake.paths.run_artifact_dir(str(record.info["experiment_id"]), run_id))
    secret = run_root.parent.parent.parent / "secret.txt"
    secret.write_text("do not serve")
    os.symlink(secret, run_root / "leak.txt")
    client = app.server.test_client()
    ok = client.get(f"/artifacts/{run_id}/feature_importance.csv")
    assert ok.status_code == 200 and b"feature,importance" in ok.data
    assert ok.headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in ok.headers["Content-Security-Policy"]
    download = client.get(f"/artifacts/{run_id}/plots/importance.svg?download=1")
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert client.get(f"/artifacts/{run_id}/leak.txt").status_code == 403
    assert client.get(f"/artifacts/{run_id}/..%2F..%2Fsecret.txt").status_code in (403, 404)
    assert client.get(f"/artifacts/{run_id}/missing.txt").status_code == 404
    assert client.get("/artifacts/nope/feature_importance.csv").status_code == 404
