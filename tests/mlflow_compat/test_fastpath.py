"""The server's log-batch fast path accepts only what MLflow's handler accepts, parsed the same way."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mlflow.entities import Metric, Param, RunTag
from mlflow.protos.service_pb2 import LogBatch
from mlflow.utils.proto_json_utils import parse_dict

from runlake.lake import Lake
from runlake.mlflow_store.fastpath import plain_batch
from tests.mlflow_compat.test_server import _request


def mlflow_parse(body: dict) -> tuple | None:
    """What MLflow's ``_log_batch`` handler makes of a body (None where it answers an error)."""
    try:
        message = LogBatch()
        parse_dict(body, message)
    except Exception:
        return None
    for name, required in (("metrics", ("key", "value", "timestamp")), ("params", ("key",)), ("tags", ("key",))):
        for item in body.get(name) or []:
            if any(item.get(field) in (None, "") for field in required):
                return None
    if not message.run_id:
        return None
    metrics = [Metric.from_proto(m) for m in message.metrics]
    return (
        message.run_id,
        [(m.key, m.value, m.timestamp, m.step) for m in metrics],
        [(p.key, p.value) for p in map(Param.from_proto, message.params)],
        [(t.key, t.value) for t in map(RunTag.from_proto, message.tags)],
    )


def same(a: tuple, b: tuple) -> bool:
    def norm(x):
        return "nan" if isinstance(x, float) and math.isnan(x) else x

    return json.dumps(a, default=str, sort_keys=True) == json.dumps(b, default=str, sort_keys=True) or (
        a[0] == b[0] and a[2:] == b[2:] and [tuple(map(norm, m)) for m in a[1]] == [tuple(map(norm, m)) for m in b[1]]
    )


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True),
    st.sampled_from(
        ["", "NaN", "Infinity", "-Infinity", "nan", "12", "-3", " 4", "1.5", "５", "9223372036854775808", "--5", "-"]
    ),
    st.text(max_size=6),
)


@st.composite
def nearly(draw, valid: dict, fields: list[str]) -> dict:
    """A valid item, often with one field changed to any scalar, dropped, or one field added."""
    item = dict(valid)
    change = draw(st.sampled_from(["none", "replace", "drop", "add"]))
    if change == "replace":
        item[draw(st.sampled_from(sorted(item)))] = draw(scalars)
    elif change == "drop":
        del item[draw(st.sampled_from(sorted(item)))]
    elif change == "add":
        item[draw(st.sampled_from(fields))] = draw(scalars)
    return item


valid_metric = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["loss", "acc"]),
        "value": st.one_of(st.floats(), st.integers(-10, 10), st.sampled_from(["NaN", "Infinity", "-Infinity"])),
        "timestamp": st.one_of(st.integers(0, 2**40), st.integers(0, 2**40).map(str)),
    },
    optional={"step": st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-5, 5).map(str))},
)
valid_pair = st.fixed_dictionaries({"key": st.sampled_from(["lr", "seed"]), "value": st.text(max_size=4)})
metric = valid_metric.flatmap(lambda m: nearly(m, ["model_id", "dataset_name", "step", "run_id"]))
pair = valid_pair.flatmap(lambda p: nearly(p, ["extra", "value"]))
bodies = st.fixed_dictionaries(
    {"run_id": st.just("r" * 32)},
    optional={
        "metrics": st.lists(metric, max_size=3),
        "params": st.lists(pair, max_size=2),
        "tags": st.lists(pair, max_size=2),
    },
).flatmap(lambda body: nearly(body, ["other", "metrics", "params", "tags", "run_id"]))


@settings(max_examples=1500, deadline=None)
@given(bodies)
@example({"run_id": "r" * 32, "metrics": [{"key": "", "value": 1.0, "timestamp": 1}]})
@example({"run_id": "r" * 32, "metrics": [{"key": "k", "value": 1.0, "timestamp": " 1"}]})
@example({"run_id": "r" * 32, "metrics": [{"key": "k", "value": 1.0, "timestamp": "１"}]})
@example({"run_id": "r" * 32, "metrics": [{"key": "k", "value": float("nan"), "timestamp": 1}]})
@example({"run_id": "r" * 32, "metrics": [{"key": "k", "value": True, "timestamp": 1}]})
@example({"run_id": "r" * 32, "metrics": [{"key": "k", "value": 1.0, "timestamp": 2**63}]})
@example({"run_id": "r" * 32, "params": [{"key": "", "value": "x"}]})
@example({"run_id": "", "params": [{"key": "a", "value": "x"}]})
@example({"run_id": "r" * 32, "metrics": [{"key": "k", "value": 1.0, "timestamp": 1, "step": "--5"}]})
@example({"run_id": "r" * 32, "metrics": [{"key": "k", "value": 1.0, "timestamp": "1-"}]})
def test_the_fast_path_never_accepts_or_reads_a_body_differently_from_mlflow(body):
    ours = plain_batch(body)
    if ours is not None:
        theirs = mlflow_parse(body)
        assert theirs is not None, "the fast path accepted a body MLflow's handler rejects"
        assert same(ours, theirs)


@pytest.mark.parametrize(
    "body",
    [
        {"run_id": "r" * 32, "metrics": [{"key": "loss", "value": 0.5, "timestamp": 10, "step": 3}]},
        {"run_id": "r" * 32, "metrics": [{"key": "loss", "value": "NaN", "timestamp": "10"}]},
        {"run_id": "r" * 32, "metrics": [{"key": "loss", "value": -1, "timestamp": 10, "step": "-2"}]},
        {"run_id": "r" * 32, "params": [{"key": "lr", "value": "0.1"}], "tags": [{"key": "t", "value": ""}]},
    ],
)
def test_plain_bodies_the_mlflow_client_sends_take_the_fast_path(body):
    ours = plain_batch(body)
    assert ours is not None and same(ours, mlflow_parse(body))


def test_the_server_logs_plain_batches_and_keeps_mlflow_errors_and_checks(server):
    lake_dir, srv = server
    api = f"{srv.url}/api/2.0/mlflow"
    headers = {"Content-Type": "application/json"}

    def post(path: str, body: dict, **extra: str):
        return _request(f"{api}/{path}", "POST", json.dumps(body).encode(), {**headers, **extra})

    status, payload = post("experiments/create", {"name": "fast-path"})
    experiment_id = json.loads(payload)["experiment_id"]
    status, payload = post("runs/create", {"experiment_id": experiment_id, "start_time": 1})
    run_id = json.loads(payload)["run"]["info"]["run_id"]
    points = [{"key": "loss", "value": 1 / (s + 1), "timestamp": 1000 + s, "step": s} for s in range(500)]
    points.append({"key": "odd", "value": "NaN", "timestamp": "5"})
    body = {"run_id": run_id, "metrics": points, "params": [{"key": "lr", "value": "0.1"}]}
    assert post("runs/log-batch", body) == (200, b"{}")

    # What MLflow rejects still gets MLflow's answer (from its own handler).
    status, payload = post("runs/log-batch", {"run_id": run_id, "metrics": [{"key": "x", "value": 1.0}]})
    assert status == 400 and json.loads(payload)["error_code"] == "INVALID_PARAMETER_VALUE"
    status, payload = post("runs/log-batch", {"run_id": "0" * 32, "metrics": points[:1]})
    assert status == 404 and json.loads(payload)["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # A malformed int64 string and a JSON type MLflow does not take get MLflow's own answers
    # (whatever its handler makes of them), never a 500 from the fast path.
    bad_step = {"run_id": run_id, "metrics": [{"key": "bad", "value": 1.0, "timestamp": 1, "step": "--5"}]}
    status, _ = post("runs/log-batch", bad_step)
    assert status < 500
    status, payload = post("runs/log-batch", body, **{"Content-Type": "application/vnd.a+json"})
    assert status == 400 and "Content-Type" in json.loads(payload)["message"]
    # MLflow's request hooks run around the fast path too: a foreign Host is refused.
    status, _ = post("runs/log-batch", body, Host="evil.example.com")
    assert status == 403

    def check():
        lake = Lake(lake_dir)
        loss = lake.metric_history(run_id, "loss")
        assert loss["step"].tolist() == list(range(500))
        assert loss["value"].tolist() == [1 / (s + 1) for s in range(500)]
        odd = lake.metric_history(run_id, "odd")
        assert odd["step"].tolist() == [0] and math.isnan(odd["value"].iloc[0]) and odd["timestamp"].tolist() == [5]
        assert lake.get_run(run_id).params == {"lr": "0.1"}

    from tests.mlflow_compat.test_server import _eventually

    _eventually(check)
