"""Search through the real stack: the fixed dataset written as Parquet, read by ``Lake``.

The case files in tests/search run the compiler over in-memory tables; here every case runs
through real files, the current-state folds, ``Lake.search_*`` and the CLI, so the two layers
cannot drift apart.
"""

from __future__ import annotations

import json
import math
import subprocess

import pytest

from runlake.core import layout, writer
from runlake.core.errors import ExperimentNotFound
from runlake.ingest import LakeClient
from runlake.lake import Lake
from runlake.lake.search import SearchSyntaxError
from tests.conftest import RUNLAKE
from tests.search import dataset
from tests.search.cases import ALL, MATCH_CASES
from tests.search.mlflow_cases import MLFLOW_FILTERS
from tests.search.test_order import ORDER_CASES

VIEW_TYPES = {"all": "ALL", "active": "ACTIVE_ONLY", "deleted": "DELETED_ONLY"}


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    root = str(tmp_path_factory.mktemp("search") / "lake")
    client = LakeClient(root)
    for experiment_id in ("1", "2", "3"):
        client.create_experiment(f"exp{experiment_id}", experiment_id=experiment_id)
    fs, root = layout.resolve_lake(root)
    by_exp: dict[str, list[dict]] = {}
    for run in dataset.RUNS:
        row = {k: v for k, v in run.items() if k != "experiment_id"}
        by_exp.setdefault(run["experiment_id"], []).append({**row, "version": layout.next_version()})
    for experiment_id, rows in by_exp.items():
        writer.write_part(fs, root, layout.RUNS, writer.to_table(layout.RUNS, rows), experiment_id)
        ids = {r["run_id"] for r in rows}
        for table, source in ((layout.PARAMS, dataset.PARAMS), (layout.TAGS, dataset.TAGS)):
            items = [
                {"run_id": rid, "key": k, "value": v, "version": layout.next_version()}
                for rid, kv in source.items()
                if rid in ids
                for k, v in kv.items()
            ]
            writer.write_part(fs, root, table, writer.to_table(table, items), experiment_id)
    # Metric histories whose summaries are the dataset's (latest, min, max): min at step 0,
    # max at step 1, latest at step 2, logged through the ingest client like any run.
    for run_id, metrics in dataset.METRICS.items():
        points = []
        for key, (latest, low, high) in metrics.items():
            points += [(key, low, 1000, 0), (key, high, 1000, 1), (key, latest, 1000, 2)]
        client.log_batch(run_id, metrics=points)
    client.flush()
    return Lake(root)


def _expected(ids: str, view: str) -> list[str]:
    pool = {"all": dataset.ALL_IDS, "active": dataset.ACTIVE_IDS, "deleted": ["r13", "r14"]}[view]
    return sorted(pool) if ids == ALL else sorted(ids.split())


@pytest.mark.parametrize(("text", "ids", "view"), MATCH_CASES, ids=[f"{v}:{t}" for t, _, v in MATCH_CASES])
def test_case_through_the_lake(lake, text, ids, view):
    got = lake.search_run_ids(filter_string=text, run_view_type=VIEW_TYPES[view])
    assert sorted(got) == _expected(ids, view)


@pytest.mark.parametrize(("text", "ids", "source"), MLFLOW_FILTERS, ids=[t for t, _, _ in MLFLOW_FILTERS])
def test_mlflow_filter_through_the_lake(lake, text, ids, source):
    got = lake.search_run_ids(filter_string=text, run_view_type="ALL")
    assert sorted(got) == _expected(ids, "all")


@pytest.mark.parametrize(("order_by", "expected"), ORDER_CASES, ids=[repr(o) for o, _ in ORDER_CASES])
def test_order_through_the_lake(lake, order_by, expected):
    assert lake.search_run_ids(order_by=order_by) == expected.split()


def test_search_runs_frame_shape(lake):
    frame = lake.search_runs(filter_string="metrics.rmse < 0.3", run_view_type="ALL", order_by=["metrics.rmse"])
    assert frame["run_id"].tolist() == ["r06", "r13", "r14", "r01"]
    assert list(frame.columns[:6]) == ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    assert {"run_name", "user_id", "lifecycle_stage", "metrics.rmse", "params.lr", "tags.color"} <= set(frame.columns)
    assert frame.set_index("run_id").loc["r06", "metrics.rmse"] == -math.inf
    assert frame.set_index("run_id").loc["r14", "lifecycle_stage"] == "deleted"


def test_paging_walks_every_match_once(lake):
    seen, token, pages = [], None, 0
    while True:
        page = lake.search_page(page_size=4, page_token=token, run_view_type="ALL")
        assert page.total == 16
        seen += page.frame["run_id"].tolist()
        pages += 1
        token = page.next_page_token
        if token is None:
            break
    assert pages == 4 and len(seen) == 16 and len(set(seen)) == 16  # ends exactly: no empty 5th page
    assert seen == lake.search_run_ids(run_view_type="ALL")


def test_page_columns_limit_what_is_fetched(lake):
    page = lake.search_page(page_size=3, columns=["metrics.rmse", "params.lr"])
    extra = [c for c in page.frame.columns if c.startswith(("metrics.", "params.", "tags."))]
    assert extra == ["metrics.rmse", "params.lr"]
    assert page.run_ids == page.frame["run_id"].tolist()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"page_size": 0}, "page_size must be a positive integer"),
        ({"page_size": 2.5}, "page_size must be a positive integer"),
        ({"page_token": "garbage"}, "Invalid page token"),
        ({"run_view_type": "SOME"}, "run_view_type must be one of"),
    ],
)
def test_page_argument_errors(lake, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lake.search_page(**kwargs)


def test_max_results_must_be_positive(lake):
    with pytest.raises(ValueError, match="max_results must be a positive integer"):
        lake.search_runs(max_results=0)
    assert len(lake.search_runs(max_results=2)) == 2


def test_experiment_scoping_and_time_window(lake):
    assert sorted(lake.search_run_ids(experiment_ids=["2"])) == ["r06", "r07", "r08", "r09", "r10"]
    assert sorted(lake.search_run_ids(experiment_names=["exp3"], run_view_type="DELETED_ONLY")) == ["r13", "r14"]
    assert sorted(lake.search_run_ids(created_after=2000, created_before=2100)) == ["r11", "r12"]
    with pytest.raises(ExperimentNotFound):
        lake.search_runs(experiment_names=["nope"])


def test_invalid_filter_raises_search_syntax_error_with_position(lake):
    with pytest.raises(SearchSyntaxError) as info:
        lake.search_runs(filter_string="metrics.rmse < 0.3 AND")
    shape = info.value.to_dict()
    assert shape["error"] == "SearchSyntaxError" and shape["column"] >= 20
    assert "^" in shape["message"] and isinstance(info.value, ValueError)


def test_has_model_filter(tmp_path, monkeypatch):
    np = pytest.importorskip("numpy")
    import runlake.ingest as rl

    client = LakeClient(str(tmp_path / "m"))
    exp = client.create_experiment("models")
    with_model = rl.Run(client, client.create_run(exp), exp)
    with_model.log_model({"w": np.ones(2).tolist()})
    with_model.end()
    plain = client.create_run(exp)
    client.set_tag(plain, "other", "x")
    lake = Lake(str(tmp_path / "m"))
    # Through the search index's column of the model-history tag, and through the tags table.
    from runlake.core import vocab

    assert lake.connection.search_index().column("tag", vocab.MODEL_HISTORY_TAG) is not None
    assert lake.search_run_ids(has_model=True) == [with_model.run_id]
    assert lake.search_run_ids(has_model=False) == [plain]
    from runlake.lake.connection import Connection

    monkeypatch.setattr(Connection, "search_index", lambda self: None)
    assert lake.search_run_ids(has_model=True) == [with_model.run_id]
    assert lake.search_run_ids(has_model=False) == [plain]


def test_cli_search_formats_and_errors(lake):
    root = lake.root
    ok = subprocess.run(
        [
            RUNLAKE,
            "search",
            "--lake",
            root,
            "metrics.rmse < 0.3",
            "--view",
            "all",
            "--format",
            "json",
            "--order-by",
            "metrics.rmse",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert [r["run_id"] for r in json.loads(ok.stdout)] == ["r06", "r13", "r14", "r01"]
    csv = subprocess.run(
        [RUNLAKE, "search", "--lake", root, "--format", "csv", "--max-results", "2"], capture_output=True, text=True
    )
    assert csv.returncode == 0 and len(csv.stdout.strip().splitlines()) == 3
    bad = subprocess.run([RUNLAKE, "search", "--lake", root, "params.lr == '1'"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "column 12" in bad.stderr and "^" in bad.stderr and "Traceback" not in bad.stderr
    bad_json = subprocess.run(
        [RUNLAKE, "search", "--lake", root, "tags.x = ", "--format", "json"], capture_output=True, text=True
    )
    assert bad_json.returncode == 2 and json.loads(bad_json.stderr)["error"] == "SearchSyntaxError"
    missing = subprocess.run(
        [RUNLAKE, "search", "--lake", root, "--experiment", "nope"], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "Experiment 'nope' not found" in missing.stderr


def test_page_by_offset_matches_page_by_token(lake):
    first = lake.search_page(page_size=5, run_view_type="ALL")
    second = lake.search_page(page_size=5, page_token=first.next_page_token, run_view_type="ALL")
    assert lake.search_page(page_size=5, offset=5, run_view_type="ALL").run_ids == second.run_ids
    assert lake.search_page(page_size=5, offset=100, run_view_type="ALL").run_ids == []
    with pytest.raises(ValueError, match="offset must be a non-negative integer"):
        lake.search_page(offset=-1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"order_by": "metrics.rmse"}, "order_by takes a list"),
        ({"order_by": [1]}, "order_by takes a list"),
        ({"filter_string": 5}, "filter_string must be a string"),
        ({"created_after": "yesterday"}, "created_after must be epoch milliseconds"),
        ({"created_before": 1.5}, "created_before must be epoch milliseconds"),
        ({"has_model": "no"}, "has_model must be True, False or None"),
    ],
    ids=lambda v: repr(v),
)
def test_search_argument_types(lake, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lake.search_runs(**kwargs)


def test_page_token_of_the_wrong_type(lake):
    with pytest.raises(ValueError, match="Invalid page token"):
        lake.search_page(page_token=123)


def test_cli_refuses_a_missing_lake(tmp_path):
    result = subprocess.run([RUNLAKE, "search", "--lake", str(tmp_path / "typo")], capture_output=True, text=True)
    assert result.returncode == 2 and "No lake at" in result.stderr


def test_a_total_is_counted_once_per_state_and_again_after_a_change(tmp_path, monkeypatch):
    """Pages of one filter (another page, another order) take the total counted by the first
    while the state is unchanged; a new run makes the next page count again."""
    from runlake.lake.connection import Connection

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("counts")
    for i in range(7):
        run_id = client.create_run(experiment, run_name=f"r{i}")
        client.log_batch(run_id, metrics=[("loss", float(i), 0, 0)])
    client.flush()
    lake = Lake(root)
    counted: list[bool] = []
    rows = Connection.rows

    def spy(self, query):
        counted.append("count(*)" in query.sql)
        return rows(self, query)

    monkeypatch.setattr(Connection, "rows", spy)
    search = {"filter_string": "metrics.loss >= 2"}
    first = lake.search_page(page_size=2, **search)
    second = lake.search_page(page_size=2, page_token=first.next_page_token, **search)
    other_order = lake.search_page(page_size=2, order_by=["metrics.loss DESC"], **search)
    assert (first.total, second.total, other_order.total) == (5, 5, 5)
    assert counted == [True, False, False]
    assert lake.search_page(page_size=2, filter_string="metrics.loss >= 5").total == 2  # its own count
    client.log_batch(client.create_run(experiment, run_name="new"), metrics=[("loss", 9.0, 0, 0)])
    client.flush()
    counted.clear()
    assert lake.search_page(page_size=2, **search).total == 6
    assert counted == [True]


def test_a_count_made_across_a_refresh_is_not_kept(tmp_path):
    client = LakeClient(str(tmp_path / "lake"))
    client.create_run(client.create_experiment("e"))
    client.flush()
    db = Lake(str(tmp_path / "lake")).connection
    before = db.generation
    client.create_run(client.create_experiment("e"))
    client.flush()
    assert db.refresh() and db.generation == before + 1
    db.remember_count("k", before, 1)  # counted from the state before the refresh
    assert db.remembered_count("k") is None
    db.remember_count("k", db.generation, 2)
    assert db.remembered_count("k") == 2


def test_index_rows_caught_up_late_drop_the_kept_counts(tmp_path):
    """A refresh that finds index rows behind (a process stopped between a fold and the index
    catching up) changes what searches see, so counts kept before are dropped."""
    client = LakeClient(str(tmp_path / "lake"))
    client.create_run(client.create_experiment("e"))
    client.flush()
    db = Lake(str(tmp_path / "lake")).connection
    db.remember_count("k", db.generation, 1)
    assert not db.refresh() and db.remembered_count("k") == 1
    db._snapshot._index_behind = True
    assert db.refresh() and db.remembered_count("k") is None
