"""The fixed dataset search cases run against: plain Python data, and a loader into DuckDB.

Sixteen runs chosen to hit the rules: numeric-looking param strings, NaN/±inf metrics, missing
keys, Unicode case, LIKE wildcards in values, NULL attributes, ties, deleted runs.
"""

from __future__ import annotations

import math
from typing import Any

import duckdb

from runlake.lake import search_index
from runlake.lake.search_index import SearchIndex

NAN, INF = math.nan, math.inf

RUN_COLUMNS = (
    "run_id",
    "experiment_id",
    "run_name",
    "status",
    "start_time",
    "end_time",
    "user_id",
    "source_type",
    "source_name",
    "source_version",
    "entry_point",
    "parent_run_id",
    "artifact_uri",
    "lifecycle_stage",
    "deleted_time",
)

# run_id, experiment, run_name, status, start, end, user, source_type, source_name, version, parent, lifecycle
_RUNS = [
    ("r01", "1", "alpha", "FINISHED", 1000, 2000, "alice", "LOCAL", "train.py", "a1b2c3", None, "active"),
    ("r02", "1", "alpha-2", "FINISHED", 1100, 2100, "bob", "LOCAL", "train.py", "a1b2c3", "r01", "active"),
    ("r03", "1", "beta", "FAILED", 1200, 1250, "alice", "NOTEBOOK", "nb.ipynb", "ffff00", "r01", "active"),
    ("r04", "1", "Élan", "RUNNING", 1300, None, "carol", "JOB", "job.py", None, None, "active"),
    ("r05", "1", "élan", "KILLED", 1300, 1400, "carol", "JOB", "job.py", None, None, "active"),
    ("r06", "2", "gamma_1", "FINISHED", 1500, 1600, "dave", "PROJECT", "proj", "b2c3d4", None, "active"),
    ("r07", "2", "gamma%1", "FINISHED", 1600, 1700, "Dave", "PROJECT", "proj", "b2c3d4", None, "active"),
    ("r08", "2", "back\\slash", "SCHEDULED", 1700, None, "erin", None, None, None, None, "active"),
    ("r09", "2", None, "FINISHED", 1800, 1900, None, None, None, None, None, "active"),
    ("r10", "2", "日本", "FINISHED", 1900, 2000, "frank", "LOCAL", "train.py", None, None, "active"),
    ("r11", "3", "ΣΑΣ", "FINISHED", 2000, 2100, "grace", "LOCAL", "train.py", None, None, "active"),
    ("r12", "3", "", "FINISHED", 2100, 2200, "", "LOCAL", "train.py", None, None, "active"),
    ("r13", "3", "deleted one", "FINISHED", 2200, 2300, "alice", "LOCAL", "train.py", None, None, "deleted"),
    ("r14", "3", "deleted two", "FAILED", 2300, None, "bob", "LOCAL", "train.py", None, "r13", "deleted"),
    ("r15", "1", "dup start", "FINISHED", 1000, 1100, "alice", "LOCAL", "train.py", None, None, "active"),
    ("r16", "1", "it's", "FINISHED", 2400, 2500, "heidi", "LOCAL", "train.py", None, None, "active"),
]

RUNS: list[dict[str, Any]] = [
    {
        "run_id": rid,
        "experiment_id": exp,
        "run_name": name,
        "status": status,
        "start_time": start,
        "end_time": end,
        "user_id": user,
        "source_type": stype,
        "source_name": sname,
        "source_version": version,
        "entry_point": "main" if stype else None,
        "parent_run_id": parent,
        "artifact_uri": f"s3://bucket/{exp}/{rid}/artifacts",
        "lifecycle_stage": stage,
        "deleted_time": 5000 if stage == "deleted" else None,
    }
    for rid, exp, name, status, start, end, user, stype, sname, version, parent, stage in _RUNS
]

PARAMS: dict[str, dict[str, str]] = {
    "r01": {
        "lr": "0.01",
        "batch_size": "64",
        "model": "LogisticRegression",
        "model-type": "tree",
        "elasticNetParam": "0.5",
        "optimizer": "adam",
        "lambda": "0.001",
        "alpha": "0.3",
    },
    "r02": {
        "lr": "1e-2",
        "batch_size": "128",
        "model": "LinearRegression",
        "model-type": "linear",
        "elasticNetParam": "0.50",
        "optimizer": "Adam",
    },
    "r03": {
        "lr": "0.001",
        "batch_size": "32",
        "model": "RandomForest",
        "my param": "spacey",
        "elasticNetParam": "0.1",
        "optimizer": "ADAM",
    },
    "r04": {"lr": "1e-4", "batch_size": "64.0", "optimizer": "sgd"},
    "r05": {"lr": "0.0001", "batch_size": "+64", "model": "logisticregression"},
    "r06": {"lr": " 0.01", "batch_size": "6.4e1", "model": "L'Hosp"},
    "r07": {"lr": "abc", "batch_size": "1_000", "model": "100%"},
    "r08": {"lr": "nan", "batch_size": "0x40", "model": "a_b"},
    "r09": {"lr": "inf", "batch_size": "١٢٨", "model": "a\\b"},
    "r10": {"lr": "-inf", "batch_size": "1e999"},
    "r11": {"lr": "0.010", "batch_size": ".5"},
    "r12": {"lr": "", "batch_size": "5."},
    "r13": {"lr": "0.01"},
    "r15": {"batch_size": "Infinity"},
    "r16": {"lr": "1E-2", "batch_size": "-Infinity"},
}

TAGS: dict[str, dict[str, str]] = {
    "r01": {
        "estimator_name": "RandomForestRegressor",
        "color": "blue",
        "size": "5",
        "my custom tag": "my value",
        "mlflow.user": "alice",
        "mlflow.runName": "alpha",
        "empty": "",
        "model": "sklearn.linear",
        "type": "LogisticRegression",
    },
    "r02": {
        "estimator_name": "LinearRegression",
        "color": "red",
        "size": "5.0",
        "my custom tag": "other value",
        "mlflow.user": "bob",
        "version": "commit-hash",
        "model": "sklearn-rf",
        "type": "logistic",
    },
    "r03": {
        "estimator_name": "randomforestregressor",
        "color": "Blue",
        "size": "five",
        "mlflow.user": "alice",
        "model": "xgboost",
        "type": "linear",
    },
    "r04": {"color": "blue", "size": "10", "note": "Ünïcode ÉCOLE"},
    "r05": {"team.owner": "ml-platform", "note": "école"},
    "r06": {"team.owner": "research", "note": "line1\nline2"},
    "r07": {"note": "50% off"},
    "r08": {"note": "under_score"},
    "r09": {"note": "İstanbul"},
    "r10": {"note": "ǅungla"},
    "r11": {"note": "ΣΑΣ"},
    "r14": {"color": "blue"},
}

# run -> metric -> (latest value, min over history, max over history)
METRICS: dict[str, dict[str, tuple[float, float, float]]] = {
    "r01": {
        "rmse": (0.25, 0.2, 0.9),
        "loss": (0.5, 0.1, 2.0),
        "r2": (0.31, 0.0, 0.31),
        "accuracy": (0.92, 0.5, 0.92),
        "avg_areaUnderROC": (0.31, 0.1, 0.31),
        "memUsage": (0.0, 0.0, 0.95),
        "f1 score": (0.6, 0.1, 0.6),
        "X-Y-Z": (3.0, 3.0, 3.0),
        "error": (0.04, 0.04, 0.5),
    },
    "r02": {
        "rmse": (0.35, 0.3, 1.2),
        "loss": (0.1, 0.1, 3.0),
        "r2": (0.3, 0.1, 0.3),
        "accuracy": (0.95, 0.2, 0.95),
        "avg_areaUnderROC": (0.2, 0.2, 0.2),
        "memUsage": (0.5, 0.1, 0.85),
        "f1 score": (0.4, 0.4, 0.4),
        "accuracy.2.0": (6.0, 6.0, 6.0),
        "error": (0.06, 0.06, 0.06),
    },
    "r03": {
        "rmse": (0.3, 0.3, 0.3),
        "loss": (NAN, 0.2, 1.0),
        "r2": (0.29, 0.29, 0.29),
        "accuracy": (0.5, 0.5, 0.5),
        "memUsage": (0.0, 0.0, 0.5),
        "legit name": (0.5, 0.5, 0.5),
    },
    "r04": {"rmse": (NAN, 0.5, 0.8)},
    "r05": {"rmse": (INF, 0.4, INF)},
    "r06": {"rmse": (-INF, -INF, 1.0)},
    "r07": {"rmse": (NAN, NAN, NAN)},
    "r08": {"rmse": (1.0, 1.0, 1.0)},
    "r09": {"loss": (0.0, 0.0, 0.5)},
    "r10": {"loss": (-0.0, -1.0, 0.0)},
    "r13": {"rmse": (0.1, 0.1, 0.1)},
    "r14": {"rmse": (0.2, 0.1, 0.2)},
}

ALL_IDS = [run["run_id"] for run in RUNS]
ACTIVE_IDS = [run["run_id"] for run in RUNS if run["lifecycle_stage"] == "active"]


def rows() -> list[dict[str, Any]]:
    """The dataset as evaluator rows."""
    return [
        {
            "run": dict(run),
            "params": dict(PARAMS.get(run["run_id"], {})),
            "tags": dict(TAGS.get(run["run_id"], {})),
            "metrics": {
                key: {"value": v, "min_value": lo, "max_value": hi}
                for key, (v, lo, hi) in METRICS.get(run["run_id"], {}).items()
            },
        }
        for run in RUNS
    ]


# How a search reads the dataset: the folded tables joined per key ("joins"), the lake's search
# index with a column for every key ("index"), or an index holding only each entity's two most
# frequent keys, so one search mixes index columns and joins ("partial").
MODES = ("joins", "index", "partial")
_INDEXES: dict[int, SearchIndex | None] = {}


def index_of(con: duckdb.DuckDBPyConnection) -> SearchIndex | None:
    """The search index ``load`` built in ``con`` (None in "joins" mode): pass it to the compiler."""
    return _INDEXES.get(id(con))


def load(con: duckdb.DuckDBPyConnection, data: list[dict[str, Any]] | None = None, mode: str = "joins") -> None:
    """Create ``runs``, ``params``, ``tags`` and ``latest_metrics`` in ``con`` from rows, and
    the search index as ``mode`` says."""
    data = rows() if data is None else data
    con.execute(
        "CREATE OR REPLACE TABLE runs (run_id VARCHAR, experiment_id VARCHAR, run_name VARCHAR, "
        "status VARCHAR, start_time BIGINT, end_time BIGINT, user_id VARCHAR, source_type VARCHAR, "
        "source_name VARCHAR, source_version VARCHAR, entry_point VARCHAR, parent_run_id VARCHAR, "
        "artifact_uri VARCHAR, lifecycle_stage VARCHAR, deleted_time BIGINT)"
    )
    for table in ("params", "tags"):
        con.execute(
            f"CREATE OR REPLACE TABLE {table} (run_id VARCHAR, experiment_id VARCHAR, key VARCHAR, value VARCHAR)"
        )
    con.execute(
        "CREATE OR REPLACE TABLE latest_metrics (run_id VARCHAR, experiment_id VARCHAR, key VARCHAR, "
        "value DOUBLE, step BIGINT, timestamp BIGINT, min_value DOUBLE, max_value DOUBLE)"
    )
    placeholders = ", ".join("?" for _ in RUN_COLUMNS)
    runs = [[row["run"].get(c) for c in RUN_COLUMNS] for row in data]
    if runs:
        con.executemany(f"INSERT INTO runs VALUES ({placeholders})", runs)
    for table in ("params", "tags"):
        values = [
            [row["run"]["run_id"], row["run"]["experiment_id"], k, v] for row in data for k, v in row[table].items()
        ]
        if values:
            con.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", values)
    metrics = [
        [row["run"]["run_id"], row["run"]["experiment_id"], k, m["value"], 10, 1000, m["min_value"], m["max_value"]]
        for row in data
        for k, m in row["metrics"].items()
    ]
    if metrics:
        con.executemany("INSERT INTO latest_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", metrics)
    _INDEXES[id(con)] = None if mode == "joins" else search_index.build(con, 2 if mode == "partial" else 10_000)


def connect(mode: str = "joins") -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB holding the dataset, searched as ``mode`` says."""
    con = duckdb.connect(":memory:")
    load(con, mode=mode)
    return con


VIEWS = {"active": "active", "deleted": "deleted", "all": None}


def search_ids(
    con: duckdb.DuckDBPyConnection,
    filter_sql: str,
    filter_params: list[Any],
    plan: Any = None,
    view: str = "all",
    limit: int = 1_000_000,
    offset: int = 0,
) -> list[str]:
    """Run a search in exactly the shape the lake composes it (see the search package docs)."""
    from runlake.lake.search import compile_order_by

    plan = plan or compile_order_by([])
    stage = VIEWS[view]
    lead_sql = "r.lifecycle_stage = ?" if stage else "TRUE"
    lead_params = [stage] if stage else []
    runs = "runs" if index_of(con) is None else search_index.WIDE_TABLE
    sql = (
        f"SELECT r.run_id FROM {runs} r {plan.joins_sql} WHERE {lead_sql} AND ({filter_sql}) "
        f"ORDER BY {plan.order_sql} LIMIT ? OFFSET ?"
    )
    params = plan.join_params + lead_params + filter_params + [limit, offset]
    return [row[0] for row in con.execute(sql, params).fetchall()]
