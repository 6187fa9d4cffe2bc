"""Nested runs in the runs grid: ``tree.block`` against a pure-Python tree built from ``search_runs``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from runlake.app.web import tree
from runlake.app.web.grid import RunsQuery


def _oracle(lake: Any, kwargs: dict[str, Any], expanded: set[str]) -> tuple[list[tuple[str, int]], dict[str, int], int]:
    """(flattened rows with depth, matching-children counts, matches) computed from the whole match list."""
    frame = lake.search_runs(**kwargs)
    order = frame["run_id"].tolist()
    parent = dict(zip(frame["run_id"], frame["parent_run_id"]))
    matched = set(order)
    kids: dict[str, list[str]] = defaultdict(list)
    for run_id in order:
        if isinstance(parent[run_id], str) and parent[run_id] in matched:
            kids[parent[run_id]].append(run_id)
    out: list[tuple[str, int]] = []

    def walk(run_id: str, depth: int) -> None:
        out.append((run_id, depth))
        if run_id in expanded:
            for child in kids[run_id]:
                walk(child, depth + 1)

    for run_id in order:
        if not (isinstance(parent[run_id], str) and parent[run_id] in matched):
            walk(run_id, 0)
    return out, {p: len(c) for p, c in kids.items()}, len(order)


def _all_rows(
    services: Any, kwargs: dict[str, Any], expanded: list[str], size: int
) -> tuple[list[tuple[str, int]], int, int]:
    """Every row of the grid, fetched block by block as the grid would."""
    first = tree.block(services, kwargs, 0, size, [], expanded)
    shown: list[tuple[str, int]] = []
    for offset in range(0, first.rows, size):
        page = tree.block(services, kwargs, offset, size, [], expanded)
        shown += [(r, page.depth.get(r, 0)) for r in page.frame["run_id"]]
    return shown, first.rows, first.matches


@pytest.fixture
def nested_lake(lake: Any) -> Any:
    """The demo lake plus a third level: two grandchildren under one sweep child."""
    from runlake.ingest.client import LakeClient

    sweep = lake.search_run_ids(filter_string="run_name = 'sweep-1'")[0]
    child = lake.search_run_ids(filter_string=f"parent_run_id = '{sweep}'", order_by=["attributes.run_name ASC"])[0]
    experiment = lake.get_run(child).info["experiment_id"]
    client = LakeClient(str(lake.root))
    for i in range(2):
        run_id = client.create_run(
            experiment, run_name=f"fold-{i}", parent_run_id=child, start_time=1_767_225_600_000 + i
        )
        client.log_batch(run_id, metrics=[("val_loss", 0.1 + i, 1_767_225_600_000, 0)])
        client.set_terminated(run_id, "FINISHED")
    client.flush()
    return lake


CASES = [
    pytest.param("", id="no filter"),
    pytest.param("run_name LIKE 'sweep-%' OR run_name LIKE 'fold-%'", id="parents and children match"),
    pytest.param("metrics.val_loss < 0.45", id="children match, parents do not"),
    pytest.param("status = 'FAILED'", id="no nesting among matches"),
]


@pytest.mark.parametrize("fallback", [False, True], ids=["top-level filter", "match list"])
@pytest.mark.parametrize("text", CASES)
def test_block_pages_through_the_tree_like_the_oracle(app, nested_lake, monkeypatch, text, fallback):
    if fallback:  # as when the top-level filter would break the search limits (hundreds of parents)
        monkeypatch.setattr(tree, "_fits", lambda _text: False)
    services = app.server.config["RUNLAKE_SERVICES"]
    kwargs = RunsQuery(filter=text, sort=(("run_name", "asc"),)).search_kwargs()
    every_parent = set(tree.nesting(services, kwargs).counts)
    for expanded in (set(), every_parent, {p for p in every_parent if p in tree.nesting(services, kwargs).nested}):
        expected, counts, matches = _oracle(nested_lake, kwargs, expanded)
        shown, rows, found = _all_rows(services, kwargs, sorted(expanded), size=7)
        assert shown == expected
        assert (rows, found) == (len(expected), matches)
        assert tree.nesting(services, kwargs).counts == counts


def test_expanded_parent_outside_the_view_changes_nothing(app, lake):
    services = app.server.config["RUNLAKE_SERVICES"]
    kwargs = RunsQuery(filter="status = 'FAILED'").search_kwargs()
    plain = tree.block(services, kwargs, 0, 50, [], [])
    with_unknown = tree.block(
        services, kwargs, 0, 50, [], ["not-a-run", lake.search_run_ids(filter_string="run_name = 'sweep-1'")[0]]
    )
    assert with_unknown.frame["run_id"].tolist() == plain.frame["run_id"].tolist() and with_unknown.rows == plain.rows


def test_toggle_and_parse_expanded():
    assert tree.toggle(["a", "b"], "c", True) == ["a", "b", "c"]
    assert tree.toggle(["a", "b"], "a", False) == ["b"]
    assert tree.toggle(["a"], "a", True) == ["a"]
    assert tree.parse_expanded("a, b,,a") == ["a", "b"]
    assert len(tree.toggle([str(i) for i in range(tree.MAX_EXPANDED)], "new", True)) == tree.MAX_EXPANDED


def test_in_filters_stay_inside_the_search_limits():
    from runlake.lake.search import MAX_FILTER_LENGTH, parse_filter

    ids = [f"{i:032x}" for i in range(1_000)]
    filters = list(tree.in_filters("params.model = 'resnet18'", "run_id", ids))
    assert len(filters) >= 5
    for text in filters:
        assert len(text) <= MAX_FILTER_LENGTH
        parse_filter(text)  # no limit error
    assert sum(text.count("'") // 2 - 1 for text in filters) == len(ids)


def test_a_filter_cannot_regroup_the_added_condition(app):
    # Balanced as a whole once wrapped, but not a filter on its own: refused, never searched.
    from runlake.lake.search import SearchSyntaxError

    sneaky = "status = 'x') OR (status != 'x'"
    with pytest.raises(SearchSyntaxError):
        tree.combine(sneaky, "parent_run_id IS NULL")
    assert tree.combine("status = 'x' OR status = 'y'", "parent_run_id IS NULL") == (
        "(status = 'x' OR status = 'y') AND (parent_run_id IS NULL)"
    )
    from runlake.app.web.pages.runs import rows_response

    response, count, empty, *_ = rows_response(
        app.server.config["RUNLAKE_SERVICES"], RunsQuery(filter=sneaky), {"startRow": 0, "endRow": 100}
    )
    assert response["rowCount"] == 0 and "invalid" in str(empty)
