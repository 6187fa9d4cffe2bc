"""The server's search and metric-history views answer what MLflow's handlers answer.

Three oracles, all MLflow's own code: the JSON of a response is compared with
``message_to_json`` of the protobuf MLflow's handler builds from the same rows (parsed, and
parsed again into the response message as MLflow's client does); a request is read as MLflow's
``_get_request_message`` reads it; and over a real lake the installed view's response is
compared with the response of MLflow's handler it replaced.
"""

from __future__ import annotations

import json
import math
import urllib.parse

import flask
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LoggedModelInput,
    LoggedModelOutput,
    Metric,
    RunInputs,
    RunOutputs,
    ViewType,
)
from mlflow.protos.service_pb2 import GetMetricHistory, SearchRuns
from mlflow.server import handlers
from mlflow.utils.proto_json_utils import message_to_json, parse_dict

from runlake.mlflow_store.read_views import (
    RUN_STATUSES,
    Unusual,
    history_json,
    plain_history,
    plain_search,
    search_json,
)
from runlake.mlflow_store.records import RunRecord

INT64 = st.integers(-(2**63), 2**63 - 1)
DOUBLES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, 1e16, 0.1]),
)
TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["", "é", "日本語", "\x00", '"\\', "a" * 6000]))


# -- the JSON: rows in, MLflow's message_to_json out ------------------------------------------
def mlflow_search_json(records: list[RunRecord], token: str | None) -> str:
    """What MLflow's ``_search_runs`` handler writes for these runs (search_runs_impl's steps)."""
    response = SearchRuns.Response()
    response.runs.extend([record.to_run().to_proto() for record in records])
    if token:
        response.next_page_token = token
    return message_to_json(response)


def same_response(ours: str, theirs: str, message_type) -> None:
    assert json.loads(ours) == json.loads(theirs)
    # MLflow's client parses the body into the response message: the same message either way.
    a, b = message_type(), message_type()
    parse_dict(json.loads(ours), a)
    parse_dict(json.loads(theirs), b)
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def io_parts() -> st.SearchStrategy:
    dataset = st.builds(
        Dataset,
        name=TEXT,
        digest=st.text(max_size=8),
        source_type=st.sampled_from(["local", "code"]),
        source=TEXT,
        schema=st.none() | TEXT,
        profile=st.none() | TEXT,
    )
    inputs = st.builds(
        RunInputs,
        dataset_inputs=st.lists(
            st.builds(DatasetInput, dataset, st.lists(st.builds(InputTag, TEXT, TEXT), max_size=2)), max_size=2
        ),
        model_inputs=st.lists(st.builds(LoggedModelInput, st.text(min_size=1, max_size=8)), max_size=2),
    )
    outputs = st.builds(
        RunOutputs, model_outputs=st.lists(st.builds(LoggedModelOutput, st.text(min_size=1, max_size=8), INT64))
    )
    return st.tuples(inputs, outputs)


@st.composite
def records(draw, odd: bool) -> RunRecord:
    """A run as the store reads it: lake-typed values, or (``odd``) now and then a value of a
    kind the lake does not hold (None, a number for a string, an unknown status)."""

    def of(strategy, *unusual):
        return st.one_of(strategy, st.sampled_from(unusual)) if odd else strategy

    def maybe(strategy, *unusual):
        return draw(of(strategy, *unusual))

    run_id = draw(st.text("0123456789abcdef", min_size=32, max_size=32))
    end = draw(st.one_of(st.none(), st.just(0), INT64))
    info = (
        run_id,
        maybe(st.text("0123456789", min_size=1, max_size=18), None, 7),
        maybe(st.none() | TEXT, 3),
        maybe(st.sampled_from(sorted(RUN_STATUSES)), "BOGUS", None),
        maybe(INT64, None, 1.5),
        end,
        maybe(st.sampled_from(["active", "deleted"]), None),
        maybe(st.none() | TEXT, 4),
    )
    pair = st.tuples(of(st.sampled_from(["lr", "a", "", "é"]) | TEXT, None), of(TEXT, None, 2))
    pairs = st.lists(pair, max_size=5)
    metric = st.tuples(of(TEXT, None), of(DOUBLES, None, 3), of(INT64, None), of(INT64, None))
    return RunRecord(
        info=info,
        artifact_uri=draw(st.sampled_from(["", "mlflow-artifacts:/1/" + run_id, "file:///l/a b/é"])),
        params=draw(pairs),
        tags=draw(pairs),
        metrics=draw(st.lists(metric, max_size=4)),
        io=draw(st.none() | io_parts()),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(odd=False), max_size=4), st.none() | st.sampled_from(["", "MTAw", "x" * 40]))
def test_search_json_is_mlflows_json_for_what_a_lake_holds(page, token):
    same_response(search_json(page, token), mlflow_search_json(page, token), SearchRuns.Response)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(odd=True), min_size=1, max_size=3))
def test_search_json_hands_values_mlflow_would_refuse_or_change_to_mlflow(page):
    try:
        theirs = mlflow_search_json(page, None)
    except Exception:
        theirs = None
    try:
        ours = search_json(page, None)
    except Unusual:
        return  # the view hands the request to MLflow's handler, whatever it answers
    assert theirs is not None, "the view answered what MLflow's handler fails on"
    same_response(ours, theirs, SearchRuns.Response)


def test_search_json_spells_what_mlflow_spells():
    record = RunRecord(
        info=("a" * 32, "1", None, "FINISHED", 5, 0, "active", None),
        artifact_uri="mlflow-artifacts:/1/" + "a" * 32,
        params=[("p", "1"), ("p", "2"), ("q", None)],
        tags=[],
        metrics=[("nan", math.nan, 2**62, -1), ("inf", -math.inf, 1, 0)],
        io=None,
    )
    payload = json.loads(search_json([record], "tok"))
    assert payload == {
        "runs": [
            {
                "info": {
                    "run_uuid": "a" * 32,
                    "experiment_id": "1",
                    "user_id": "",
                    "status": "FINISHED",
                    "start_time": 5,
                    "artifact_uri": "mlflow-artifacts:/1/" + "a" * 32,
                    "lifecycle_stage": "active",
                    "run_id": "a" * 32,
                },
                "data": {
                    "metrics": [
                        {"key": "nan", "value": "NaN", "timestamp": 2**62, "step": -1},
                        {"key": "inf", "value": "-Infinity", "timestamp": 1, "step": 0},
                    ],
                    "params": [{"key": "p", "value": "2"}, {"key": "q"}],
                },
                "inputs": {},
                "outputs": {},
            }
        ],
        "next_page_token": "tok",
    }
    assert json.loads(mlflow_search_json([record], "tok")) == payload
    assert search_json([], None) == "{}"


@settings(max_examples=300, deadline=None)
@given(
    TEXT.filter(bool),
    st.lists(st.tuples(INT64, INT64, DOUBLES), max_size=30),
    st.none() | st.sampled_from(["", "NTAw"]),
)
def test_history_json_is_mlflows_json(key, points, token):
    columns = ([s for s, _, _ in points], [t for _, t, _ in points], [v for _, _, v in points])
    response = GetMetricHistory.Response()
    response.metrics.extend([Metric(key, v, t, s).to_proto() for s, t, v in points])
    if token:
        response.next_page_token = token
    same_response(history_json(key, columns, token), message_to_json(response), GetMetricHistory.Response)


# -- the requests: read as MLflow's handler reads them ------------------------------------------
oracle = flask.Flask("oracle")
SEARCH_SCHEMA = {  # MLflow's _search_runs handler's
    "experiment_ids": [handlers._assert_array],
    "filter": [handlers._assert_string],
    "max_results": [handlers._assert_intlike, lambda x: handlers._assert_less_than_or_equal(int(x), 50000)],
    "order_by": [handlers._assert_array, handlers._assert_item_type_string],
}
HISTORY_SCHEMA = {  # MLflow's _get_metric_history handler's
    "run_id": [handlers._assert_string, handlers._assert_required],
    "metric_key": [handlers._assert_string, handlers._assert_required],
    "page_token": [handlers._assert_string],
}


def mlflow_reads_search(body) -> tuple | None:
    """The arguments MLflow's handler passes the store for this body (None: it answers an error)."""
    with oracle.test_request_context("/", method="POST", json=body):
        try:
            message = handlers._get_request_message(SearchRuns(), schema=SEARCH_SCHEMA)
        except Exception:
            return None
    view_type = ViewType.from_proto(message.run_view_type) if message.HasField("run_view_type") else 1
    return (
        list(message.experiment_ids),
        message.filter,
        view_type,
        message.max_results,
        list(message.order_by),
        message.page_token or None,
    )


scalars = st.one_of(
    st.none(),
    st.lists(st.just("ALL"), max_size=1),
    st.dictionaries(st.just("a"), st.integers(), max_size=1),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False),
    st.sampled_from(["", "ALL", "DELETED_ONLY", "ACTIVE_ONLY", "all", "100", "1", "2", 3, 0, -1, 50000, 50001]),
    st.text(max_size=6),
)
search_bodies = st.fixed_dictionaries(
    {},
    optional={
        "experiment_ids": st.one_of(st.lists(st.text("0123456789", max_size=4), max_size=3), scalars),
        "filter": st.one_of(st.sampled_from(["", "metrics.a > 1", "params.x = 'é'"]), scalars),
        "run_view_type": st.one_of(st.sampled_from(["ACTIVE_ONLY", "DELETED_ONLY", "ALL", 1, 2, 3]), scalars),
        "max_results": st.one_of(st.integers(-2, 60000), scalars),
        "order_by": st.one_of(st.lists(st.sampled_from(["start_time DESC", "metrics.a", "x"]), max_size=2), scalars),
        "page_token": st.one_of(st.sampled_from(["", "MTAw"]), scalars),
        "experimentIds": st.lists(st.just("1"), max_size=1),
        "other": scalars,
    },
)


@settings(max_examples=800, deadline=None)
@given(search_bodies)
@example({"experiment_ids": ["1"], "run_view_type": "ACTIVE_ONLY", "filter": "", "max_results": 100})
@example({"experiment_ids": ["1"], "max_results": 50001})
@example({"experiment_ids": ["1"], "max_results": 100.0})
@example({"experiment_ids": ["1"], "filter": None})
@example({"experiment_ids": ["1"], "run_view_type": ["ALL"]})
@example({"experiment_ids": ["1"], "run_view_type": {"a": 1}, "order_by": [{"x": 1}]})
def test_a_plain_search_body_is_read_as_mlflow_reads_it(body):
    ours = plain_search(body)
    if ours is not None:
        assert ours == mlflow_reads_search(body)


def test_the_bodies_mlflows_client_sends_are_plain():
    sent = json.loads(
        message_to_json(
            SearchRuns(
                experiment_ids=["1", "2"],
                filter="metrics.a > 0",
                run_view_type=ViewType.to_proto(ViewType.ALL),
                max_results=100,
                order_by=["start_time DESC"],
                page_token="MTAw",
            )
        )
    )
    assert plain_search(sent) == (["1", "2"], "metrics.a > 0", 3, 100, ["start_time DESC"], "MTAw")
    assert plain_search(json.loads(message_to_json(SearchRuns(experiment_ids=["1"])))) == (
        ["1"],
        "",
        1,
        1000,
        [],
        None,
    )


def mlflow_reads_history(query: str) -> tuple | None:
    with oracle.test_request_context("/?" + query, method="GET"):
        try:
            message = handlers._get_request_message(GetMetricHistory(), schema=HISTORY_SCHEMA)
        except Exception:
            return None
    max_results = message.max_results if message.HasField("max_results") else None
    if max_results is not None and max_results <= 0:
        return None
    return message.run_id or message.run_uuid, message.metric_key, max_results, message.page_token or None


history_values = st.one_of(
    st.sampled_from(["", "r1", "loss", "1", "10", "0", "-1", "2147483647", "2147483648", "1e3", " 5", "05", "é"]),
    st.text(max_size=5),
)
history_queries = st.dictionaries(
    st.sampled_from(["run_id", "run_uuid", "metric_key", "max_results", "page_token", "other"]),
    st.lists(history_values, min_size=1, max_size=2),
)


@settings(max_examples=800, deadline=None)
@given(history_queries)
@example({"run_id": ["r"], "run_uuid": ["r"], "metric_key": ["loss"]})
@example({"run_id": ["r"], "metric_key": ["loss"], "max_results": ["05"]})
def test_a_plain_history_query_is_read_as_mlflow_reads_it(args):
    query = urllib.parse.urlencode(args, doseq=True)
    with oracle.test_request_context("/?" + query, method="GET"):
        ours = plain_history(flask.request.args.to_dict(flat=False))
    if ours is not None:
        assert ours == mlflow_reads_history(query)


def test_the_query_mlflows_client_sends_is_plain():
    sent = json.loads(message_to_json(GetMetricHistory(run_uuid="r1", run_id="r1", metric_key="loss")))
    assert plain_history({k: [v] for k, v in sent.items()}) == ("r1", "loss", None, None)


# -- over a real lake: the installed view against MLflow's handler it replaced -------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """MLflow's server app over a fresh lake, as ``runlake server`` builds it, in this process."""
    from mlflow.server.constants import (
        ARTIFACT_ROOT_ENV_VAR,
        ARTIFACTS_DESTINATION_ENV_VAR,
        BACKEND_STORE_URI_ENV_VAR,
        SERVE_ARTIFACTS_ENV_VAR,
    )

    from runlake.mlflow_store.server import build_app

    lake = str(tmp_path_factory.mktemp("views") / "lake")
    with pytest.MonkeyPatch.context() as patch:
        for name in (ARTIFACT_ROOT_ENV_VAR, ARTIFACTS_DESTINATION_ENV_VAR, BACKEND_STORE_URI_ENV_VAR):
            patch.setenv(name, "")
        patch.setenv(SERVE_ARTIFACTS_ENV_VAR, "")
        patch.setattr(handlers, "_tracking_store", None)
        build_app(lake)
        from mlflow.server import app as flask_app

        yield flask_app, handlers._get_tracking_store()


def both_views(flask_app, path: str, method: str, fast: bool = False, **request) -> tuple:
    """(status, JSON) from the installed view and from MLflow's handler, for one request;
    with ``fast``, the view must have answered itself (compact JSON: MLflow's is indented)."""
    view = flask_app.view_functions[flask_app.url_map.bind("").match(path, method)[0]]
    assert getattr(view, "mlflow_view", None) is not None, "the fast view is not installed"
    answers = []
    for handler in (view, view.mlflow_view):
        with flask_app.test_request_context(path, method=method, **request):
            response = handler()
            answers.append((response.status_code, json.loads(response.get_data())))
            if fast and handler is view:
                assert b"\n" not in response.get_data(), "MLflow's handler answered, not the view"
    return answers[0], answers[1]


def sorted_runs(payload: dict) -> dict:
    """Params, tags and metrics in key order (the store reads them in no fixed order)."""
    for run in payload.get("runs", []):
        for field in ("params", "tags", "metrics"):
            if field in run["data"]:
                run["data"][field].sort(key=lambda item: json.dumps(item, sort_keys=True))
    return payload


run_contents = st.lists(
    st.fixed_dictionaries(
        {
            "params": st.dictionaries(st.sampled_from(["lr", "é", "a b", "x" * 200]), TEXT, max_size=3),
            "tags": st.dictionaries(st.sampled_from(["t", "note", "ü"]), TEXT, max_size=2),
            "metrics": st.lists(st.tuples(st.sampled_from(["loss", "acc", "é"]), DOUBLES, INT64), max_size=4),
            "deleted": st.booleans(),
            "finished": st.booleans(),
        }
    ),
    min_size=0,
    max_size=6,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=run_contents, max_results=st.integers(1, 4), view=st.sampled_from(["ACTIVE_ONLY", "DELETED_ONLY", "ALL"]))
def test_the_search_view_answers_as_mlflows_handler_over_a_lake(app, runs, max_results, view):
    from mlflow.entities import Param, RunTag

    flask_app, store = app
    experiment_id = store.create_experiment(f"views-{len(store.search_experiments(view_type=3))}")
    for i, content in enumerate(runs):
        run_id = store.create_run(experiment_id, "u", 1000 + i, [], f"run-{i}").info.run_id
        store.log_batch(
            run_id,
            metrics=[Metric(k, v, 5, s) for k, v, s in content["metrics"]],
            params=[Param(k, v) for k, v in content["params"].items()],
            tags=[RunTag(k, v) for k, v in content["tags"].items()],
        )
        if content["finished"]:
            store.update_run_info(run_id, "FINISHED", 2000 + i, None)
        if content["deleted"]:
            store.delete_run(run_id)
    token = None
    while True:
        body = {"experiment_ids": [experiment_id], "max_results": max_results, "run_view_type": view}
        if token:
            body["page_token"] = token
        ours, theirs = both_views(flask_app, "/api/2.0/mlflow/runs/search", "POST", fast=True, json=body)
        assert ours[0] == theirs[0] == 200
        assert sorted_runs(ours[1]) == sorted_runs(theirs[1])
        token = ours[1].get("next_page_token")
        if not token:
            break


def test_the_views_answer_errors_and_odd_requests_as_mlflow(app):
    flask_app, store = app
    experiment_id = store.create_experiment("views-errors")
    run_id = store.create_run(experiment_id, "u", 1, [], "r").info.run_id
    store.log_batch(run_id, metrics=[Metric("loss", 0.5, 1, s) for s in range(5)], params=[], tags=[])
    search = "/api/2.0/mlflow/runs/search"
    for body in (
        {"experiment_ids": [experiment_id], "filter": "metrics.loss >"},  # a store error
        {"experiment_ids": [experiment_id], "page_token": "not a token"},
        {"experiment_ids": [experiment_id], "max_results": 0},  # MLflow's handler's own answer
        {"experiment_ids": [experiment_id], "experimentIds": ["1"]},
        {
            "experiment_ids": [experiment_id],
            "order_by": ["metrics.loss DESC"],
            "filter": "params.x = '1' OR metrics.loss > 0",
        },
    ):
        ours, theirs = both_views(flask_app, search, "POST", json=body)
        assert ours == theirs, body
    history = "/api/2.0/mlflow/metrics/get-history"
    for query in (
        f"run_id={run_id}&run_uuid={run_id}&metric_key=loss",
        f"run_id={run_id}&metric_key=loss&max_results=2",
        f"run_id={run_id}&metric_key=loss&max_results=2&page_token=Mg%3D%3D",
        f"run_id={run_id}&metric_key=missing",
        f"run_id={'0' * 32}&metric_key=loss",  # no such run
        f"run_id={run_id}&metric_key=loss&max_results=0",
        f"run_id={run_id}&metric_key=loss&page_token=garbage",
        f"run_uuid={run_id}&metric_key=loss",
    ):
        ours, theirs = both_views(flask_app, history, "GET", query_string=query)
        assert ours == theirs, query
    # The page token the view hands out pages as MLflow's handler's does.
    ours, _ = both_views(flask_app, history, "GET", query_string=f"run_id={run_id}&metric_key=loss&max_results=2")
    assert [m["step"] for m in ours[1]["metrics"]] == [0, 1] and ours[1]["next_page_token"]


# -- through a real ``runlake server`` with MLflow's client --------------------------------------
def _same_runs(a, b) -> None:
    def plain(run):
        data = run.data
        metrics = {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in data.metrics.items()}
        # The server shows artifacts through its proxy (mlflow-artifacts:/), the plugin as files.
        info = {k: v for k, v in dict(run.info).items() if k != "artifact_uri"}
        return info, run.info.artifact_uri.rsplit("/", 2)[-2:], metrics, data.params, data.tags

    assert [plain(r) for r in a] == [plain(r) for r in b]


def test_mlflows_client_reads_through_the_views_what_the_plugin_reads(server):
    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag

    from tests.mlflow_compat.test_server import _eventually, _request

    lake, srv = server
    remote, local = MlflowClient(srv.url), MlflowClient(f"runlake://{lake}")
    experiment_id = remote.create_experiment("read-views")
    run_ids = []
    values = [math.nan, math.inf, -math.inf, -0.0, 1e-300, 0.5]
    for i, value in enumerate(values):
        run = remote.create_run(experiment_id, start_time=1000 + i, run_name=f"r-{i}-é")
        run_ids.append(run.info.run_id)
        remote.log_batch(
            run.info.run_id,
            metrics=[Metric("score", value, 7, 0), Metric("loss", 1 / (i + 1), 8, 3)],
            params=[Param("lr", str(10**-i)), Param("note", "ü" * 300), Param("empty", "")],
            tags=[RunTag("t", f"日本{i}")],
        )
    remote.log_batch(run_ids[0], metrics=[Metric("curve", s / 3, 100 + s, s) for s in range(1200)])
    remote.set_terminated(run_ids[1], "FAILED", end_time=5000)
    remote.delete_run(run_ids[2])

    def pages(client, **kwargs):
        found, token = [], None
        while True:
            page = client.search_runs([experiment_id], max_results=4, page_token=token, **kwargs)
            found.extend(page)
            token = page.token
            if not token:
                return found

    def check():
        for kwargs in (
            {},
            {"run_view_type": ViewType.ALL, "order_by": ["metrics.score DESC", "params.lr"]},
            {"run_view_type": ViewType.DELETED_ONLY},
            {"filter_string": "metrics.loss < 0.4 OR tags.t = '日本0'"},
        ):
            over_http, in_process = pages(remote, **kwargs), pages(local, **kwargs)
            assert over_http, kwargs
            _same_runs(over_http, in_process)
        assert len(pages(remote, run_view_type=ViewType.ALL)) == len(values)

    _eventually(check)
    curve = remote.get_metric_history(run_ids[0], "curve")
    assert [(m.step, m.value, m.timestamp) for m in curve] == [(s, s / 3, 100 + s) for s in range(1200)]
    assert curve == local.get_metric_history(run_ids[0], "curve")
    score = remote.get_metric_history(run_ids[0], "score")
    assert len(score) == 1 and math.isnan(score[0].value)
    assert [m.value for m in remote.get_metric_history(run_ids[1], "score")] == [math.inf]

    # Both API prefixes are served by the views (compact JSON; MLflow's own is indented).
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        body = json.dumps({"experiment_ids": [experiment_id], "max_results": 2}).encode()
        status, payload = _request(f"{srv.url}{prefix}/runs/search", "POST", body, {"Content-Type": "application/json"})
        assert status == 200 and b"\n" not in payload and len(json.loads(payload)["runs"]) == 2
        query = urllib.parse.urlencode({"run_id": run_ids[0], "metric_key": "score"})
        status, payload = _request(f"{srv.url}{prefix}/metrics/get-history?{query}")
        assert status == 200 and b"\n" not in payload
        assert json.loads(payload)["metrics"][0]["value"] == "NaN"
    # Errors stay MLflow's.
    with pytest.raises(mlflow_exception()) as info:
        remote.search_runs([experiment_id], filter_string="metrics.loss <")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(mlflow_exception()) as info:
        remote.get_metric_history("0" * 32, "loss")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def mlflow_exception():
    from mlflow.exceptions import MlflowException

    return MlflowException


def test_the_views_run_inside_mlflows_hooks_and_the_servers_credentials(tmp_path):
    from tests.mlflow_compat.server_process import running_server
    from tests.mlflow_compat.test_server import _request

    creds = tmp_path / "credentials"
    creds.write_text("token s3cret-token\n")
    with running_server(str(tmp_path / "lake"), "--credentials-file", str(creds)) as srv:
        body = json.dumps({"experiment_ids": ["0"]}).encode()
        json_type = {"Content-Type": "application/json"}
        search, history = f"{srv.url}/api/2.0/mlflow/runs/search", f"{srv.url}/api/2.0/mlflow/metrics/get-history"
        query = "?run_id=" + "0" * 32 + "&metric_key=loss"
        for url, method, data in ((search, "POST", body), (history + query, "GET", None)):
            status, payload = _request(url, method, data, json_type)
            assert (status, json.loads(payload)["error_code"]) == (401, "UNAUTHENTICATED")
            authed = {**json_type, "Authorization": "Bearer s3cret-token"}
            # MLflow's host check runs around the views as around its own handlers.
            status, _ = _request(url, method, data, {**authed, "Host": "evil.example.com"})
            assert status == 403
        status, payload = _request(search, "POST", body, {**json_type, "Authorization": "Bearer s3cret-token"})
        assert (status, payload) == (200, b"{}")
        status, payload = _request(history + query, "GET", None, {"Authorization": "Bearer s3cret-token"})
        assert (status, json.loads(payload)["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_the_model_registry_is_refused_alike_through_the_plugin_and_the_server(server, tmp_path):
    """MLflow's own server answers a registry call on a backend without a registry store with
    INVALID_PARAMETER_VALUE ("Model registry functionality is unavailable"); the plugin answers
    the same in process, where MLflow's client alone would say FEATURE_DISABLED."""
    from mlflow import MlflowClient

    lake, srv = server
    errors = []
    for uri in (f"runlake://{lake}", srv.url):
        with pytest.raises(mlflow_exception()) as info:
            MlflowClient(uri).create_registered_model("m")
        errors.append(info.value)
        with pytest.raises(mlflow_exception()) as info:
            MlflowClient(uri).search_registered_models()
        errors.append(info.value)
    assert [e.error_code for e in errors] == ["INVALID_PARAMETER_VALUE"] * 4
    assert all("Model registry functionality is unavailable" in e.message for e in errors)
    # A registry of its own beside the lake still works.
    client = MlflowClient(f"runlake://{lake}", registry_uri=f"sqlite:///{tmp_path}/registry.db")
    assert client.create_registered_model("m").name == "m"


def test_in_artifacts_only_mode_mlflows_handlers_answer(app, monkeypatch):
    from mlflow.server import ARTIFACTS_ONLY_ENV_VAR

    flask_app, _ = app
    monkeypatch.setenv(ARTIFACTS_ONLY_ENV_VAR, "true")
    for path, method, request in (
        ("/api/2.0/mlflow/runs/search", "POST", {"json": {"experiment_ids": ["0"]}}),
        ("/api/2.0/mlflow/metrics/get-history", "GET", {"query_string": "run_id=r&metric_key=k"}),
    ):
        view = flask_app.view_functions[flask_app.url_map.bind("").match(path, method)[0]]
        with flask_app.test_request_context(path, method=method, **request):
            response = view()
        assert response.status_code == 503 and b"artifacts-only" in response.get_data()


def test_a_search_naming_datasets_reaches_the_store_through_mlflows_handler(server):
    # The fast view reads plain lake searches; a `dataset.*` clause is searched by the store over
    # the runs' dataset documents, so MLflow's handler takes it (the view would refuse it).
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput

    from tests.mlflow_compat.test_server import _request

    _lake, srv = server
    client = MlflowClient(srv.url)
    experiment_id = client.create_experiment("datasets-over-http")
    first = client.create_run(experiment_id, start_time=1).info.run_id
    second = client.create_run(experiment_id, start_time=2).info.run_id
    client.log_inputs(first, [DatasetInput(Dataset("iris", "d2", "local", "/data/iris"), [])])
    client.log_metric(second, "acc", 0.5)

    def ids(filter_string):
        return [r.info.run_id for r in client.search_runs([experiment_id], filter_string)]

    assert ids("dataset.name = 'iris'") == [first]
    assert ids("dataset.digest = 'nothing'") == []
    assert ids("metrics.acc > 0.1") == [second]
    # MLflow's own parser raises a ValueError on this one: a 400 with runlake's message, not a 500.
    body = json.dumps({"experiment_ids": [experiment_id], "filter": "dataset.name IN (iris)"}).encode()
    status, answer = _request(
        srv.url + "/api/2.0/mlflow/runs/search", "POST", body, {"Content-Type": "application/json"}
    )
    assert status == 400 and json.loads(answer)["error_code"] == "INVALID_PARAMETER_VALUE"


def test_the_fast_views_take_the_guards_parse_of_a_body(app, monkeypatch):
    """``runlake server``'s guard parses every API body (a malformed one gets a 400): the fast
    views answer from that parse instead of parsing a 500-metric batch again, and parse the body
    themselves when no guard ran."""
    from werkzeug.test import Client

    from runlake.mlflow_store.server import Guard

    flask_app, store = app
    experiment_id = store.create_experiment("views-guard")
    run_id = store.create_run(experiment_id, "u", 1, [], "guarded").info.run_id
    parses = []
    real = flask.Request.get_json
    monkeypatch.setattr(flask.Request, "get_json", lambda self, *a, **k: parses.append(1) or real(self, *a, **k))
    points = [{"key": "loss", "value": 1 / (s + 1), "timestamp": 7, "step": s} for s in range(500)]
    guarded = Client(Guard(flask_app.wsgi_app))
    response = guarded.post("/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": points})
    assert (response.status_code, response.data) == (200, b"{}")
    response = guarded.post("/api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment_id]})
    assert response.status_code == 200 and b"\n" not in response.data  # the fast view answered
    assert [run["info"]["run_id"] for run in response.json["runs"]] == [run_id]
    assert parses == []
    assert store.metric_history_columns(run_id, "loss")[0][0] == list(range(500))

    unguarded = flask_app.test_client()
    response = unguarded.post("/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": points[:1]})
    assert (response.status_code, response.data) == (200, b"{}")
    assert parses == [1]

    # As get_json(silent=True): no body unless the request says it is JSON.
    from runlake.mlflow_store import fastpath

    for content_type, expected in (("text/plain", None), ("application/json", {"a": 1})):
        with flask_app.test_request_context(
            "/api/2.0/mlflow/runs/search",
            method="POST",
            data=b'{"a": 1}',
            content_type=content_type,
            environ_overrides={fastpath.PARSED_BODY: {"a": 1}},
        ):
            assert fastpath.request_json() == expected
    assert parses == [1]
