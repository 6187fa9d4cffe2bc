"""The current-state SQL: how versioned, append-only rows fold into what a run looks like now.

This SQL is part of the public surface. The same statements back the ``Lake`` query API, the
dashboard and ``runlake sql``, and the README shows how to run them over the Parquet files from
plain DuckDB, so ad-hoc SQL gives the answers the dashboard gives.

Every statement reads ``raw_<table>`` (the rows of the Parquet files, with the hive partition
column ``experiment_id``) and never mentions a path: the caller decides where rows come from.
"""

from __future__ import annotations

from runlake.core import layout

# Latest-wins, field by field: arg_max skips NULL arguments, so each field takes its latest
# non-null version and concurrent writers changing different fields both keep their change.
# An exact version tie (two writers in the same microsecond with the same 10 random bits) is
# broken by the value itself, so every engine folds the same rows to the same state.
_RUN_FIELDS = layout.RUN_FIELDS

RUNS_SQL = (
    "SELECT run_id, any_value(experiment_id) AS experiment_id, "
    + ", ".join(f"arg_max({f}, struct_pack(version, {f})) AS {f}" for f in _RUN_FIELDS)
    + ", coalesce(arg_max(lifecycle_stage, struct_pack(version, lifecycle_stage)), 'active') AS lifecycle_stage"
    + ", CASE WHEN arg_max(lifecycle_stage, struct_pack(version, lifecycle_stage)) = 'deleted'"
    + " THEN arg_max(deleted_time, struct_pack(version, deleted_time)) END AS deleted_time"
    + " FROM {src} GROUP BY run_id"
    # A run exists once its creation row (the one with a start time) exists; updates that
    # arrive for a run id nobody created are not a run.
    + " HAVING max(start_time) IS NOT NULL"
)

EXPERIMENTS_SQL = (
    "SELECT experiment_id, "
    "arg_max(name, struct_pack(version, name)) AS name, "
    "arg_max(artifact_location, struct_pack(version, artifact_location)) AS artifact_location, "
    "coalesce(arg_max(lifecycle_stage, struct_pack(version, lifecycle_stage)), 'active') AS lifecycle_stage, "
    "min(creation_time) AS creation_time, max(last_update_time) AS last_update_time "
    "FROM {src} GROUP BY experiment_id"
)

# Params are immutable: the first version wins (a second process logging another value for
# the same key cannot change what the run was trained with).
PARAMS_SQL = (
    "SELECT run_id, any_value(experiment_id) AS experiment_id, key, "
    "arg_min(value, struct_pack(version, value)) AS value "
    "FROM {src} GROUP BY run_id, key"
)

# A tag's latest version may be a tombstone (NULL value): then the tag is gone.
TAGS_SQL = (
    "SELECT run_id, experiment_id, key, value FROM ("
    "SELECT run_id, any_value(experiment_id) AS experiment_id, key, "
    "arg_max_null(value, struct_pack(version, value)) AS value "
    "FROM {src} GROUP BY run_id, key) WHERE value IS NOT NULL"
)


def summary_aggregates(step: str, timestamp: str, value: str, low: str, high: str) -> str:
    """The aggregates that summarise a metric per (run_id, key), as SQL over fixed column names.

    The one SQL statement of the rule ``core.points.summarize`` applies with Arrow: the latest
    point is the greatest (step, timestamp, value) - NaN compares greater than every number in
    DuckDB, as in pyarrow's sort at flush time - and min/max ignore NaN unless every value is
    NaN. Applied to points or to summaries alike, so summaries of any split of the points fold
    to the same result. Yields ``l`` (a struct of s, t, v), ``min_value`` and ``max_value``.
    """
    return (
        f"max(struct_pack(s := {step}, t := {timestamp}, v := {value})) AS l, "
        f"coalesce(min({low}) FILTER (WHERE NOT isnan({low})), 'NaN'::DOUBLE) AS min_value, "
        f"coalesce(max({high}) FILTER (WHERE NOT isnan({high})), 'NaN'::DOUBLE) AS max_value"
    )


# Summary rows fold into one row per (run_id, key).
FOLD_SUMMARIES = summary_aggregates("latest_step", "latest_timestamp", "latest_value", "min_value", "max_value")

LATEST_METRICS_SQL = (
    "SELECT run_id, experiment_id, key, l.v AS value, l.s AS step, l.t AS timestamp, "
    "min_value, max_value FROM ("
    f"SELECT run_id, any_value(experiment_id) AS experiment_id, key, {FOLD_SUMMARIES} "
    "FROM {src} GROUP BY run_id, key)"
)

# Metric points have set semantics (as in MLflow): a point present in two files counts once.
METRICS_SQL = "SELECT DISTINCT experiment_id, run_id, key, step, timestamp, value FROM raw_metrics"

# view name -> (SQL with a {src} placeholder for the raw rows, the raw table it folds, the key
# its rows fold by: a new row for a key changes that key's folded state and no other's).
CURRENT_STATE: dict[str, tuple[str, str, str]] = {
    "experiments": (EXPERIMENTS_SQL, layout.EXPERIMENTS, "experiment_id"),
    "runs": (RUNS_SQL, layout.RUNS, "run_id"),
    "params": (PARAMS_SQL, layout.PARAMS, "run_id"),
    "tags": (TAGS_SQL, layout.TAGS, "run_id"),
    "latest_metrics": (LATEST_METRICS_SQL, layout.METRIC_SUMMARIES, "run_id"),
}

VIEW_DOCS: dict[str, str] = {
    "experiments": "one row per experiment: experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time",
    "runs": "one row per run: " + ", ".join(layout.RUN_COLUMNS),
    "params": "one row per (run_id, key): run_id, experiment_id, key, value (string)",
    "tags": "one row per live (run_id, key): run_id, experiment_id, key, value",
    "metrics": "every metric point once: experiment_id, run_id, key, step, timestamp, value",
    "latest_metrics": "one row per (run_id, key): value (latest by step, timestamp, value), step, timestamp, "
    "min_value, max_value (NaN-ignoring)",
}


def fold_sql(view: str, src: str | None = None) -> str:
    """The SQL of a current-state view, folding rows from ``src`` (default ``raw_<table>``)."""
    sql, table, _key = CURRENT_STATE[view]
    return sql.replace("{src}", src or f"raw_{table}")


# What the fold of a view makes of a (run_id, key) that has one raw row, without aggregates:
# most pairs of params and tags have one (a param logged once, a tag set once), and
# struct-keyed arg_min/arg_max cost about twice a plain read of the rows. Each is the fold's
# SQL applied to one row: the tie-break has nothing to break, a tombstone is no tag. Metric
# summaries are left out: a live run writes one per flush, so most pairs have several and the
# split measured twice as slow as the plain fold there.
_ONE_ROW_SQL = {
    "params": "SELECT run_id, experiment_id, key, value FROM {src}",
    "tags": "SELECT run_id, experiment_id, key, value FROM {src} WHERE value IS NOT NULL",
}


def split_fold_sql(view: str) -> str:
    """The SQL of a current-state view over all of ``raw_<table>``, the same rows as
    ``fold_sql`` gives, faster when most (run_id, key) pairs have one row: only the pairs with
    several go through the fold's aggregates.

    For the views of ``_ONE_ROW_SQL`` (params, tags); others fold as
    ``fold_sql``. NULL keys match NULL keys (``IS NOT DISTINCT FROM``), as ``GROUP BY``
    groups them.
    """
    if view not in _ONE_ROW_SQL:
        return fold_sql(view)
    _sql, table, _key = CURRENT_STATE[view]
    raw = f"raw_{table}"
    same = "r.run_id IS NOT DISTINCT FROM m.run_id AND r.key IS NOT DISTINCT FROM m.key"
    several = f"(SELECT run_id, key FROM {raw} GROUP BY run_id, key HAVING count(*) > 1)"
    single_rows = f"(SELECT r.* FROM {raw} r ANTI JOIN {several} m ON {same})"
    several_rows = f"(SELECT r.* FROM {raw} r SEMI JOIN {several} m ON {same})"
    one_row = _ONE_ROW_SQL[view].replace("{src}", single_rows)
    return f"{one_row} UNION ALL {fold_sql(view, several_rows)}"


def raw_sql(table: str, files_sql: str) -> str:
    """SQL reading a table's Parquet files with DuckDB (used by ``runlake sql --print-views``).

    Args:
        table: one of the lake's tables.
        files_sql: a DuckDB expression for the files, e.g. ``'lake/runs/*/*.parquet'``.
    """
    if table == layout.EXPERIMENTS:
        return f"SELECT * FROM read_parquet({files_sql}, union_by_name = true)"
    return (
        f"SELECT * FROM read_parquet({files_sql}, hive_partitioning = true, "
        "hive_types = {'experiment_id': VARCHAR}, union_by_name = true)"
    )


def standalone_script(root: str) -> str:
    """A DuckDB script that defines every view straight over a lake's files.

    For users of plain DuckDB; the path is the caller's own lake root, written as a literal.
    """
    quoted_root = root.replace("'", "''")
    lines = []
    for table in layout.ALL_TABLES:
        glob = (
            f"'{quoted_root}/{table}/*.parquet'"
            if table == layout.EXPERIMENTS
            else f"'{quoted_root}/{table}/*/*.parquet'"
        )
        lines.append(f"CREATE OR REPLACE VIEW raw_{table} AS {raw_sql(table, glob)};")
    for name in CURRENT_STATE:
        lines.append(f"CREATE OR REPLACE VIEW {name} AS {fold_sql(name)};")
    lines.append(f"CREATE OR REPLACE VIEW metrics AS {METRICS_SQL};")
    return "\n".join(lines)
