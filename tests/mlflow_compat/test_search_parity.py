"""The project's search corpus sent through ``mlflow.search_runs`` against the plugin and against
``runlake server`` gives what runlake's own search gives in process: the same run ids, in the
same order, and the same errors."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from runlake.lake.search import SearchSyntaxError
from tests.search.cases import ERROR_CASES, MATCH_CASES, ORDER_ERROR_CASES
from tests.search.mlflow_cases import MLFLOW_FILTERS, MLFLOW_ORDER_BYS, MLFLOW_REJECTED
from tests.search.test_order import ORDER_CASES
from tests.test_search_api import lake  # noqa: F401  (the fixed search dataset as a real lake)

VIEWS = {"all": "ALL", "active": "ACTIVE_ONLY", "deleted": "DELETED_ONLY"}
EXPERIMENTS = ["1", "2", "3"]


@pytest.fixture(scope="module", params=["plugin", "server"])
def plugin(lake, request):  # noqa: F811
    """MLflow pointed at the lake: in process through the plugin, then over HTTP through a real
    ``runlake server`` process (MLflow's REST layer between the client and the same search)."""
    if request.param == "plugin":
        mlflow.set_tracking_uri(f"runlake://{lake.root}")
        yield request.param
    else:
        from tests.mlflow_compat.server_process import running_server

        with running_server(str(lake.root)) as srv:
            mlflow.set_tracking_uri(srv.url)
            yield request.param
    mlflow.set_tracking_uri(None)


def _through_mlflow(text: str = "", view: str = "ALL", order_by: list[str] | None = None, **kw) -> list[str]:
    runs = mlflow.search_runs(
        experiment_ids=EXPERIMENTS,
        filter_string=text,
        run_view_type=ViewType.from_string(view.lower()),
        order_by=order_by,
        output_format="list",
        **kw,
    )
    return [r.info.run_id for r in runs]


@pytest.mark.parametrize(("text", "ids", "view"), MATCH_CASES, ids=[f"{v}:{t}" for t, _, v in MATCH_CASES])
def test_match_case(lake, plugin, text, ids, view):  # noqa: F811
    expected = lake.search_run_ids(filter_string=text, run_view_type=VIEWS[view])
    assert _through_mlflow(text, VIEWS[view]) == expected


@pytest.mark.parametrize(("text", "ids", "source"), MLFLOW_FILTERS, ids=[t for t, _, _ in MLFLOW_FILTERS])
def test_mlflow_filter(lake, plugin, text, ids, source):  # noqa: F811
    assert _through_mlflow(text) == lake.search_run_ids(filter_string=text, run_view_type="ALL")


@pytest.mark.parametrize("order_by", [o for o, _ in ORDER_CASES] + [o for o, _ in MLFLOW_ORDER_BYS], ids=repr)
def test_order(lake, plugin, order_by):  # noqa: F811
    expected = lake.search_run_ids(order_by=order_by, run_view_type="ALL")
    assert _through_mlflow("", "ALL", order_by) == expected


def test_pages_walk_the_same_order(lake, plugin):  # noqa: F811
    client = mlflow.MlflowClient()
    seen, token = [], None
    while True:
        page = client.search_runs(
            EXPERIMENTS, "", ViewType.ALL, max_results=5, order_by=["metrics.rmse"], page_token=token
        )
        seen += [r.info.run_id for r in page]
        token = page.token
        if not token:
            break
    assert seen == lake.search_run_ids(order_by=["metrics.rmse"], run_view_type="ALL")


def _same_error(run_in_process, run_through_mlflow) -> None:
    with pytest.raises(SearchSyntaxError) as ours:
        run_in_process()
    with pytest.raises(MlflowException) as theirs:
        run_through_mlflow()
    assert theirs.value.error_code == "INVALID_PARAMETER_VALUE"
    # MLflow's REST client puts the error code before a server's message; in process there is none.
    assert theirs.value.message.removeprefix("INVALID_PARAMETER_VALUE: ") == str(ours.value)


@pytest.mark.parametrize("text", [t for t, *_ in ERROR_CASES] + MLFLOW_REJECTED)
def test_filter_errors(lake, plugin, text):  # noqa: F811
    _same_error(lambda: lake.search_run_ids(filter_string=text), lambda: _through_mlflow(text))


@pytest.mark.parametrize("order_by", [o for o, *_ in ORDER_ERROR_CASES], ids=repr)
def test_order_errors(lake, plugin, order_by):  # noqa: F811
    _same_error(lambda: lake.search_run_ids(order_by=order_by), lambda: _through_mlflow("", "ALL", order_by))
