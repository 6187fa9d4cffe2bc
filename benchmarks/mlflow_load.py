"""Loads a lake's runs into an MLflow SQLite store, fast, for the ``search`` benchmark's comparison.

MLflow's own store creates and migrates the schema; the rows its search reads (experiments,
runs, params, tags, latest_metrics) are then bulk-inserted with sqlite3, because logging
100,000 runs through MLflow's API would take hours. Histories (the ``metrics`` table) are not
loaded: no MLflow search query reads them.
"""

from __future__ import annotations

import math
import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runlake.lake import Lake


def load_into_mlflow(lake: Lake, tracking_uri: str) -> list[str]:
    """Copy every run of ``lake`` into the MLflow store at ``tracking_uri`` (``sqlite:///...``).

    Returns:
        The MLflow experiment ids created (MLflow's ids are integers; ours are mapped).
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(tracking_uri, "/tmp/mlflow-bench-artifacts")  # creates and migrates the schema
    path = tracking_uri.removeprefix("sqlite:///")
    experiments = lake.sql("SELECT experiment_id, name, creation_time FROM experiments ORDER BY experiment_id")
    con = sqlite3.connect(path)
    try:
        mapping: dict[str, int] = {}
        for i, row in enumerate(experiments.itertuples(index=False), start=1000):
            con.execute(
                "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time)"
                " VALUES (?, ?, ?, 'active', ?, ?)",
                (i, row.name, f"/tmp/mlflow-bench-artifacts/{i}", int(row.creation_time), int(row.creation_time)),
            )
            mapping[row.experiment_id] = i
        runs = lake.sql(
            "SELECT run_id, experiment_id, run_name, status, start_time, end_time, user_id, source_type, source_name,"
            " source_version, entry_point, artifact_uri, lifecycle_stage, deleted_time FROM runs"
        )
        con.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time,"
            " end_time, deleted_time, source_version, lifecycle_stage, artifact_uri, experiment_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    r.run_id,
                    r.run_name,
                    r.source_type or "LOCAL",
                    r.source_name or "",
                    r.entry_point or "",
                    r.user_id,
                    r.status,
                    _int(r.start_time),
                    _int(r.end_time),
                    _int(r.deleted_time),
                    r.source_version or "",
                    r.lifecycle_stage,
                    r.artifact_uri,
                    mapping[r.experiment_id],
                )
                for r in runs.itertuples(index=False)
            ),
        )
        for table in ("params", "tags"):
            rows = lake.sql(f"SELECT key, value, run_id FROM {table}")
            con.executemany(
                f"INSERT INTO {table} (key, value, run_uuid) VALUES (?, ?, ?)", rows.itertuples(index=False)
            )
        latest = lake.sql("SELECT key, value, timestamp, step, run_id FROM latest_metrics")
        con.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?)",
            (
                (k, 0.0 if math.isnan(v) else v, int(ts), int(step), math.isnan(v), run_id)
                for k, v, ts, step, run_id in latest.itertuples(index=False)
            ),
        )
        con.commit()
    finally:
        con.close()
    return [str(i) for i in mapping.values()]


def _int(value: Any) -> int | None:
    import pandas as pd

    return None if pd.isna(value) else int(value)
