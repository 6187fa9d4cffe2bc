"""A faster ``runs/log-batch`` inside MLflow's server: plain JSON in, the same store call out.

MLflow's handler turns a log-batch body into a protobuf message field by field (``ParseDict``)
and then into entities: about 10 ms of a 500-metric batch, most of the server's time for the
call training clients make most. This view takes the plain bodies MLflow's clients send (keys,
numbers, strings; nothing else) straight to the same ``store.log_batch`` with the same entities.
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


_INT64 = range(-(2**63), 2**63)


_INTEGER_TEXT = re.compile(r"-?[0-9]{1,19}")


def _integer(value: Any) -> int | None:
    if type(value) is str and _INTEGER_TEXT.fullmatch(value):
        value = int(value)  # int64 in proto JSON may be a string
    return value if type(value) is int and value in _INT64 else None


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
    for item in body.get("metrics", []):
        if type(item) is not dict or not item.keys() <= _METRIC_FIELDS:
            return None
        key, value = item.get("key"), _number(item.get("value"))
        timestamp, step = _integer(item.get("timestamp")), _integer(item.get("step", 0))
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


def install(flask_app: Any) -> None:
    """Serve ``runs/log-batch`` (both API prefixes) through :func:`plain_batch` first."""
    from flask import Response, request
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.server import handlers

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
                    parsed = plain_batch(request.get_json(silent=True))
                except Exception:
                    parsed = None
            if parsed is None:
                return mlflow_view()
            run_id, metrics, params, tags = parsed
            handlers._get_tracking_store().log_batch(
                run_id=run_id,
                metrics=[Metric(k, v, t, s) for k, v, t, s in metrics],
                params=[Param(k, v) for k, v in params],
                tags=[RunTag(k, v) for k, v in tags],
            )
            return Response("{}", mimetype="application/json")

        log_batch.runlake_fast_path = True  # type: ignore[attr-defined]
        flask_app.view_functions[endpoint] = log_batch
