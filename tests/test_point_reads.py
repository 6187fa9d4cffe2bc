"""Metric scans through DuckDB's own Parquet reader keep the lake's guarantees: they work on a
lake opened with ``sql_access="views"`` and skip a file whose pages are damaged."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

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
