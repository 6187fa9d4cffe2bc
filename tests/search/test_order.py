"""order_by: values first, then NaN, then missing (both directions); code-point strings; ties; paging."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runlake.lake.search import compile_filter, compile_order_by, evaluator, order_text
from runlake.lake.search.syntax import ATTRIBUTES, Aggregate, Entity, Field, MetricAgg, OrderKey

from . import dataset
from .test_differential import generated_rows

# Active runs of the fixed dataset, in the order each order_by gives (worked out by hand).
ORDER_CASES: list[tuple[list[str], str]] = [
    ([], "r16 r12 r11 r10 r09 r08 r07 r06 r04 r05 r03 r02 r01 r15"),
    (["metrics.rmse ASC"], "r06 r01 r03 r02 r08 r05 r07 r04 r16 r12 r11 r10 r09 r15"),
    (["metrics.rmse DESC"], "r05 r08 r02 r03 r01 r06 r07 r04 r16 r12 r11 r10 r09 r15"),
    (["MIN(metrics.rmse)"], "r06 r01 r03 r02 r05 r04 r08 r07 r16 r12 r11 r10 r09 r15"),
    (["MAX(metrics.rmse) DESC"], "r05 r02 r08 r06 r01 r04 r03 r07 r16 r12 r11 r10 r09 r15"),
    (["params.lr"], "r12 r06 r10 r05 r03 r01 r11 r16 r02 r04 r07 r09 r08 r15"),
    (["params.lr DESC"], "r08 r09 r07 r04 r02 r16 r11 r01 r03 r05 r10 r06 r12 r15"),
    (["run_name"], "r12 r01 r02 r08 r03 r15 r07 r06 r16 r04 r05 r11 r10 r09"),
    (["run_name DESC"], "r10 r11 r05 r04 r16 r06 r07 r15 r03 r08 r02 r01 r12 r09"),
    (["end_time DESC"], "r16 r12 r11 r02 r10 r01 r09 r07 r06 r05 r03 r15 r08 r04"),
    (["created"], "r01 r15 r02 r03 r04 r05 r06 r07 r08 r09 r10 r11 r12 r16"),
    (["tags.color DESC", "metrics.rmse"], "r02 r01 r04 r03 r06 r08 r05 r07 r16 r12 r11 r10 r09 r15"),
    (["metrics.loss DESC"], "r01 r02 r10 r09 r03 r16 r12 r11 r08 r07 r06 r04 r05 r15"),
    (["run_id DESC"], "r16 r15 r12 r11 r10 r09 r08 r07 r06 r05 r04 r03 r02 r01"),
    (["status", "user_id DESC"], "r03 r16 r11 r10 r06 r02 r01 r15 r07 r12 r09 r05 r04 r08"),
    (["tags.note"], "r07 r06 r08 r04 r05 r09 r10 r11 r16 r12 r03 r02 r01 r15"),
]


@pytest.fixture(scope="module", params=dataset.MODES)
def con(request):
    connection = dataset.connect(request.param)
    yield connection
    connection.close()


def _active_rows():
    return [r for r in dataset.rows() if r["run"]["lifecycle_stage"] == "active"]


@pytest.mark.parametrize(("order_by", "expected"), ORDER_CASES, ids=[repr(o) for o, _ in ORDER_CASES])
def test_order_case(con, order_by, expected):
    plan = compile_order_by(order_by, dataset.index_of(con))
    assert dataset.search_ids(con, "TRUE", [], plan=plan, view="active") == expected.split()
    assert [r["run"]["run_id"] for r in evaluator.sort_rows(_active_rows(), plan.keys)] == expected.split()


@pytest.mark.parametrize("mode", dataset.MODES)
def test_strings_sort_by_code_point_even_with_a_case_insensitive_default_collation(mode):
    connection = dataset.connect(mode)
    connection.execute("SET default_collation = 'nocase'")
    expected = dict((tuple(order_by), ids) for order_by, ids in ORDER_CASES)
    for order_by in (["tags.note"], ["run_name"], ["params.lr DESC"]):
        plan = compile_order_by(order_by, dataset.index_of(connection))
        assert dataset.search_ids(connection, "TRUE", [], plan=plan, view="active") == expected[tuple(order_by)].split()


@pytest.mark.parametrize("mode", dataset.MODES)
def test_nan_and_infinities_order_as_in_mlflow(mode):
    values = ["nan", "inf", "-inf", "-1000", "0", "1000", "None"]
    rows = []
    for value in values:
        run = {c: None for c in dataset.RUN_COLUMNS}
        run.update(run_id=value, experiment_id="1", start_time=0, lifecycle_stage="active")
        metrics = {} if value == "None" else {"x": {"value": float(value), "min_value": 0.0, "max_value": 0.0}}
        rows.append({"run": run, "params": {}, "tags": {}, "metrics": metrics})
    connection = duckdb.connect(":memory:")
    dataset.load(connection, rows, mode)
    index = dataset.index_of(connection)
    asc = dataset.search_ids(connection, "TRUE", [], plan=compile_order_by(["metrics.x asc"], index))
    desc = dataset.search_ids(connection, "TRUE", [], plan=compile_order_by(["metrics.x desc"], index))
    assert asc == ["-inf", "-1000", "0", "1000", "inf", "nan", "None"]
    assert desc == ["inf", "1000", "0", "-1000", "-inf", "nan", "None"]


def test_tie_breaks():
    assert compile_order_by([]).order_sql == "r.start_time DESC NULLS LAST, r.run_id COLLATE C ASC"
    # A key of the user's replaces the default tie-break on the same attribute.
    assert compile_order_by(["start_time ASC"]).order_sql == "r.start_time ASC NULLS LAST, r.run_id COLLATE C ASC"
    by_id = compile_order_by(["run_id DESC"]).order_sql
    assert by_id.endswith("r.start_time DESC NULLS LAST") and "run_id COLLATE C ASC" not in by_id


def test_plan_shape():
    plan = compile_order_by(["metrics.loss DESC", "params.lr", "created", "MAX(metrics.loss)"])
    assert plan.joins_sql == (
        " LEFT JOIN latest_metrics o0 ON o0.run_id = r.run_id AND o0.key = ?"
        " LEFT JOIN params o1 ON o1.run_id = r.run_id AND o1.key = ?"
        " LEFT JOIN latest_metrics o2 ON o2.run_id = r.run_id AND o2.key = ?"
    )
    assert plan.join_params == ["loss", "lr", "loss"]
    assert [order_text(k) for k in plan.keys] == [
        "metrics.loss DESC",
        "params.lr ASC",
        "start_time ASC",
        "MAX(metrics.loss) ASC",
    ]
    # Metrics: numbers in the direction asked, then NaN, then no value, each one plain key.
    assert plan.order_sql == (
        "-o0.value ASC NULLS LAST, o1.value COLLATE C ASC NULLS LAST, r.start_time ASC NULLS LAST, "
        "o2.max_value ASC NULLS LAST, r.run_id COLLATE C ASC"
    )


@pytest.mark.parametrize("page_size", [1, 3, 5, 7, 13, 14, 15, 100])
def test_pages_cover_every_result_once(con, page_size):
    plan = compile_order_by(["metrics.rmse DESC", "params.lr"], dataset.index_of(con))
    sql, params = compile_filter("status != 'NOPE'")
    full = dataset.search_ids(con, sql, params, plan=plan, view="active")
    pages, offset = [], 0
    while True:
        page = dataset.search_ids(con, sql, params, plan=plan, view="active", limit=page_size, offset=offset)
        pages.extend(page)
        offset += page_size
        if len(page) < page_size:
            break
    assert pages == full and len(full) == 14
    # a page ending exactly at the last result is followed by an empty one
    assert dataset.search_ids(con, sql, params, plan=plan, view="active", limit=7, offset=14) == []


# -- generated order_by lists ------------------------------------------------------------------


def _operands(metric_keys, other_keys):
    metric = st.sampled_from(metric_keys).map(lambda k: Field(Entity.METRIC, k))
    return st.one_of(
        metric,
        st.builds(MetricAgg, st.sampled_from(list(Aggregate)), metric),
        st.sampled_from(other_keys).map(lambda k: Field(Entity.PARAM, k)),
        st.sampled_from(other_keys).map(lambda k: Field(Entity.TAG, k)),
        st.sampled_from(ATTRIBUTES).map(lambda k: Field(Entity.ATTRIBUTE, k)),
    )


def _identity(operand):
    if isinstance(operand, MetricAgg):
        return (Entity.METRIC, operand.metric.key, operand.aggregate)
    if operand.entity is Entity.METRIC:
        return (Entity.METRIC, operand.key, Aggregate.LATEST)
    return (operand.entity, operand.key, None)


def order_lists(metric_keys, other_keys):
    keys = st.builds(OrderKey, _operands(metric_keys, other_keys), st.booleans())
    return st.lists(keys, max_size=3, unique_by=lambda k: _identity(k.operand)).map(
        lambda ks: [order_text(k) for k in ks]
    )


@settings(max_examples=200, deadline=None)
@given(order_by=order_lists(["rmse", "loss", "memUsage", "absent"], ["lr", "color", "note", "model", "absent"]))
def test_sql_order_agrees_with_evaluator(con, order_by):
    plan = compile_order_by(order_by, dataset.index_of(con))
    rows = dataset.rows()
    assert dataset.search_ids(con, "TRUE", [], plan=plan) == [
        r["run"]["run_id"] for r in evaluator.sort_rows(rows, plan.keys)
    ]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=generated_rows(), order_by=order_lists(["a", "b"], ["a", "b"]), mode=st.sampled_from(dataset.MODES))
def test_sql_order_agrees_with_evaluator_on_generated_rows(rows, order_by, mode):
    connection = duckdb.connect(":memory:")
    try:
        dataset.load(connection, rows, mode)
        plan = compile_order_by(order_by, dataset.index_of(connection))
        got = dataset.search_ids(connection, "TRUE", [], plan=plan)
    finally:
        connection.close()
    assert got == [r["run"]["run_id"] for r in evaluator.sort_rows(rows, plan.keys)]
