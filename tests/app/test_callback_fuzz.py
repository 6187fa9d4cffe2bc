"""Every registered callback answers wrong-typed bodies with a clean 4xx (or an ordinary answer), never 500.

The bodies are what a browser (or anyone) can POST to ``/_dash-update-component``: each
callback's inputs and states set to values of the wrong type, one at a time and all at once,
plus bodies Dash cannot dispatch at all. The app runs on a real demo lake through Flask's test
client.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

HOST = {"Host": "localhost"}
WRONG = ["abc", 5, -1, 2**70, 1.5e308, True, None, {"x": 1}, ["x", 2], "x" * 10_000, "'\"\u202e\x00"]


def _concrete(component_id: Any) -> Any:
    """A pattern-matching id with its wildcards filled (the component a forged body names)."""
    if isinstance(component_id, dict):
        return {k: ("kZm9v" if not isinstance(v, str) else v) for k, v in component_id.items()}
    return component_id


def _wildcard(component_id: Any) -> bool:
    return isinstance(component_id, dict) and any(not isinstance(v, str) for v in component_id.values())


def _entry(dep: dict[str, Any], value: Any) -> Any:
    item = {"id": _concrete(dep["id"]), "property": dep["property"], "value": value}
    return [item] if _wildcard(dep["id"]) else item


def _outputs(spec: Any) -> Any:
    items = spec if isinstance(spec, list) else [spec]
    out = []
    for output in items:
        entry = {"id": _concrete(output.component_id), "property": output.component_property}
        out.append([entry] if _wildcard(output.component_id) else entry)
    return out if isinstance(spec, list) else out[0]


def _bodies(app: Any) -> list[tuple[str, dict[str, Any]]]:
    bodies = []
    for name, callback in app.callback_map.items():
        if callback.get("clientside_function") or callback.get("callback") is None:
            continue
        inputs, states = callback["inputs"], callback["state"]
        changed = [
            f"{json.dumps(_concrete(i['id'])) if isinstance(i['id'], dict) else i['id']}.{i['property']}"
            for i in inputs
        ]
        base = {"output": name, "outputs": _outputs(callback["output"]), "changedPropIds": changed[:1]}
        for value in WRONG:
            # Every input and state wrong at once...
            bodies.append(
                (
                    f"{name} all={value!r:.20}",
                    {
                        **base,
                        "inputs": [_entry(i, value) for i in inputs],
                        "state": [_entry(s, value) for s in states],
                    },
                )
            )
        for position, _dep in enumerate(inputs + states):
            # ...and one at a time, the others empty, as a browser sends on a page's first load.
            deps = inputs + states
            values = [WRONG[(position + k) % len(WRONG)] if k == position else None for k in range(len(deps))]
            bodies.append(
                (
                    f"{name} #{position}",
                    {
                        **base,
                        "inputs": [_entry(d, v) for d, v in zip(inputs, values[: len(inputs)])],
                        "state": [_entry(d, v) for d, v in zip(states, values[len(inputs) :])],
                    },
                )
            )
    return bodies


@pytest.fixture
def client(app):
    client = app.server.test_client()
    assert client.get("/", headers=HOST).status_code == 200
    return client


def test_rl_f01_every_callback_survives_wrong_typed_bodies(app, client):
    bodies = _bodies(app)
    assert len({name.split(" ")[0] for name, _ in bodies}) >= 25  # every server-side callback
    failures = []
    statuses = set()
    for name, body in bodies:
        response = client.post("/_dash-update-component", json=body, headers=HOST)
        statuses.add(response.status_code)
        if response.status_code >= 500:
            failures.append((name, response.status_code, response.get_data(as_text=True)[:200]))
    assert not failures, failures[:10]
    assert 400 in statuses  # the wrong types were noticed, not just ignored


@pytest.mark.parametrize(
    "request_value, store",
    [
        ({"startRow": "abc", "endRow": 100}, None),
        ({"startRow": 0, "endRow": 100, "sortModel": "x"}, None),
        ({"startRow": 0, "endRow": 100, "sortModel": [5]}, None),
        ({"startRow": 0, "endRow": 100, "sortModel": [{"colId": "run_name", "sort": "sideways"}]}, None),
        ({"startRow": -5, "endRow": 100}, None),
        ({"startRow": 2**70, "endRow": 2**70 + 100}, None),
        ("not an object", None),
        ({"startRow": 0, "endRow": 100}, {"columns": 5}),
        ({"startRow": 0, "endRow": 100}, {"experiment_ids": 7}),
    ],
    ids=[
        "startRow-abc",
        "sortModel-x",
        "sortModel-5",
        "sort-sideways",
        "startRow-negative",
        "startRow-2^70",
        "request-string",
        "columns-5",
        "experiment_ids-7",
    ],
)
def test_rl_f02_grid_requests_are_parsed_by_type(app, client, request_value, store, demo_lake):
    from runlake.app.web import ids

    callback = next(c for n, c in app.callback_map.items() if "runs-grid.getRowsResponse" in n)
    name = next(n for n in app.callback_map if "runs-grid.getRowsResponse" in n)
    body = {
        "output": name,
        "outputs": _outputs(callback["output"]),
        "inputs": [{"id": ids.RUNS_GRID, "property": "getRowsRequest", "value": request_value}],
        "state": [
            {"id": ids.RUNS_QUERY, "property": "data", "value": store},
            {"id": ids.RUNS_EXPANDED, "property": "data", "value": []},
        ],
        "changedPropIds": [f"{ids.RUNS_GRID}.getRowsRequest"],
    }
    response = client.post("/_dash-update-component", json=body, headers=HOST)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    # The same body with a good request is answered.
    body["inputs"][0]["value"] = {"startRow": 0, "endRow": 100, "sortModel": []}
    body["state"][0]["value"] = None
    assert client.post("/_dash-update-component", json=body, headers=HOST).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"output": 5}', b'{"output": "runs-query.data", "inputs": "x"}', b"{}"],
    ids=["not-json", "list", "output-5", "inputs-string", "empty"],
)
def test_rl_f03_bodies_dash_cannot_dispatch_are_4xx(client, raw):
    response = client.post("/_dash-update-component", data=raw, headers={**HOST, "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.status_code


def _misshapen(app: Any) -> list[tuple[str, dict[str, Any]]]:
    """Bodies naming a real callback whose inputs, state or outputs do not match its definition."""
    bodies = []
    for name, callback in app.callback_map.items():
        if callback.get("clientside_function") or callback.get("callback") is None:
            continue
        inputs = [_entry(i, None) for i in callback["inputs"]]
        state = [_entry(s, None) for s in callback["state"]]
        base = {"output": name, "outputs": _outputs(callback["output"]), "inputs": inputs, "state": state}
        stranger = {"id": "no-such-component", "property": "value", "value": 1}
        outputs = base["outputs"]
        variants = {
            "extra input": {**base, "inputs": [*inputs, stranger]},
            "missing input": {**base, "inputs": inputs[:-1]},
            "extra state": {**base, "state": [*state, stranger]},
            "no outputs": {k: v for k, v in base.items() if k != "outputs"},
            "other output": {**base, "outputs": [stranger] * len(outputs) if isinstance(outputs, list) else stranger},
            "changed without a dot": {**base, "changedPropIds": ["nodot"]},
        }
        bodies += [(f"{name} {variant}", body) for variant, body in variants.items()]
    return bodies


def test_rl_f04_bodies_that_do_not_match_the_callback_definition_are_4xx(app, client):
    """What Dash's own request validation refuses (CallbackException) is a bad request too."""
    failures = []
    for name, body in _misshapen(app):
        response = client.post("/_dash-update-component", json=body, headers=HOST)
        if not 200 <= response.status_code < 500:
            failures.append((name, response.status_code))
    assert not failures, failures[:10]


@pytest.mark.parametrize("path", ["/_dash-component-suites/x/y.js", "/_dash-component-suites/dash/nope.js"])
def test_rl_f05_unknown_dash_resources_are_404(client, path):
    assert client.get(path, headers=HOST).status_code == 404
