"""``Lake.metric_series``: DuckDB's buckets equal a small pure-Python reference on random series."""

from __future__ import annotations

import math
import tempfile
from collections import defaultdict

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runlake.core.errors import InvalidArgument
from runlake.ingest import LakeClient
from runlake.lake import Lake

NAN, INF = float("nan"), float("inf")
T0 = 1_700_000_000_000

Point = tuple[int, int, float]  # step, timestamp, value


def _value_key(v: float) -> tuple[int, float]:
    """Order of values as DuckDB and the latest rule have it: NaN after every number."""
    return (1, 0.0) if math.isnan(v) else (0, v)


def _bucket(x: float, lo: float, hi: float, buckets: int, exact: bool) -> int:
    """floor((x - lo) * buckets / (hi - lo)), the last bucket closed at hi: exact for integer
    x between integral edges, in floating point otherwise (relative x, fractional edges)."""
    if hi <= lo:
        return 0
    if exact and lo.is_integer() and hi.is_integer():
        return min((int(x) - int(lo)) * buckets // (int(hi) - int(lo)), buckets - 1)
    return min(math.floor((float(x) - lo) * float(buckets) / (hi - lo)), buckets - 1)


def reference(
    series: dict[str, list[Point]], mode: str, buckets: int, x_min: float | None, x_max: float | None
) -> list[tuple]:
    """What metric_series must return, computed point by point in Python."""
    kept: dict[str, list[tuple]] = {}
    for run_id, points in series.items():
        if not points:
            continue
        t0 = min(t for _s, t, _v in points)
        rows = []
        for s, t, v in points:
            x = s if mode == "step" else t if mode == "timestamp" else float(t - t0) / 1000.0
            if (x_min is None or x >= x_min) and (x_max is None or x <= x_max):
                rows.append((x, t, s, v))
        if rows:
            kept[run_id] = rows
    if not kept:
        return []
    xs = [r[0] for rows in kept.values() for r in rows]
    lo = float(x_min) if x_min is not None else float(min(xs))
    hi = float(x_max) if x_max is not None else float(max(xs))
    out = []
    for run_id, rows in kept.items():
        cut: dict[int, list[tuple]] = defaultdict(list)
        for row in rows:
            b = _bucket(row[0], lo, hi, buckets, exact=mode != "relative")
            cut[b].append(row)
        if len(rows) <= buckets and max(len(v) for v in cut.values()) > 1:
            unique = {(x, t, s, _value_key(v)): (x, v) for x, t, s, v in rows}
            out += [(run_id, x, v, v, v, 1) for x, v in unique.values()]
            continue
        for members in cut.values():
            x, t, s, _v = max(members, key=lambda r: r[:3])
            # Points tied with the last on (x, timestamp, step): the line goes through any one.
            tied = frozenset(_value_key(r[3]) for r in members if r[:3] == (x, t, s))
            numbers = [r[3] for r in members if not math.isnan(r[3])]
            low = min(numbers) if numbers else NAN
            high = max(numbers) if numbers else NAN
            out.append((run_id, x, tied, low, high, len(members)))
    return out


def _canonical(rows: list[tuple]) -> list[tuple]:
    def key(row: tuple) -> tuple:
        return (row[0], row[1], _value_key(row[3]), _value_key(row[4]), row[5])

    return sorted(key(r) for r in rows)


def _matches(got: list[tuple], expected: list[tuple]) -> bool:
    """Same buckets (run, x, extremes, count), each drawn through an allowed value."""
    if _canonical(got) != _canonical(expected):
        return False
    left = list(expected)
    for row in got:
        for i, want in enumerate(left):
            values = want[2] if isinstance(want[2], frozenset) else {_value_key(want[2])}
            same = (row[0], row[1], _value_key(row[3]), _value_key(row[4]), row[5]) == (
                want[0], want[1], _value_key(want[3]), _value_key(want[4]), want[5]
            )  # fmt: skip
            if same and _value_key(row[2]) in values:
                del left[i]
                break
        else:
            return False
    return True


def _frame_rows(frame) -> list[tuple]:
    return [(r.run_id, r.x, r.value, r.min, r.max, int(r.count)) for r in frame.itertuples()]


def _write(root: str, series: list[list[Point]], flushes: int) -> tuple[dict[str, list[Point]], Lake]:
    """Each series as a run's "loss" (split over ``flushes`` files), plus noise the query must skip."""
    client = LakeClient(root)
    experiment = client.create_experiment("e")
    other = client.create_experiment("other")
    by_run: dict[str, list[Point]] = {}
    for i, points in enumerate(series):
        run_id = client.create_run(experiment, run_name=f"r{i}")
        by_run[run_id] = points
        client.log_batch(run_id, metrics=[("acc", 0.5, T0, 0)])
        for part in range(flushes):
            chunk = points[part::flushes]
            if chunk:
                client.log_batch(run_id, metrics=[("loss", v, t, s) for s, t, v in chunk])
            client.flush()
    stranger = client.create_run(other, run_name="elsewhere")
    client.log_batch(stranger, metrics=[("loss", 9.0, T0, 3)])
    client.flush()
    return by_run, Lake(root)


values = st.one_of(st.sampled_from([NAN, INF, -INF, 0.0, 1.0, -1.0]), st.floats(-1e6, 1e6, allow_nan=False))
points = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 90_000).map(lambda t: T0 + t), values), min_size=0, max_size=40
)
bounds = st.one_of(st.none(), st.integers(-5, 95_000))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    series=st.lists(points, min_size=1, max_size=3),
    mode=st.sampled_from(["step", "timestamp", "relative"]),
    buckets=st.integers(1, 12),
    low=bounds,
    high=bounds,
    flushes=st.integers(1, 2),
)
def test_buckets_match_the_reference(series, mode, buckets, low, high, flushes):
    x_min = None if low is None else (low % 70 if mode == "step" else T0 + low if mode == "timestamp" else low / 1000)
    x_max = (
        None if high is None else (high % 70 if mode == "step" else T0 + high if mode == "timestamp" else high / 1000)
    )
    if x_min is not None and x_max is not None and x_min > x_max:
        x_min, x_max = x_max, x_min
    with tempfile.TemporaryDirectory() as root:
        by_run, lake = _write(root, series, flushes)
        frame = lake.metric_series(list(by_run), "loss", x=mode, buckets=buckets, x_min=x_min, x_max=x_max)
        expected = reference(by_run, mode, buckets, x_min, x_max)
        got = _frame_rows(frame)
        assert _canonical(got) == _canonical(expected)
        assert _matches(got, expected)
        assert list(frame.columns) == ["run_id", "x", "value", "min", "max", "count"]
        for run_id, rows in frame.groupby("run_id"):
            assert len(rows) <= max(buckets, sum(1 for _ in by_run[run_id]))


@pytest.fixture
def long_run(lake_dir):
    client = LakeClient(lake_dir)
    experiment = client.create_experiment("long")
    run_id = client.create_run(experiment, run_name="long")
    client.log_batch(run_id, metrics=[("loss", float(s % 100), T0 + 10 * s, s) for s in range(20_000)])
    client.flush()
    return Lake(lake_dir), run_id


def test_a_long_series_keeps_its_extremes_and_every_point_counted(long_run):
    lake, run_id = long_run
    frame = lake.metric_series(run_id, "loss", buckets=100)
    assert len(frame) == 100
    assert frame["count"].sum() == 20_000
    assert (frame["min"] == 0.0).all() and (frame["max"] == 99.0).all()
    # The last point of each bucket draws the line: bucket i ends at step 200 i + 199.
    assert frame["x"].tolist() == [200 * i + 199 for i in range(100)]
    assert frame["value"].tolist() == [99.0] * 100


def test_a_narrow_range_gives_the_raw_points(long_run):
    lake, run_id = long_run
    frame = lake.metric_series([run_id], "loss", x_min=1_000, x_max=1_499, buckets=1000)
    assert frame["x"].tolist() == list(range(1_000, 1_500))
    assert (frame["count"] == 1).all()
    assert frame["value"].tolist() == [float(s % 100) for s in range(1_000, 1_500)]


def test_relative_and_timestamp_modes(long_run):
    lake, run_id = long_run
    rel = lake.metric_series([run_id], "loss", x="relative", x_min=10.0, x_max=10.05)
    assert rel["x"].tolist() == pytest.approx([10.0, 10.01, 10.02, 10.03, 10.04, 10.05])
    ts = lake.metric_series([run_id], "loss", x="timestamp", buckets=10)
    assert ts["x"].iloc[-1] == T0 + 10 * 19_999 and ts["count"].sum() == 20_000


def test_a_step_logged_twice_in_one_millisecond_draws_one_of_its_values(lake_dir):
    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("ties"))
    points = [("loss", float(s), T0 + s, s) for s in range(10)]
    points += [("loss", 100.0, T0 + 9, 9), ("loss", -5.0, T0 + 4, 4)]  # ties with steps 9 and 4
    client.log_batch(run_id, metrics=points)
    client.flush()
    frame = Lake(lake_dir).metric_series([run_id], "loss", buckets=2)
    assert frame["x"].tolist() == [4, 9] and frame["count"].tolist() == [6, 6]
    assert frame["value"].iloc[0] in (4.0, -5.0) and frame["value"].iloc[1] in (9.0, 100.0)
    assert frame["min"].tolist() == [-5.0, 5.0] and frame["max"].tolist() == [4.0, 100.0]


@pytest.mark.parametrize("mode", ["step", "timestamp", "relative"])
def test_steps_and_times_too_wide_to_pack_still_bucket_exactly(lake_dir, mode):
    """Steps near 2^50 and timestamps spread over years do not fit one packed order key."""
    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("wide"))
    series = [(2**50 + s * 2**40, T0 + s * 2**35, float(s % 7)) for s in range(300)]
    series += [(2**50, T0 + 1, 42.0)]  # a later point at the first step
    client.log_batch(run_id, metrics=[("loss", v, t, s) for s, t, v in series])
    client.flush()
    frame = Lake(lake_dir).metric_series([run_id], "loss", x=mode, buckets=7)
    expected = reference({run_id: series}, mode, 7, None, None)
    got = _frame_rows(frame)
    assert _canonical(got) == _canonical(expected) and _matches(got, expected)
    assert frame["count"].sum() == 301


def test_points_logged_after_a_read_are_seen_by_the_next(lake_dir):
    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("live"))
    client.log_batch(run_id, metrics=[("loss", 1.0, T0, 0)])
    lake = Lake(lake_dir)
    assert lake.metric_series([run_id], "loss")["x"].tolist() == [0]
    client.log_batch(run_id, metrics=[("loss", 2.0, T0 + 1, 1)])  # buffered, not flushed
    assert lake.metric_series([run_id], "loss")["x"].tolist() == [0, 1]
    client.flush()


def test_unknown_runs_and_keys_give_no_rows(long_run):
    lake, run_id = long_run
    assert lake.metric_series(["nope"], "loss").empty
    assert lake.metric_series([run_id], "missing").empty
    assert lake.metric_series([], "loss").empty


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"x": "wall"}, "x must be one of step, timestamp, relative"),
        ({"buckets": 0}, "buckets must be an integer"),
        ({"buckets": 2.5}, "buckets must be an integer"),
        ({"buckets": True}, "buckets must be an integer"),
        ({"x_min": 5, "x_max": 1}, "x_min (5) is greater than x_max (1)"),
        ({"x_min": float("nan")}, "x_min must be a finite number"),
        ({"x_max": "10"}, "x_max must be a finite number"),
    ],
    ids=lambda v: str(v),
)
def test_bad_arguments_are_invalid(long_run, kwargs, message):
    lake, run_id = long_run
    with pytest.raises(InvalidArgument) as info:
        lake.metric_series([run_id], "loss", **kwargs)
    assert message in info.value.to_dict()["message"]


def test_metric_history_sorts_files_written_out_of_order_and_counts_a_point_once(lake_dir):
    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("h"))
    client.log_batch(run_id, metrics=[("loss", 3.0, T0 + 3, 3), ("loss", NAN, T0 + 2, 2)])
    client.flush()
    client.log_batch(run_id, metrics=[("loss", 1.0, T0 + 1, 1), ("loss", 3.0, T0 + 3, 3), ("loss", 2.0, T0 + 2, 2)])
    client.flush()
    history = Lake(lake_dir).metric_history(run_id, "loss")
    assert history["step"].tolist() == [1, 2, 2, 3]
    assert history["value"].tolist()[:2] == [1.0, 2.0] and math.isnan(history["value"].iloc[2])
    assert history["value"].iloc[3] == 3.0


def _scanned_bounds(lake: Lake, query) -> tuple | None:
    from runlake.lake import series

    dataset = lake.connection.metrics_dataset()
    source = series.q("read_parquet(?::VARCHAR[])", list(dataset.files))
    edges = lake.connection.file_cursor().execute(*series._as_args(series.bounds_sql(query, source))).df()
    if edges.empty or edges["plo"].isna().iloc[0]:
        return None
    row = edges.iloc[0]
    return (float(row["lo"]), float(row["hi"]), *(int(row[c]) for c in ("plo", "phi", "qlo", "qhi")))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    series=st.lists(
        st.lists(st.tuples(st.integers(0, 500), st.integers(0, 10**9), values), min_size=1), min_size=1, max_size=3
    ),
    mode=st.sampled_from(["step", "timestamp", "relative"]),
    zoom=st.one_of(st.none(), st.tuples(st.integers(0, 300), st.integers(0, 300))),
)
def test_bounds_from_file_statistics_equal_a_scan_of_the_points(series, mode, zoom):
    """Runs logged one flush each (as a live run's own files are): the row groups' statistics
    give the same range edges as a pass over the points, and order extremes that hold them."""
    from runlake.lake import series as series_module

    with tempfile.TemporaryDirectory() as root:
        client = LakeClient(root)
        experiment = client.create_experiment("e")
        run_ids = []
        for points in series:
            run_id = client.create_run(experiment)
            client.flush()
            client.log_batch(run_id, metrics=[("loss", v, T0 + t, s) for s, t, v in points])
            client.flush()
            run_ids.append(run_id)
        lake = Lake(root)
        x_min, x_max = (None, None) if zoom is None else sorted(zoom)
        if zoom is not None and mode == "timestamp":
            x_min, x_max = T0 + x_min * 10**6, T0 + x_max * 10**6
        query = series_module.check(run_ids, "loss", mode, 10, x_min, x_max)
        dataset = lake.connection.metrics_dataset()
        known = series_module.statistics_bounds(query, dataset, set(dataset.files))
        scanned = _scanned_bounds(lake, query)
        assert known is not None  # every row group holds one run's points of one key
        if zoom is None:
            assert scanned is not None
            assert (known.lo, known.hi, known.plo, known.phi, known.qlo, known.qhi) == scanned
        else:
            assert (known.lo, known.hi) == (float(x_min), float(x_max))
            if scanned is not None:  # points in the zoom: the packing range holds them
                assert known.plo <= scanned[2] and scanned[3] <= known.phi
                assert known.qlo <= scanned[4] and scanned[5] <= known.qhi


def test_a_run_logged_in_its_own_flushes_needs_no_pass_for_its_bounds(lake_dir):
    from runlake.lake import series as series_module

    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("own"))
    client.flush()
    for part in range(3):
        client.log_batch(run_id, metrics=[("loss", float(s), T0 + s, s) for s in range(part * 100, part * 100 + 100)])
        client.flush()
    lake = Lake(lake_dir)
    dataset = lake.connection.metrics_dataset()
    query = series_module.check([run_id], "loss", "step", 10, None, None)
    known = series_module.statistics_bounds(query, dataset, set(dataset.files))
    assert known == series_module.Bounds(0.0, 299.0, 0, 299, T0, T0 + 299)
    frame = lake.metric_series(run_id, "loss", buckets=10)
    assert frame["x"].tolist() == [29 + 30 * i for i in range(10)] and frame["count"].sum() == 300


def test_integer_steps_are_bucketed_exactly_where_floating_point_rounds_up(lake_dir):
    # x * 1000 / hi is just below 998 + 1 for the step x, but rounds to 999.0 in floating point:
    # the bucket is computed in integers, so x stays in bucket 998 and hi alone is in 999.
    hi = 2**50 + 375
    x = (999 * hi - 1) // 1000
    assert math.floor(float(x) * 1000.0 / float(hi)) == 999  # what floating point would say
    steps = [*range(1000), x, hi]
    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("exact"))
    client.log_batch(run_id, metrics=[("loss", float(i), T0 + i, s) for i, s in enumerate(steps)])
    client.flush()
    frame = Lake(lake_dir).metric_series([run_id], "loss", buckets=1000)
    assert frame["x"].tolist() == [999, x, hi] and frame["count"].tolist() == [1000, 1, 1]
    expected = reference({run_id: [(s, T0 + i, float(i)) for i, s in enumerate(steps)]}, "step", 1000, None, None)
    assert _canonical(_frame_rows(frame)) == _canonical(expected)


@pytest.mark.parametrize("mode", ["step", "timestamp"])
def test_points_past_two_to_the_53_stay_within_the_buckets(lake_dir, mode):
    # Past 2^53 a double edge is rounded: the last x, 2^58 + 321, is the edge 2^58 + 320 as a
    # double, and compares equal to it, so it is in the range and must land in a bucket of it
    # (never bucket number n).
    offsets = (0, 64, 128, 192, 256, 321)
    big = 2**58
    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("huge"))
    if mode == "step":
        points = [(big + d, T0 + i, float(i)) for i, d in enumerate(offsets)]
    else:
        points = [(i, big + d, float(i)) for i, d in enumerate(offsets)]
    client.log_batch(run_id, metrics=[("loss", v, t, s) for s, t, v in points])
    client.flush()
    for buckets in (1, 2, 4):
        frame = Lake(lake_dir).metric_series([run_id], "loss", x=mode, buckets=buckets)
        assert len(frame) <= buckets and frame["count"].sum() == len(points)


def test_a_metric_file_rewritten_in_place_is_bucketed_from_its_new_statistics(lake_dir):
    # Row-group statistics are read once per file version (path and size): a file replaced
    # under the same name (restored from a backup, repaired by hand) is read again.
    import glob

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("rewritten"))
    client.log_batch(run_id, metrics=[("loss", float(s), T0 + s, s) for s in range(3000)])
    client.flush()
    lake = Lake(lake_dir)
    assert lake.metric_series([run_id], "loss", buckets=10)["x"].max() == 2999
    (path,) = [p for p in glob.glob(f"{lake_dir}/metrics/*/*.parquet") if run_id in str(pq.read_table(p)["run_id"])]
    table = pq.read_table(path)
    longer = pa.concat_tables([table, table.set_column(2, "step", pc.add(table["step"], 3000))])
    pq.write_table(longer.combine_chunks(), path, row_group_size=2000)
    frame = lake.metric_series([run_id], "loss", buckets=10)
    assert frame["x"].max() == 5999 and frame["count"].sum() == 6000 and len(frame) <= 10


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    series=st.lists(
        st.lists(st.tuples(st.integers(0, 500), st.integers(0, 10**9), values), min_size=1, max_size=40),
        min_size=1,
        max_size=3,
    ),
    mode=st.sampled_from(["step", "timestamp", "relative"]),
    group_rows=st.integers(1, 30),
    buckets=st.integers(1, 12),
)
def test_row_groups_shared_by_runs_and_keys_give_the_same_buckets(series, mode, group_rows, buckets):
    """Runs and keys logged in one flush, the file then cut into small row groups, so groups
    hold the end of one series and the start of the next (as where two runs meet in a merged
    file): the edges from the statistics, settled by a read of the points beyond them, are
    those of a pass over the points, and the buckets are the reference's."""
    import pyarrow.parquet as pq

    from runlake.lake import series as series_module

    with tempfile.TemporaryDirectory() as root:
        client = LakeClient(root)
        experiment = client.create_experiment("e")
        by_run: dict[str, list] = {}
        for points in series:
            run_id = client.create_run(experiment)
            by_run[run_id] = points
            client.log_batch(run_id, metrics=[("loss", v, T0 + t, s) for s, t, v in points])
            client.log_batch(run_id, metrics=[("acc", 0.5, T0, s) for s, _t, _v in points[:5]])
        client.flush()
        lake = Lake(root)
        for path in lake.connection.metrics_dataset().files:
            pq.write_table(pq.read_table(path), path, row_group_size=group_rows)
        lake = Lake(root)
        query = series_module.check(list(by_run), "loss", mode, buckets, None, None)
        dataset = lake.connection.metrics_dataset()
        known = series_module.statistics_bounds(query, dataset, set(dataset.files))
        scanned = _scanned_bounds(lake, query)
        assert scanned is not None
        if known is not None:
            if known.unsure is not None:
                source = series_module.q("read_parquet(?::VARCHAR[])", list(dataset.files))
                cursor = lake.connection.file_cursor()
                known = series_module._settled(
                    query, known, lambda sql: cursor.execute(*series_module._as_args(sql(source))).df()
                )
            assert (known.lo, known.hi) == scanned[:2]
            assert known.plo <= scanned[2] and scanned[3] <= known.phi
            assert known.qlo <= scanned[4] and scanned[5] <= known.qhi
        frame = lake.metric_series(list(by_run), "loss", x=mode, buckets=buckets)
        expected = reference(
            {run_id: [(s, T0 + t, v) for s, t, v in points] for run_id, points in by_run.items()},
            mode,
            buckets,
            None,
            None,
        )
        assert _matches(_frame_rows(frame), expected)


def test_a_series_is_read_from_the_files_that_may_hold_it(lake_dir):
    from runlake.lake import series as series_module

    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("files"))
    for key in ("loss", "lr", "acc"):
        client.log_batch(run_id, metrics=[(key, float(s), T0 + s, s) for s in range(100)])
        client.flush()
    lake = Lake(lake_dir)
    dataset = lake.connection.metrics_dataset()
    query = series_module.check([run_id], "lr", "step", 10, None, None)
    (path,) = series_module.candidate_files(query.run_ids, query.key, dataset, set(dataset.files))
    assert len(dataset.files) == 3 and {"lr"} == set(pq_keys(path))
    assert lake.metric_series(run_id, "lr", buckets=10)["count"].sum() == 100


def pq_keys(path: str) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["key"])["key"].unique().to_pylist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=350), min_size=1, max_size=30))
def test_row_groups_follow_series_and_stay_few(sizes):
    import itertools

    import pyarrow as pa

    from runlake.core import writer

    group = 100
    # Series alternate between run and key changes; a chunked column cuts nothing wrongly.
    runs = [f"r{i // 2:03d}" for i, n in enumerate(sizes) for _ in range(n)]
    keys = ["k" + str(i % 2) for i, n in enumerate(sizes) for _ in range(n)]
    half = len(runs) // 2
    data = pa.table({"run_id": pa.chunked_array([runs[:half], runs[half:]], type=pa.string()), "key": keys})
    groups = writer.series_groups(data, size=group)
    assert [o for o, _ in groups] == [0, *itertools.accumulate(n for _, n in groups)][:-1]
    assert sum(n for _, n in groups) == len(runs) and all(0 < n <= group for _, n in groups)
    long = [n for n in sizes if n >= group // 4]
    assert len(groups) <= 3 * len(runs) / group + 2 * len(long) + 1
    bounds = [(o, o + n) for o, n in groups]
    start = 0
    for n in sizes:
        holding = [(a, b) for a, b in bounds if a < start + n and b > start]
        if len(runs) <= group:  # a file within one group is one group, whatever it holds
            assert groups == [(0, len(runs))]
        elif n >= group // 4:  # a long series has groups of its own: full ones, then the rest
            assert [b - a for a, b in holding] == [group] * (n // group) + ([n % group] if n % group else [])
            assert holding[0][0] == start and holding[-1][1] == start + n
        else:
            assert len(holding) == 1  # a short one lies whole in one group
        start += n


def test_merged_runs_get_row_groups_of_their_own_and_bounds_from_statistics(lake_dir, monkeypatch):
    import pyarrow.parquet as pq

    from runlake.core import writer
    from runlake.lake import series as series_module

    monkeypatch.setattr(writer, "ROW_GROUP_SIZE", 1000)
    client = LakeClient(lake_dir)
    experiment = client.create_experiment("merged")
    long_runs = [client.create_run(experiment) for _ in range(4)]
    short_runs = [client.create_run(experiment) for _ in range(20)]
    for i, run_id in enumerate(long_runs):
        # Runs of different lengths: the longest sets the range's edges.
        client.log_batch(run_id, metrics=[("loss", float(s), T0 + s, s) for s in range(700 + 100 * i)])
    for run_id in short_runs:
        client.log_batch(run_id, metrics=[("loss", 1.0, T0, 0), ("acc", 1.0, T0, 0)])
    client.flush()  # one metrics file holding every run
    lake = Lake(lake_dir)
    dataset = lake.connection.metrics_dataset()
    (path,) = dataset.files
    metadata = pq.ParquetFile(path).metadata
    owners = []
    for g in range(metadata.num_row_groups):
        stats = metadata.row_group(g).column(0).statistics
        owners.append(stats.min if stats.min == stats.max else None)
    assert set(long_runs) <= set(owners)  # each long run alone in a row group, short ones share
    # One group per long run (each under 1,000 points), and the short runs' shared groups in the
    # at most five stretches between them (run ids are random, so the stretches vary).
    assert metadata.num_row_groups <= 2 * len(long_runs) + 1
    query = series_module.check(long_runs, "loss", "step", 10, None, None)
    known = series_module.statistics_bounds(query, dataset, set(dataset.files))
    assert known is not None and known.unsure is None and (known.lo, known.hi) == (0.0, 999.0)
    frame = lake.metric_series(long_runs, "loss", buckets=10)
    assert frame.groupby("run_id")["count"].sum().to_dict() == {r: 700 + 100 * i for i, r in enumerate(long_runs)}


def test_a_tier_merge_of_interleaved_flushes_gives_each_long_series_row_groups_of_its_own(lake_dir, monkeypatch):
    """Writers' flushes arrive interleaved (run a, run b, run a, ...); the merged file still
    keeps each long series in row groups naming only it, so one run's history prunes the rest."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from runlake.core import merge, writer

    monkeypatch.setattr(writer, "ROW_GROUP_SIZE", 400)
    experiment = "0" * 32
    runs = ["c" * 32, "a" * 32, "b" * 32]
    paths = []
    for flush in range(10):
        for run_id in runs:
            rows = [(run_id, key, s) for key in ("loss", "acc") for s in range(flush * 50, flush * 50 + 50)]
            data = pa.table(
                {
                    "run_id": [r for r, _k, _s in rows],
                    "key": [k for _r, k, _s in rows],
                    "step": [s for _r, _k, s in rows],
                    "timestamp": [T0 + s for _r, _k, s in rows],
                    "value": [float(s) for _r, _k, s in rows],
                }
            )
            paths.append(writer.write_part(pafs.LocalFileSystem(), lake_dir, "metrics", data, experiment))
    output, _size = merge.merge_files(pafs.LocalFileSystem(), lake_dir, "metrics", experiment, paths)
    assert output is not None
    metadata = pq.ParquetFile(output).metadata
    assert metadata.num_rows == 3 * 2 * 500
    series = []
    for g in range(metadata.num_row_groups):
        run_stats, key_stats = (metadata.row_group(g).column(c).statistics for c in (0, 1))
        assert (run_stats.min, key_stats.min) == (run_stats.max, key_stats.max), g  # one series per group
        series.append((run_stats.min, key_stats.min))
    assert series == sorted(series) and len(set(series)) == 6
    merged = pq.read_table(output)
    for run_id in runs:  # each series whole, in step order (its flushes came in time order)
        for key in ("loss", "acc"):
            mask = pc.and_(pc.equal(merged.column("run_id"), run_id), pc.equal(merged.column("key"), key))
            assert merged.filter(mask).column("step").to_pylist() == list(range(500))


def test_a_run_only_change_at_a_chunk_boundary_still_cuts_row_groups():
    import pyarrow as pa

    from runlake.core import writer

    data = pa.table({"run_id": pa.chunked_array([["a"] * 150, ["b"] * 150]), "key": ["loss"] * 300})
    assert writer.series_groups(data, size=100) == [(0, 100), (100, 50), (150, 100), (250, 50)]


@pytest.mark.parametrize(("shared_steps", "sure"), [((10, 20), True), ((10, 2000), False)])
def test_a_shared_row_group_within_the_edges_leaves_them_sure(lake_dir, monkeypatch, shared_steps, sure):
    """A merged file concatenates its inputs: a row group of short runs may span a long run's
    id (x < long < z) and so may hold its points, as far as statistics tell. Steps within the
    long run's range cannot move its edges; beyond them they may."""
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from runlake.core import layout, writer
    from runlake.lake import series as series_module

    monkeypatch.setattr(writer, "ROW_GROUP_SIZE", 1000)
    client = LakeClient(lake_dir)
    experiment = client.create_experiment("shared")
    client.flush()
    long_run, x, z = "m" * 32, "a" * 32, "z" * 32
    rows = [(long_run, s) for s in range(1000)] + [(x, s) for s in shared_steps] + [(z, s) for s in shared_steps]
    data = pa.table(
        {
            "run_id": [r for r, _ in rows],
            "key": ["loss"] * len(rows),
            "step": [s for _, s in rows],
            "timestamp": [T0 + s for _, s in rows],
            "value": [1.0] * len(rows),
        }
    )
    fs = pafs.LocalFileSystem()
    path = writer.write_part(
        fs, lake_dir, layout.METRICS, writer.to_table(layout.METRICS, data), experiment, sort=False
    )
    groups = pq.ParquetFile(path).metadata
    shared = groups.row_group(groups.num_row_groups - 1).column(0).statistics
    assert groups.num_row_groups == 2 and (shared.min, shared.max) == (x, z)  # spans the long run's id
    dataset = Lake(lake_dir).connection.metrics_dataset()
    query = series_module.check([long_run], "loss", "step", 10, None, None)
    known = series_module.statistics_bounds(query, dataset, set(dataset.files))
    assert known is not None and (known.lo, known.hi) == (0.0, 999.0)
    assert (known.unsure is None) == sure


def _chunked_points(chunks: int = 3, rows: int = 40) -> pa.Table:
    import pyarrow as pa

    # Each chunk its own file's rows: other runs in another order, so each chunk's dictionary
    # of run ids differs from the others'.
    return pa.concat_tables(
        [
            pa.table(
                {
                    "run_id": [f"run-{(i * (c + 3)) % 11 + 4 * c:02d}" * 3 for i in range(rows)],
                    "key": ["loss" if i % 3 else "acc" for i in range(rows)],
                    "step": list(range(c * rows, (c + 1) * rows)),
                }
            )
            for c in range(chunks)
        ]
    )


def test_series_are_grouped_alike_whether_the_rows_come_in_one_chunk_or_several():
    # A merge's rows come as one chunk per input file, some runs only in later chunks: the
    # ranks of run and key must be the same across chunks (one dictionary for all of them).
    from runlake.core import points

    table = _chunked_points()
    assert table.column("run_id").num_chunks == 3
    grouped = points.group_series(table).to_pylist()
    assert grouped == points.group_series(table.combine_chunks()).to_pylist()
    assert [(r["run_id"], r["key"]) for r in grouped] == sorted((r["run_id"], r["key"]) for r in grouped)


def test_rows_taken_past_the_text_limit_are_the_same_rows_in_chunks_under_it(monkeypatch):
    # Over 2 GB of text, Arrow cannot take a string column's rows into one array (a merge of
    # tens of millions of points: `runlake demo --runs 1000000` failed so). The limit is made
    # small here; the rows must be those of a plain take, the text cut into chunks under it.
    import pyarrow.compute as pc

    from runlake.core import points

    monkeypatch.setattr(points, "TEXT_LIMIT", 100)
    table = _chunked_points()
    indices = pa.array(list(reversed(range(table.num_rows))), pa.int64())
    taken = points.take_rows(table, indices)
    assert taken.to_pylist() == table.take(indices).to_pylist()
    assert taken.schema == table.schema
    chunks = taken.column("run_id").chunks
    assert len(chunks) > 1
    assert all(pc.sum(pc.binary_length(chunk)).as_py() <= 100 + 18 for chunk in chunks)
    assert points.group_series(table).to_pylist() == points.group_series(table.combine_chunks()).to_pylist()


def test_a_merge_past_the_grouping_limit_keeps_its_inputs_order(monkeypatch):
    # Grouping a merge copies it whole in memory: past the limit (a partition's top tier at a
    # million runs) the merged file keeps the inputs' order, as compaction sorts it later.
    from runlake.core import layout, merge

    table = _chunked_points()
    grouped = merge.combine(layout.METRICS, table)
    assert grouped.to_pylist() != table.to_pylist()  # grouped below the limit
    monkeypatch.setattr(merge, "GROUP_SERIES_LIMIT", table.num_rows - 1)
    assert merge.combine(layout.METRICS, table).to_pylist() == table.to_pylist()
