"""The flush's one-series path: a log_batch table of one run's one key is checked for order and
summarised from its numbers alone, with the same result as the general path."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runlake.core import batch
from runlake.core import points as points_mod
from runlake.ingest import LakeClient
from runlake.lake import Lake

T0 = 1_700_000_000_000
values = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1.0]), st.floats(-1e9, 1e9, allow_nan=False))


def _rows(table: pa.Table) -> list[tuple]:
    def norm(v):
        return "nan" if isinstance(v, float) and math.isnan(v) else v

    return [tuple(norm(v) for v in row.values()) for row in table.to_pylist()]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20), values), min_size=1, max_size=60))
def test_one_series_summary_equals_the_general_summary(points):
    table = points_mod.metric_points_table("r" * 32, [("loss", v, T0 + t, s) for s, t, v in points])
    assert table.schema.metadata[points_mod.SERIES_METADATA] == b"r" * 32 + b"\x00loss"
    ordered = table.sort_by(points_mod.POINT_ORDER)
    general = points_mod.summarize(ordered, presorted=True)
    assert _rows(points_mod.summarize(ordered, presorted=True, one_series=True)) == _rows(general)
    numbers = [name for name, _ in points_mod.POINT_ORDER]
    assert points_mod.is_sorted(ordered, numbers[2:]) == points_mod.is_sorted(ordered, numbers)
    assert points_mod.is_sorted(table, numbers[2:]) == points_mod.is_sorted(table, numbers)


def test_several_keys_or_points_logged_one_by_one_take_the_general_path():
    two_keys = points_mod.metric_points_table("r" * 32, [("a", 1.0, T0, 0), ("b", 2.0, T0, 0)])
    assert points_mod.SERIES_METADATA not in (two_keys.schema.metadata or {})
    buffer = batch.Buffer()
    one = points_mod.metric_points_table("r" * 32, [("a", 1.0, T0, 0)])
    buffer.add_metric_table("1", one)
    assert buffer._metrics["1"].one_series()
    buffer.add_metric("1", "r" * 32, "a", 2.0, 1, T0)
    assert not buffer._metrics["1"].one_series()
    other = batch.Buffer()
    other.add_metric_table("1", one)
    other.add_metric_table("1", points_mod.metric_points_table("s" * 32, [("a", 1.0, T0, 0)]))
    assert not other._metrics["1"].one_series()


def test_a_failed_flush_puts_back_what_it_knew_of_the_series(tmp_path):
    buffer = batch.Buffer()
    buffer.add_metric_table("1", points_mod.metric_points_table("r" * 32, [("a", 1.0, T0, 0)]))
    taken, rows = buffer._take()
    buffer.add_metric_table("1", points_mod.metric_points_table("s" * 32, [("a", 1.0, T0, 0)]))
    buffer._put_back(taken, rows)
    assert not buffer._metrics["1"].one_series()  # two runs now
    again = batch.Buffer()
    again.add_metric("1", "r" * 32, "a", 2.0, 1, T0)
    taken, rows = again._take()
    again._put_back(taken, rows)
    again.add_metric_table("1", points_mod.metric_points_table("r" * 32, [("b", 1.0, T0, 0)]))
    assert not again._metrics["1"].one_series()


@pytest.mark.parametrize("shuffled", [False, True])
def test_a_big_table_of_one_series_lands_whole_and_summarised(lake_dir, shuffled):
    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("big"))
    n = 50_000
    steps = list(range(n))
    if shuffled:
        steps = steps[::-1]  # out of order: sorted by the flush
    data = pa.table(
        {
            "key": ["loss"] * n,
            "value": [float(s % 97) for s in steps],
            "timestamp": [T0 + s for s in steps],
            "step": steps,
        }
    )
    client.log_batch(run_id, data)
    client.flush()
    fs = pafs.LocalFileSystem()
    for info in fs.get_file_info(pafs.FileSelector(f"{lake_dir}/metrics", recursive=True)):
        if info.path.endswith(".parquet"):
            assert points_mod.SERIES_METADATA not in (pq.read_schema(info.path).metadata or {})
    lake = Lake(lake_dir)
    history = lake.metric_history(run_id, "loss")
    assert history["step"].tolist() == list(range(n))
    latest = lake.sql("SELECT * FROM latest_metrics WHERE run_id = ?", [run_id]).iloc[0]
    assert (latest["step"], latest["value"]) == (n - 1, float((n - 1) % 97))
    assert (latest["min_value"], latest["max_value"]) == (0.0, 96.0)


_numbers = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([2**63, -(2**63) - 1, 2**53 + 1, True, False, 1.0, 1.5, -3.0, math.nan, 2.0**60]),
)


def _outcome(items: list) -> object:
    """The table ``metric_points_table`` makes of ``items`` (with the time it fills in for a
    missing timestamp fixed), or the error it raises."""
    try:
        table = points_mod.metric_points_table("r" * 32, items)
    except Exception as exc:  # the outcome compared, whatever it is
        return (type(exc).__name__, str(exc))
    return None if table is None else (_rows(table), table.schema.metadata)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["a", "b", "c/d"]), values, _numbers, _numbers),
            st.sampled_from([("a", 1.0, 5), ("a", 1.0, 5, 6, 7), "abcd", ("a", "x", 1, 2), (None, 1.0, 1, 2)]),
        ),
        max_size=40,
    )
)
def test_small_batches_of_whole_numbers_convert_as_the_checked_way_does(items):
    # A batch of up to _SMALL_BATCH tuples whose steps and timestamps are Python ints skips the
    # whole-number check; every batch must come out as the checked way makes it, or fail alike.
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(points_mod.layout, "now_ms", lambda: T0)
        fast = _outcome(items)
        patched.setattr(points_mod, "_SMALL_BATCH", -1)
        assert _outcome(items) == fast
