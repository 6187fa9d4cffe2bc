"""A faster ``runs/log-batch`` inside MLflow's server: plain JSON in, the same store call out.

MLflow's handler turns a log-batch body into a protobuf message field by field (``ParseDict``)
and then into entities: about 10 ms of a 500-metric batch, most of the server's time for the
call training clients make most. This view takes the plain bodies MLflow's clients send (keys,
numbers, strings; nothing else) straight to the store's ``log_plain_batch``: the same checks and
writes as ``log_batch``, from the points as tuples (Metric entities are built only to word an
error, as MLflow would).
Anything else - a missing or odd field, a type MLflow would coerce or reject, a metric that
names a model or dataset - goes to MLflow's own handler, so errors and edge cases stay MLflow's.

The view replaces MLflow's in Flask's view table, so MLflow's request hooks (host validation,
cross-origin checks, security headers) run around it as they do around every other endpoint.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

_METRIC_FIELDS = frozenset({"key", "value", "timestamp", "step"})
_PAIR_FIELDS = frozenset({"key", "value"})
_BATCH_FIELDS = frozenset({"run_id", "metrics", "params", "tags"})
# Protobuf's JSON spelling of the non-finite doubles (MLflow's client sends NaN this way).
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


INT64 = range(-(2**63), 2**63)  # protobuf's int64, which MLflow's messages use
# Where ``runlake server``'s guard leaves the JSON object it parsed from an API request's body
# (it parses every one, to answer malformed JSON with a 400): the fast views take it from there
# rather than parse a 500-metric body a second time.
PARSED_BODY = "runlake.parsed_json_body"


_INTEGER_TEXT = re.compile(r"-?[0-9]{1,19}")


def _integer(value: Any) -> int | None:
    if type(value) is str and _INTEGER_TEXT.fullmatch(value):
        value = int(value)  # int64 in proto JSON may be a string
    return value if type(value) is int and value in INT64 else None


def _number(value: Any) -> float | None:
    # A bare NaN/Infinity in the JSON text parses to a float that MLflow's parser rejects.
    if (type(value) is float and math.isfinite(value)) or type(value) is int:
        return float(value)
    if type(value) is str:
        return _SPECIAL_FLOATS.get(value)
    return None


def plain_batch(
    body: Any,
) -> tuple[str, list[tuple[str, float, int, int]], list[tuple[str, str]], list[tuple[str, str]]] | None:
    """``(run_id, metrics, params, tags)`` of a plain log-batch body, or None for MLflow's handler.

    Metrics are ``(key, value, timestamp, step)``; params and tags ``(key, value)``. Plain means:
    only the fields MLflow's client sends, every required one present and non-empty, every value
    of the JSON type it has in MLflow's own client requests.
    """
    if type(body) is not dict or not body.keys() <= _BATCH_FIELDS:
        return None
    run_id = body.get("run_id")
    if type(run_id) is not str or not run_id:
        return None
    if any(type(body.get(field, [])) is not list for field in ("metrics", "params", "tags")):
        return None
    metrics: list[tuple[str, float, int, int]] = []
    finite, low, high = math.isfinite, INT64.start, INT64.stop
    for item in body.get("metrics", []):
        if type(item) is not dict or not item.keys() <= _METRIC_FIELDS:
            return None
        key, value, timestamp, step = item.get("key"), item.get("value"), item.get("timestamp"), item.get("step", 0)
        # What MLflow's client sends (a finite float, int64 numbers) is taken as it is, inline:
        # the helpers' calls were a third of a 500-metric batch's time. The rest goes through them.
        if type(value) is not float or not finite(value):
            value = _number(value)
        if type(timestamp) is not int or not low <= timestamp < high:
            timestamp = _integer(timestamp)
        if type(step) is not int or not low <= step < high:
            step = _integer(step)
        if type(key) is not str or not key or value is None or timestamp is None or step is None:
            return None
        metrics.append((key, value, timestamp, step))
    pairs: list[list[tuple[str, str]]] = []
    for field in ("params", "tags"):
        found: list[tuple[str, str]] = []
        for item in body.get(field, []):
            if type(item) is not dict or not item.keys() <= _PAIR_FIELDS:
                return None
            key, value = item.get("key"), item.get("value", "")
            if type(key) is not str or not key or type(value) is not str:
                return None
            found.append((key, value))
        pairs.append(found)
    return run_id, metrics, pairs[0], pairs[1]


def request_json() -> Any:
    """The current request's JSON body, as ``request.get_json(silent=True)`` reads it: None
    unless the request says its body is JSON.

    The guard's parse when there is one: it decoded the same bytes as strict UTF-8, and any body
    it could not parse was answered with a 400 before reaching a view, so both parses agree.
    """
    from flask import request

    if not request.is_json:
        return None
    if PARSED_BODY in request.environ:
        return request.environ[PARSED_BODY]
    return request.get_json(silent=True)


def install(flask_app: Any) -> None:
    """Serve ``runs/log-batch`` (both API prefixes) through :func:`plain_batch` first."""
    from flask import Response, request
    from mlflow.entities import Param, RunTag
    from mlflow.server import handlers

    from runlake.mlflow_store.store import RunlakeStore

    endpoints = {rule.endpoint for rule in flask_app.url_map.iter_rules() if rule.rule.endswith("/runs/log-batch")}
    for endpoint in endpoints:
        mlflow_view: Callable[[], Any] = flask_app.view_functions[endpoint]
        if getattr(mlflow_view, "runlake_fast_path", False):
            continue  # installed already (a second app built in this process)

        @handlers.catch_mlflow_exception
        def log_batch(mlflow_view: Callable[[], Any] = mlflow_view) -> Any:
            parsed = None
            # MLflow's handler takes only application/json (Flask would also parse other
            # JSON types); a body that is not plain in any way is MLflow's to answer.
            if request.method == "POST" and request.mimetype == "application/json":
                try:
                    parsed = plain_batch(request_json())
                except Exception:
                    parsed = None
            store = handlers._get_tracking_store()
            if parsed is None or not isinstance(store, RunlakeStore):
                return mlflow_view()
            run_id, metrics, params, tags = parsed
            store.log_plain_batch(run_id, metrics, [Param(k, v) for k, v in params], [RunTag(k, v) for k, v in tags])
            return Response("{}", mimetype="application/json")

        log_batch.runlake_fast_path = True
        flask_app.view_functions[endpoint] = log_batch
