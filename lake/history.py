"""Metric histories: every point of some runs' metrics, read from Parquet with pushdown."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow.dataset as ds

from runlake.core import layout
from runlake.core.errors import RunNotFound
from runlake.lake.connection import Connection
from runlake.lake.sql import id_list, join, q

POINT_COLUMNS = ["run_id", "key", "step", "timestamp", "value"]


def metric_history(db: Connection, run_id: str, key: str) -> pd.DataFrame:
    """Every point of one metric of one run (step, timestamp, value), in step order.

    Raises:
        RunNotFound: no run has this id.
    """
    rows = db.rows(q("SELECT experiment_id FROM runs WHERE run_id = ?", run_id))
    if not rows:
        raise RunNotFound(run_id)
    return metric_histories(db, [run_id], [key], experiment_ids=[rows[0][0]])[["step", "timestamp", "value"]]


def metric_histories(
    db: Connection,
    run_ids: Sequence[str],
    keys: Sequence[str] | None = None,
    experiment_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Metric points of several runs (columns run_id, key, step, timestamp, value), each once.

    Reads only the partitions and row groups the runs and keys live in.
    """
    if not run_ids:
        return pd.DataFrame(columns=POINT_COLUMNS)
    if experiment_ids is None:
        experiment_ids = [r[0] for r in db.rows(join(["SELECT DISTINCT experiment_id FROM runs WHERE", id_list("run_id", list(run_ids))]))]
    condition = ds.field("run_id").isin(list(run_ids)) & ds.field(layout.PARTITION_COLUMN).isin(list(experiment_ids))
    if keys is not None:
        condition = condition & ds.field("key").isin(list(keys))
    points = db.scan_metrics(POINT_COLUMNS, condition)
    # Set semantics, as the metrics view: a point stored twice (before compaction) counts once.
    return db.over(
        "_points",
        points,
        q("SELECT DISTINCT run_id, key, step, timestamp, value FROM _points ORDER BY run_id, key, step, timestamp, value"),
    )
