"""Metric scans through DuckDB's own Parquet reader keep the lake's guarantees: they work on a
lake opened with ``sql_access="views"`` and skip a file whose pages are damaged."""

from __future__ import annotations

import random
import subprocess
import sys
import warnings
from pathlib import Path

import pandas.testing as pd_testing
import pytest

from runlake.core.damage import DamagedFileWarning
from runlake.core.errors import InvalidArgument
from runlake.ingest import LakeClient
from runlake.lake import Lake

POINTS = 20_000


def _lake(tmp_path: Path) -> tuple[str, str]:
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    run_id = client.create_run(client.create_experiment("points"))
    rng = random.Random(3)
    for first in (0, POINTS):  # two flushes: two metric files
        client.log_batch(run_id, metrics=[("loss", rng.random(), 0, s) for s in range(first, first + POINTS)])
        client.flush()
    return root, run_id


def test_metric_scans_work_with_sql_access_views(tmp_path: Path) -> None:
    root, run_id = _lake(tmp_path)
    lake = Lake(root, sql_access="views")
    assert len(lake.metric_history(run_id, "loss")) == 2 * POINTS
    series = lake.metric_series([run_id], "loss", buckets=10)
    assert len(series) == 10 and int(series["count"].sum()) == 2 * POINTS
    with pytest.raises(InvalidArgument):
        lake.sql("SELECT * FROM read_parquet(?)", [str(next(Path(root).rglob("*.parquet")))])


def test_a_metric_file_with_damaged_pages_is_skipped(tmp_path: Path) -> None:
    root, run_id = _lake(tmp_path)
    files = sorted(Path(root, "metrics").rglob("*.parquet"))
    victim = files[0]
    data = bytearray(victim.read_bytes())
    # Keep the footer (the file's last part) whole; scramble the first data pages.
    assert len(data) > 20_000
    for i in range(8, len(data) // 4):
        data[i] = 0xFF
    victim.write_bytes(bytes(data))
    lake = Lake(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = lake.metric_history(run_id, "loss")
        series = lake.metric_series([run_id], "loss", buckets=50_000)
    assert any(issubclass(w.category, DamagedFileWarning) for w in caught)
    if len(files) > 1:
        assert 0 < len(history) < 2 * POINTS
        assert len(series) == len(history)
    assert [d.path for d in lake.damaged_files()] == [str(victim)]


def test_a_metric_file_rewritten_in_place_is_read_anew(tmp_path: Path) -> None:
    """Same path, other bytes and size (an object store's overwrite, a repair): the footer read
    before is not reused. (On a local lake ``metric_history`` hands DuckDB the dataset's file list;
    a stale footer made the pyarrow scans leave the file out as damaged, and with it that list.)"""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root, run_id = _lake(tmp_path)
    lake = Lake(root)
    assert len(lake.metric_history(run_id, "loss")) == 2 * POINTS
    assert len(lake.metric_histories([run_id])) == 2 * POINTS
    victim = sorted(Path(root, "metrics").rglob("*.parquet"))[0]  # the first flush: steps 0 .. POINTS-1
    size = victim.stat().st_size
    old = pq.ParquetFile(victim).read()
    kept = POINTS // 2
    new = old.filter(pc.less(old["step"], kept))
    new = new.set_column(new.schema.get_field_index("value"), "value", pa.array([7.0] * kept, pa.float64()))
    pq.write_table(new, victim)
    assert victim.stat().st_size != size
    lake.refresh()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedFileWarning)
        points = lake.metric_histories([run_id])
        series = lake.metric_series([run_id], "loss", buckets=50_000)
        history = lake.metric_history(run_id, "loss")
    assert len(points) == POINTS + kept and int((points["value"] == 7.0).sum()) == kept
    assert int(series["count"].sum()) == POINTS + kept
    assert history["step"].tolist() == [*range(kept), *range(POINTS, 2 * POINTS)]
    assert (history["value"][:kept] == 7.0).all() and (history["value"][kept:] != 7.0).all()
    assert lake.damaged_files() == []


def test_a_history_read_again_scans_only_the_files_written_since(tmp_path: Path, monkeypatch) -> None:
    """Each file's points of a series are kept by file version: a live run's history read
    again reads the new flushes and merges only, and still equals a fresh reader's."""
    from runlake.lake import history
    from runlake.lake.maintenance import compact

    root, run_id = _lake(tmp_path)
    lake = Lake(root)
    read: list[list[str]] = []
    real = history._read_files

    def spy(db, files, run, key):  # type: ignore[no-untyped-def]
        read.append(sorted(path for path, _size in files))
        return real(db, files, run, key)

    monkeypatch.setattr(history, "_read_files", spy)
    first = lake.metric_history(run_id, "loss")
    assert len(first) == 2 * POINTS and len(read) == 1 and len(read[0]) == 2
    again = lake.metric_history(run_id, "loss")
    assert len(read) == 1  # nothing new: every point from memory
    pd_testing.assert_frame_equal(again, first)

    before = {str(p) for p in Path(root, "metrics").rglob("*.parquet")}
    client = LakeClient(root)
    client.log_batch(run_id, metrics=[("loss", 0.5, 0, s) for s in range(2 * POINTS, 2 * POINTS + 10)])
    client.flush()
    written = sorted({str(p) for p in Path(root, "metrics").rglob("*.parquet")} - before)
    grown = lake.metric_history(run_id, "loss")
    assert read[-1] == written
    pd_testing.assert_frame_equal(grown, Lake(root, cache=False).metric_history(run_id, "loss"))
    assert len(grown) == 2 * POINTS + 10

    compact(root, grace_s=0)  # every file replaced by a merged one
    compacted = lake.metric_history(run_id, "loss")
    assert read[-1] == sorted(str(p) for p in Path(root, "metrics").rglob("*.parquet"))
    pd_testing.assert_frame_equal(compacted, grown)


def test_kept_points_and_a_merged_copy_of_them_count_once(tmp_path: Path) -> None:
    """Between a merge's two steps its output and its inputs are listed together: the points
    kept from the inputs and the ones read from the output are the same points, counted once."""
    import shutil

    root, run_id = _lake(tmp_path)
    lake = Lake(root)
    assert len(lake.metric_history(run_id, "loss")) == 2 * POINTS  # both files' points kept
    first = sorted(Path(root, "metrics").rglob("*.parquet"))[0]
    shutil.copy(first, first.with_name("merged-" + first.name))
    history = lake.metric_history(run_id, "loss")
    assert history["step"].tolist() == list(range(2 * POINTS))


def test_each_metric_file_keeps_its_own_points_of_a_series(tmp_path: Path) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root, run_id = _lake(tmp_path)
    client = LakeClient(root)
    other = client.create_run(client.create_experiment("other"))
    client.log_batch(other, metrics=[("loss", 1.0, 0, 0)])
    client.log_batch(run_id, metrics=[("acc", 1.0, 0, 0)])  # a file with other series of the run
    client.flush()
    lake = Lake(root)
    lake.metric_history(run_id, "loss")
    files = lake.connection.metric_files()
    assert len(files) >= 4
    for path, size in files:
        kept, missing = lake.connection.file_series.get([(path, size)], run_id, "loss")
        if lake.connection.run_partition(run_id)[0] not in path:
            assert missing == [(path, size)]  # another experiment's partition: never read
            continue
        assert missing == [] and len(kept) == 1
        table = pq.read_table(path)
        own = table.filter(pc.and_(pc.equal(table["run_id"], run_id), pc.equal(table["key"], "loss")))
        assert kept[0].to_pydict() == own.select(["step", "timestamp", "value"]).to_pydict()


def test_kept_series_points_stay_within_their_bounds() -> None:
    import pyarrow as pa

    from runlake.lake.file_series import FileSeries

    def points(n: int) -> pa.Table:
        return pa.table({"step": list(range(n)), "timestamp": [0] * n, "value": [0.0] * n})

    kept = FileSeries(max_points=10, max_entries=3)
    kept.put("r", "k", {("a", 1): points(6)})
    kept.put("r", "k", {("b", 1): points(6)})  # 12 points: the older file goes
    assert kept.get([("a", 1), ("b", 1)], "r", "k")[1] == [("a", 1)]
    kept.put("r", "k", {("huge", 1): points(11)})  # above the bound alone: never kept
    assert kept.get([("huge", 1)], "r", "k")[1] == [("huge", 1)] and kept.points == 6
    kept.put("r", "k", {("c", 1): points(0)})
    kept.get([("b", 1)], "r", "k")  # used: now newer than c
    kept.put("r", "k", {("d", 1): points(0), ("e", 1): points(0)})  # 4 files: the least recently used goes
    assert len(kept) == 3 and kept.get([("b", 1), ("c", 1)], "r", "k")[1] == [("c", 1)]


def test_a_history_follows_its_run_through_a_purge_and_an_id_used_again(tmp_path: Path) -> None:
    """The partition a history found its run in is kept; a purged run is still not found, and
    a run id purged and created again in another experiment reads its new points."""
    from runlake.core.errors import RunNotFound
    from runlake.lake.maintenance import purge

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    first, second = client.create_experiment("first"), client.create_experiment("second")
    for run_id in ("purged", "reused"):
        client.create_run(first, run_id=run_id)
        client.log_batch(run_id, metrics=[("loss", 1.0, 0, s) for s in range(3)])
    client.flush()
    lake = Lake(root)
    for run_id in ("purged", "reused"):
        assert lake.metric_history(run_id, "loss")["step"].tolist() == [0, 1, 2]
        lake.delete_run(run_id)
    purge(root, older_than_s=0)
    # Another process (this one's writer remembers the id) creates it again elsewhere.
    script = (
        "import sys\nfrom runlake.ingest import LakeClient\n"
        "client = LakeClient(sys.argv[1])\nclient.create_run(sys.argv[2], run_id='reused')\n"
        "client.log_batch('reused', metrics=[('loss', 2.0, 0, s) for s in range(5, 7)])\nclient.flush()\n"
    )
    subprocess.run([sys.executable, "-c", script, root, second], check=True)
    with pytest.raises(RunNotFound):
        lake.metric_history("purged", "loss")
    assert lake.metric_history("reused", "loss")["step"].tolist() == [5, 6]
    assert lake.connection.run_partition("reused")[0] == second
