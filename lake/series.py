"""Metric series cut into x buckets for charts: last value, extremes and count per bucket.

``metric_series`` answers "what does this metric look like over this x range at this width"
without sending every point anywhere: DuckDB reads the runs' Parquet files (pruned to their
experiment partitions, then to row groups by run, key and range), cuts the range into at most
``buckets`` equal-width buckets and returns one row per non-empty bucket. A run with few
enough points in the range gets its raw points instead, so zooming in ends at the real data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from numbers import Real

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from runlake.core import layout, writer
from runlake.core.errors import InvalidArgument
from runlake.lake.connection import Connection, vanished, with_relisting
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
            source = q("read_parquet(?::VARCHAR[])", paths)
            try:
                return _bucketed(query, lambda sql: db.file_cursor().execute(*_as_args(sql(source))).df())
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


def _bucketed(query: SeriesQuery, run: Callable[[Callable[[Fragment], Fragment]], pd.DataFrame]) -> pd.DataFrame:
    """The buckets, then - only for runs with at most ``buckets`` points of which some share a
    bucket - their raw points, read in a second query pruned to those runs.

    Two queries rather than one: in the common case (every run long, or every run already one
    point per bucket) no second pass over the points happens at all.
    """
    buckets = run(lambda source: series_sql(query, source))
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


def series_sql(query: SeriesQuery, source: Fragment) -> Fragment:
    """The bucketing statement over ``source`` (a table expression with the metrics columns).

    The points are read by each part that needs them rather than held in a CTE: a scan of
    pruned Parquet costs less than materialising millions of rows.

    Per bucket, the last point is the greatest (x, timestamp, step, value): NaN compares
    greater than every number, as in the latest-value rule. ``min`` skips NaN by itself
    (DuckDB orders NaN last); ``max`` filters it, and a bucket of NaN only gets NaN for both.
    """
    in_range = _in_range(query, source)
    low, high = query.x_min, query.x_max
    # The range's edges: the bounds asked for, else the points' own extremes (over all the
    # runs, so every run is cut at the same edges and curves align bucket by bucket).
    bounds = (
        q("SELECT ?::DOUBLE AS lo, ?::DOUBLE AS hi", low, high)
        if low is not None and high is not None  # a zoom: no pass over the points for the edges
        else join(
            [
                q(
                    "SELECT coalesce(?::DOUBLE, min(x)::DOUBLE) AS lo, coalesce(?::DOUBLE, max(x)::DOUBLE) AS hi",
                    low,
                    high,
                ),
                "FROM (",
                in_range,
                ")",
            ]
        )
    )
    n = float(query.buckets)
    bucket = "CASE WHEN b.hi > b.lo THEN least(floor((p.x::DOUBLE - b.lo) * ?::DOUBLE / (b.hi - b.lo)), ?::DOUBLE) ELSE 0 END"
    aggregated = join(
        [
            Fragment(
                "SELECT p.run_id, "
                + bucket
                + " AS bucket, max(struct_pack(x := p.x, t := p.t, s := p.s, v := p.v)) AS l,"
                " min(p.v) AS lo_v, max(p.v) FILTER (WHERE NOT isnan(p.v)) AS hi_v, count(*) AS c FROM (",
                (n, n - 1),
            ),
            in_range,
            ") p, (",
            bounds,
            ") b GROUP BY ALL",
        ]
    )
    # Runs with at most `buckets` points but some bucket holding two get their raw points (each
    # once: set semantics); runs whose every bucket holds one point already are their raw points.
    return join(
        [
            "SELECT run_id, l.x AS x, l.t AS t, l.s AS s, l.v AS value, lo_v AS min,"
            " coalesce(hi_v, 'NaN'::DOUBLE) AS max, c AS count FROM (",
            aggregated,
            ") ORDER BY run_id, x, t, s, value",
        ]
    )


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
    runs = indexed_ids("run_id", query.run_ids)
    scan = join(["SELECT run_id, step, timestamp, value FROM", source, q("WHERE key = ? AND", query.key), runs])
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
    low, high = query.x_min, query.x_max
    return join(
        [
            "SELECT * FROM (",
            points,
            q(") WHERE (?::DOUBLE IS NULL OR x >= ?::DOUBLE)", low, low),
            q("AND (?::DOUBLE IS NULL OR x <= ?::DOUBLE)", high, high),
        ]
    )


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
