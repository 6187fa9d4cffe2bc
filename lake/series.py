"""Metric series cut into x buckets for charts: last value, extremes and count per bucket.

``metric_series`` answers "what does this metric look like over this x range at this width"
without sending every point anywhere: DuckDB reads the runs' Parquet files (pruned to their
experiment partitions, then to row groups by run, key and range), cuts the range into at most
``buckets`` equal-width buckets and returns one row per non-empty bucket. A run with few
enough points in the range gets its raw points instead, so zooming in ends at the real data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from numbers import Real
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from runlake.core import layout, writer
from runlake.core.errors import InvalidArgument
from runlake.lake.connection import Connection, vanished, with_relisting
from runlake.lake.snapshot import GroupStatistics, group_statistics
from runlake.lake.sql import Fragment, indexed_ids, join, q

X_MODES = ("step", "timestamp", "relative")
SERIES_COLUMNS = ["run_id", "x", "value", "min", "max", "count"]
MAX_BUCKETS = 100_000

# The registered name of the points when the lake is not on the local disk (DuckDB then reads
# an Arrow table pyarrow scanned through the lake's filesystem).
_POINTS = "_series_points"


@dataclass(frozen=True)
class SeriesQuery:
    """Validated arguments of ``metric_series``."""

    run_ids: tuple[str, ...]
    key: str
    x: str
    buckets: int
    x_min: float | None
    x_max: float | None


def check(run_ids: Sequence[str] | str, key: str, x: str, buckets: int, x_min: object, x_max: object) -> SeriesQuery:
    """The arguments as a ``SeriesQuery``.

    Raises:
        InvalidArgument: an unknown x mode, ``buckets`` not an integer in 1..100,000, a range
            bound that is not a finite number, or ``x_min > x_max``.
    """
    ids = (run_ids,) if isinstance(run_ids, str) else tuple(run_ids)
    if not all(isinstance(r, str) for r in ids):
        raise InvalidArgument("run_ids must be run id strings", run_ids=repr(run_ids)[:200])
    if not isinstance(key, str) or not key:
        raise InvalidArgument("key must be a metric name", key=repr(key))
    if x not in X_MODES:
        raise InvalidArgument(f"x must be one of {', '.join(X_MODES)}, not {x!r}", x=repr(x))
    if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= MAX_BUCKETS:
        raise InvalidArgument(f"buckets must be an integer from 1 to {MAX_BUCKETS:,}", buckets=repr(buckets))
    low, high = _bound("x_min", x_min), _bound("x_max", x_max)
    if low is not None and high is not None and low > high:
        raise InvalidArgument(f"x_min ({low:g}) is greater than x_max ({high:g})", x_min=low, x_max=high)
    return SeriesQuery(tuple(dict.fromkeys(ids)), key, x, buckets, low, high)


def _bound(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise InvalidArgument(f"{name} must be a finite number or None", **{name: repr(value)})
    return float(value)


def metric_series(db: Connection, query: SeriesQuery) -> pd.DataFrame:
    """The bucketed series of ``query`` (see ``Lake.metric_series``), sorted by run_id then x."""
    if not query.run_ids:
        return _empty(query.x)
    experiments = [
        r[0]
        for r in db.rows(join(["SELECT DISTINCT experiment_id FROM runs WHERE", indexed_ids("run_id", query.run_ids)]))
    ]
    if not experiments:
        return _empty(query.x)

    def read() -> pd.DataFrame:
        dataset = db.metrics_dataset()
        wanted = set(experiments)
        paths = [path for path in dataset.files if writer.partition_of(path) in wanted]
        if not paths:
            return _empty(query.x)
        if isinstance(db.fs, pafs.LocalFileSystem):
            # DuckDB's own Parquet reader: it prunes row groups by the run, key and step
            # statistics and decodes in parallel, several times faster than a pyarrow scan.
            def statistics(fragment: ds.Fragment) -> list[GroupStatistics] | None:
                return db.row_group_statistics(fragment.path) or group_statistics(fragment)

            paths = candidate_files(query.run_ids, query.key, dataset, set(paths), statistics)
            if not paths:
                return _empty(query.x)
            source = q("read_parquet(?::VARCHAR[])", paths)
            known = statistics_bounds(query, dataset, set(paths), statistics)
            try:
                return _bucketed(query, lambda sql: db.file_cursor().execute(*_as_args(sql(source))).df(), known)
            except duckdb.Error as exc:
                if vanished(exc):
                    raise  # with_relisting lists again
                # Damaged bytes in one of the files: the pyarrow scan below finds which, warns
                # of it once and leaves it out (later calls no longer list it).
        condition = (
            ds.field(layout.PARTITION_COLUMN).isin(experiments)
            & ds.field("run_id").isin(list(query.run_ids))
            & (ds.field("key") == query.key)
        )
        points = db.scan_metrics(["run_id", "key", "step", "timestamp", "value"], condition)
        return _bucketed(query, lambda sql: db.over(_POINTS, points, sql(q(_POINTS))))

    frame = with_relisting(read)
    return _typed(frame, query.x)


def _bucketed(
    query: SeriesQuery, run: Callable[[Callable[[Fragment], Fragment]], pd.DataFrame], known: Bounds | None = None
) -> pd.DataFrame:
    """The range's edges (unless ``known`` from the files' statistics), the buckets, then -
    only for runs with at most ``buckets`` points of which some share a bucket - their raw
    points, read in a last query pruned to those runs.

    Separate queries rather than one: the edges decide how the buckets' last points are found
    (``series_sql``), and in the common case (every run long, or every run already one point
    per bucket) no pass for raw points happens at all.
    """
    if known is not None:
        bounds = known if known.unsure is None else _settled(query, known, run)
    else:
        edges = run(lambda source: bounds_sql(query, source))
        if edges.empty or pd.isna(edges["plo"].iloc[0]):
            return _empty(query.x)
        row = edges.iloc[0]
        plo, phi, qlo, qhi = (int(row[c]) for c in _ORDER_EDGES)
        bounds = Bounds(float(row["lo"]), float(row["hi"]), plo, phi, qlo, qhi)
    buckets = run(lambda source: series_sql(query, source, bounds))
    if buckets.empty:
        return buckets
    per_run = buckets.groupby("run_id")["count"].agg(["sum", "max"])
    raw_runs = [str(r) for r in per_run.index[(per_run["sum"] <= query.buckets) & (per_run["max"] > 1)]]
    if not raw_runs:
        return buckets
    raw = run(lambda source: raw_sql(replace(query, run_ids=tuple(raw_runs)), source))
    kept = buckets[~buckets["run_id"].isin(raw_runs)]
    return pd.concat([kept, raw], ignore_index=True).sort_values(["run_id", "x", "t", "s", "value"], kind="stable")


def _as_args(fragment: Fragment) -> tuple[str, list[object]]:
    return fragment.sql, list(fragment.params)


_ORDER_EDGES = ("plo", "phi", "qlo", "qhi")
# Bits of a signed BIGINT a packed (primary, secondary) order key may use.
_KEY_BITS = 62


@dataclass(frozen=True)
class Bounds:
    """The range's edges (``lo``, ``hi`` in x) and the extremes of the two integer columns that
    order points within a run: the primary (``p``: step, or timestamp for the time modes) and
    the secondary (``q``: timestamp, or step)."""

    lo: float
    hi: float
    plo: int
    phi: int
    qlo: int
    qhi: int
    # From statistics, when row groups shared with other runs or keys may hold points of the
    # series: ``lo``/``hi`` are then the extremes of the row groups holding the series alone,
    # and the column and integer range named here is where ``edges_beyond_sql`` looks for
    # points of the series outside them (the order extremes already hold every point).
    unsure: tuple[str, int, int] | None = None

    def packing(self) -> int | None:
        """Bits for q in one BIGINT key ``(p - plo) << bits | (q - qlo)``, or None when p and q
        together need more than ``_KEY_BITS`` (then the last point is found by a struct max)."""
        q_bits = max(self.qhi - self.qlo, 0).bit_length()
        p_bits = max(self.phi - self.plo, 0).bit_length()
        return q_bits if p_bits + q_bits <= _KEY_BITS else None


def _may_hold(metric: str, wanted: Collection[str], run: Any, key: Any) -> bool:
    """Whether a row group with these run_id and key statistics may hold points of ``metric``
    of the ``wanted`` runs."""
    if not run or not key:
        return True
    return key["min"] <= metric <= key["max"] and any(run["min"] <= r <= run["max"] for r in wanted)


def candidate_files(
    run_ids: Collection[str],
    key: str,
    dataset: ds.Dataset,
    paths: set[str],
    statistics: Callable[[ds.Fragment], list[GroupStatistics] | None] = group_statistics,
) -> list[str]:
    """The files of ``paths`` whose row-group statistics leave room for points of ``key`` of
    these runs (every file whose statistics are unknown), in the dataset's order.

    DuckDB prunes the other files' row groups too, but it deals out work file by file, so a
    thread given a pruned file idles while the other reads the series: a 10 M-point series
    next to two other metrics' files took half again as long.
    """
    wanted = set(run_ids)
    found = []
    for fragment in dataset.get_fragments():
        if fragment.path not in paths:
            continue
        groups = statistics(fragment)
        if groups is None or any(_may_hold(key, wanted, run, k) for run, k, _step, _time in groups):
            found.append(fragment.path)
    return found


def statistics_bounds(
    query: SeriesQuery,
    dataset: ds.Dataset,
    paths: set[str],
    statistics: Callable[[ds.Fragment], list[GroupStatistics] | None] = group_statistics,
) -> Bounds | None:
    """The ``Bounds`` from the files' row-group statistics alone, when they are exact; else None.

    Exact when every row group that may hold the query's points holds one run's points of one
    key (as a run's own flush files do), so its step and timestamp extremes are that series'
    own. This saves a pass over the points before the buckets: a tenth to a third of a long
    series' time. A row group shared with other runs or keys (where two runs meet in a merged
    file) still bounds the order columns; for the range's edges the result is then ``unsure``
    (see ``Bounds``) and ``_settled`` looks only at the points beyond the sure edges, a read
    that row-group statistics prune to the shared groups. Only for the whole series or a zoom
    with both bounds given: a range open at one end needs the points' extremes inside it,
    which statistics cannot give; relative x with a shared group also takes the pass.
    """
    if (query.x_min is None) != (query.x_max is None):
        return None
    wanted = set(query.run_ids)
    steps: dict[str, list[int]] = {}
    times: dict[str, list[int]] = {}
    # Extremes of the shared groups: they bound the order columns, not the range's edges.
    shared_steps: list[int] = []
    shared_times: list[int] = []
    for fragment in dataset.get_fragments():
        if fragment.path not in paths:
            continue
        groups = statistics(fragment)
        if groups is None:
            return None
        for run, key, step, time in groups:
            if not run or not key:
                return None
            if not _may_hold(query.key, wanted, run, key):
                continue
            if not step or not time:
                return None
            if run["min"] != run["max"] or key["min"] != key["max"]:
                shared_steps.extend((step["min"], step["max"]))
                shared_times.extend((time["min"], time["max"]))
                continue
            steps.setdefault(run["min"], []).extend((step["min"], step["max"]))
            times.setdefault(run["min"], []).extend((time["min"], time["max"]))
    if not steps:
        return None  # no points, or all in shared groups: a pass over the points finds out
    all_steps = [v for values in steps.values() for v in values] + shared_steps
    all_times = [v for values in times.values() for v in values] + shared_times
    s_lo, s_hi, t_lo, t_hi = min(all_steps), max(all_steps), min(all_times), max(all_times)
    p_lo, p_hi, q_lo, q_hi = (s_lo, s_hi, t_lo, t_hi) if query.x == "step" else (t_lo, t_hi, s_lo, s_hi)
    unsure = None
    if query.x_min is not None and query.x_max is not None:
        lo, hi = query.x_min, query.x_max
    elif query.x == "relative":
        if shared_steps:
            return None  # a run's first point may be in a shared group
        # Each run starts at 0; the range ends at the longest run's end.
        lo, hi = 0.0, max((max(v) - min(v)) / 1000.0 for v in times.values())
    else:
        sure = steps if query.x == "step" else times
        low, high = min(min(v) for v in sure.values()), max(max(v) for v in sure.values())
        lo, hi = float(low), float(high)
        shared = shared_steps if query.x == "step" else shared_times
        # A shared group reaching past the sure edges may hold the query's points there; one
        # within them cannot move the edges (the usual case: merged runs of equal length).
        if shared and (min(shared) < low or max(shared) > high):
            unsure = ("step" if query.x == "step" else "timestamp", low, high)
    return Bounds(lo, hi, p_lo, p_hi, q_lo, q_hi, unsure)


def _settled(
    query: SeriesQuery, bounds: Bounds, run: Callable[[Callable[[Fragment], Fragment]], pd.DataFrame]
) -> Bounds:
    """``bounds`` with exact range edges: the series' points beyond the sure edges, if any,
    move them (see ``Bounds.unsure``)."""
    assert bounds.unsure is not None
    column, low, high = bounds.unsure
    beyond = run(lambda source: edges_beyond_sql(query, source, column, low, high)).iloc[0]
    lo = low if pd.isna(beyond["lo"]) else min(low, int(beyond["lo"]))
    hi = high if pd.isna(beyond["hi"]) else max(high, int(beyond["hi"]))
    return replace(bounds, lo=float(lo), hi=float(hi), unsure=None)


def edges_beyond_sql(query: SeriesQuery, source: Fragment, column: str, low: int, high: int) -> Fragment:
    """The extremes of ``column`` (step or timestamp) over the query's points outside
    ``low..high``: one column's range test, which DuckDB prunes to row groups reaching past it."""
    assert column in ("step", "timestamp")
    return join(
        [
            _series_rows(query, source, f"min({column}) AS lo, max({column}) AS hi"),
            q(f"AND ({column} < ?::BIGINT OR {column} > ?::BIGINT)", low, high),
        ]
    )


def _series_rows(query: SeriesQuery, source: Fragment, columns: str) -> Fragment:
    """``SELECT columns FROM source`` over the query's runs and key: the one place the series'
    rows are picked out of the metric files."""
    return join(
        [f"SELECT {columns} FROM", source, q("WHERE key = ? AND", query.key), indexed_ids("run_id", query.run_ids)]
    )


def _order_columns(x: str) -> tuple[str, str]:
    """The (primary, secondary) integer columns ordering a run's points for the x mode: within
    a run, x grows with the primary (relative x is the timestamp moved to the run's origin)."""
    return ("s", "t") if x == "step" else ("t", "s")


def bounds_sql(query: SeriesQuery, source: Fragment) -> Fragment:
    """One row: the range's edges - the bounds asked for, else the points' own extremes, over
    all the runs so every run is cut at the same edges and curves align bucket by bucket - and
    the extremes of the order columns (``Bounds``)."""
    primary, secondary = _order_columns(query.x)
    return join(
        [
            q(
                "SELECT coalesce(?::DOUBLE, min(x)::DOUBLE) AS lo, coalesce(?::DOUBLE, max(x)::DOUBLE) AS hi,"
                f" min({primary}) AS plo, max({primary}) AS phi, min({secondary}) AS qlo, max({secondary}) AS qhi",
                query.x_min,
                query.x_max,
            ),
            "FROM (",
            _in_range(query, source),
            ")",
        ]
    )


def series_sql(query: SeriesQuery, source: Fragment, bounds: Bounds) -> Fragment:
    """The bucketing statement over ``source`` (a table expression with the metrics columns).

    The points are read by each part that needs them rather than held in a CTE: a scan of
    pruned Parquet costs less than materialising millions of rows.

    Per bucket, the last point is the greatest (x, timestamp, step): within a run that is the
    greatest (primary, secondary) of ``_order_columns``, packed into one BIGINT so DuckDB's
    ``arg_max`` finds it at the cost of an integer max (a struct max costs several times more).
    Points equal in x, timestamp and step but not in value (the same step logged twice in one
    millisecond) tie on that key, and the line is drawn through one of them: the band's
    ``min``/``max`` still hold them all. (Ordering them by value too would need the struct max,
    which costs several times more on every query for a case that draws the same picture.)
    ``min`` skips NaN by itself (DuckDB orders NaN last), ``max`` is the negated ``min`` of the
    negated values, and a bucket of NaN only gets NaN for both.
    """
    primary, secondary = _order_columns(query.x)
    bits = bounds.packing()
    if bits is None:
        points = _in_range(query, source)
        last = Fragment("max(struct_pack(x := p.x, t := p.t, s := p.s, v := p.v)) AS l", ())
    else:
        # The packed order key, computed once per point for both aggregates that use it.
        key = q(f"((p.{primary} - ?::BIGINT) << ?::BIGINT) | (p.{secondary} - ?::BIGINT)", bounds.plo, bits, bounds.qlo)
        points = join(["SELECT p.run_id, p.x, p.v,", key, "AS k FROM (", _in_range(query, source), ") p"])
        # In the step and timestamp modes x is the key's primary column; only relative x needs
        # an aggregate of its own.
        last = Fragment(
            "arg_max(p.v, p.k) AS lv, max(p.k) AS lk" + (", max(p.x) AS lx" if query.x == "relative" else ""), ()
        )
    # One run (a run page's chart): its id is a constant rather than a grouping column, which
    # halves the aggregation (hashing a string per point costs as much as the rest of it).
    run = q("?::VARCHAR AS run_id,", query.run_ids[0]) if len(query.run_ids) == 1 else Fragment("p.run_id,", ())
    # ``max`` ignoring NaN as ``min`` does: cheaper than a filtered ``max`` (see above).
    aggregated = join(
        [
            "SELECT",
            run,
            bucket_sql(query, bounds),
            "AS bucket,",
            last,
            ", min(p.v) AS lo_v, -min(-p.v) AS hi_v, count(*) AS c FROM (",
            points,
            ") p GROUP BY",
            "bucket" if len(query.run_ids) == 1 else "p.run_id, bucket",
        ]
    )
    if integral(query, bounds):
        # The integer formula puts the points at x = hi alone in bucket ``buckets``; they join
        # the last bucket here, over at most buckets + 1 rows a run rather than a test per point.
        merged_last = "max(l) AS l" if bits is None else "arg_max(lv, lk) AS lv, max(lk) AS lk"
        last_bucket = query.buckets - 1
        aggregated = join(
            [
                f"SELECT run_id, {merged_last}, min(lo_v) AS lo_v, -min(-hi_v) AS hi_v, sum(c)::BIGINT AS c"
                " FROM (SELECT *,",
                q("least(bucket, ?::BIGINT) AS merged FROM (", last_bucket),
                aggregated,
                ")) GROUP BY run_id, merged",
            ]
        )
    if bits is None:
        head = Fragment("SELECT run_id, l.x AS x, l.t AS t, l.s AS s, l.v AS value", ())
    else:
        p_col = q("((lk >> ?::BIGINT) + ?::BIGINT)", bits, bounds.plo)
        q_col = q("((lk & ((1::BIGINT << ?::BIGINT) - 1)) + ?::BIGINT)", bits, bounds.qlo)
        t_col, s_col = (q_col, p_col) if primary == "s" else (p_col, q_col)
        x_col = Fragment("lx", ()) if query.x == "relative" else p_col
        head = join(["SELECT run_id,", x_col, "AS x,", t_col, "AS t,", s_col, "AS s, lv AS value"])
    return join(
        [
            head,
            ", lo_v AS min, coalesce(hi_v, 'NaN'::DOUBLE) AS max, c AS count FROM (",
            aggregated,
            ") ORDER BY run_id, x, t, s, value",
        ]
    )


def integral(query: SeriesQuery, bounds: Bounds) -> bool:
    """Whether ``bucket_sql`` divides in integers: integer x (steps, timestamps) over a range
    with integral edges below 2^53 whose ``(hi - lo) * buckets`` fits in 62 bits."""
    lo, hi = bounds.lo, bounds.hi
    return (
        hi > lo
        and query.x != "relative"
        and _exact(lo)
        and _exact(hi)
        and (int(hi) - int(lo)) * query.buckets < 2**_KEY_BITS
    )


def bucket_sql(query: SeriesQuery, bounds: Bounds) -> Fragment:
    """A point's bucket number: ``floor((x - lo) * buckets / (hi - lo))``, the last bucket
    closed at ``hi``, and 0 for a range of one x.

    When ``integral``, the division is exact, in integers: floating point would put a point
    just below an edge into the next bucket once ``(x - lo) * buckets`` passes 2^53, and integer
    arithmetic is also cheaper per point. Points at x = hi then get bucket ``buckets``, which
    ``series_sql`` merges into the last one after aggregating (a test per point cost a seventh of
    a long series' time). Relative x, fractional or huge edges, or a range so wide that
    ``(hi - lo) * buckets`` could overflow 62 bits use the floating-point formula.
    """
    n = query.buckets
    lo, hi = bounds.lo, bounds.hi
    if hi <= lo:
        return Fragment("0::BIGINT", ())
    if integral(query, bounds):
        low, width = int(lo), int(hi) - int(lo)
        return q("(p.x - ?::BIGINT) * ?::BIGINT // ?::BIGINT", low, n, width)
    return q(
        "least(floor((p.x::DOUBLE - ?::DOUBLE) * ?::DOUBLE / (?::DOUBLE - ?::DOUBLE)), ?::DOUBLE)::BIGINT",
        lo,
        float(n),
        hi,
        lo,
        float(n - 1),
    )


def _exact(edge: float) -> bool:
    """Whether a range edge is an integer that a double holds exactly, as does every integer x
    compared with it (``|x| < 2^53``): then the range's points x all lie within the edges, so the
    integer formula's numerator is never negative and x = hi is the only point reaching n.
    (Past 2^53 a double edge may be rounded and a point just beyond it kept: the floating-point
    formula, whose x is rounded alike, places it.)"""
    return edge.is_integer() and abs(edge) < 2**53


def raw_sql(query: SeriesQuery, source: Fragment) -> Fragment:
    """The raw points of ``query``'s runs in its range, each once (set semantics)."""
    return join(
        [
            "SELECT DISTINCT run_id, x, t, s, v AS value, v AS min, v AS max, 1::BIGINT AS count FROM (",
            _in_range(query, source),
            ") ORDER BY run_id, x, t, s, value",
        ]
    )


def _in_range(query: SeriesQuery, source: Fragment) -> Fragment:
    """The points of the query's runs and key in its range, as (run_id, x, t, s, v)."""
    scan = _series_rows(query, source, "run_id, step, timestamp, value")
    if query.x == "relative":
        # Seconds since the run's first point of this metric (over all its points, so the
        # origin does not move when the range narrows).
        points = join(
            [
                "SELECT p.run_id, (p.timestamp - o.t0)::DOUBLE / 1000.0::DOUBLE AS x, p.timestamp AS t,"
                " p.step AS s, p.value AS v FROM (",
                scan,
                ") p JOIN (SELECT run_id, min(timestamp) AS t0 FROM (",
                scan,
                ") GROUP BY run_id) o USING (run_id)",
            ]
        )
    else:
        column = "step" if query.x == "step" else "timestamp"
        points = join([f"SELECT run_id, {column} AS x, timestamp AS t, step AS s, value AS v FROM (", scan, ")"])
    # Only the bounds given become conditions: DuckDB does not fold a parameter's ``IS NULL``
    # away, and an always-true test on every point costs a fifth of a long series' time.
    conditions = [
        q(f"x {op} ?::DOUBLE", bound) for op, bound in ((">=", query.x_min), ("<=", query.x_max)) if bound is not None
    ]
    if not conditions:
        return points
    return join(["SELECT * FROM (", points, ") WHERE", join(conditions, " AND ")])


def _typed(frame: pd.DataFrame, x: str) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "run_id": frame["run_id"].astype(object),
            "x": frame["x"].astype("float64" if x == "relative" else "int64"),
            "value": frame["value"].astype("float64"),
            "min": frame["min"].astype("float64"),
            "max": frame["max"].astype("float64"),
            "count": frame["count"].astype("int64"),
        }
    )
    return out.reset_index(drop=True)


def _empty(x: str) -> pd.DataFrame:
    schema = pa.schema(
        [
            ("run_id", pa.string()),
            ("x", pa.float64() if x == "relative" else pa.int64()),
            ("value", pa.float64()),
            ("min", pa.float64()),
            ("max", pa.float64()),
            ("count", pa.int64()),
        ]
    )
    return _typed(schema.empty_table().to_pandas(), x)
