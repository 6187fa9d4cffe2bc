"""Table-driven search cases: each filter, compiled and run on DuckDB, selects the expected runs."""

from __future__ import annotations

import pytest

from runlake.lake.search import (
    SearchSyntaxError,
    compile_filter,
    compile_order_by,
    describe,
    evaluator,
    parse_filter,
    to_text,
)

from . import dataset
from .cases import ALL, MATCH_CASES
from .mlflow_cases import MLFLOW_FILTERS, MLFLOW_ORDER_BYS, MLFLOW_REJECTED


@pytest.fixture(scope="module", params=dataset.MODES)
def con(request):
    connection = dataset.connect(request.param)
    yield connection
    connection.close()


def _expected(ids: str, view: str) -> list[str]:
    pool = {"all": dataset.ALL_IDS, "active": dataset.ACTIVE_IDS, "deleted": ["r13", "r14"]}[view]
    return sorted(pool) if ids == ALL else sorted(ids.split())


def _run(con, text: str, view: str = "all") -> list[str]:
    sql, params = compile_filter(text, dataset.index_of(con))
    return sorted(dataset.search_ids(con, sql, params, view=view))


def _evaluate(text: str, view: str = "all") -> list[str]:
    rows = [r for r in dataset.rows() if view == "all" or r["run"]["lifecycle_stage"] == view]
    return sorted(evaluator.search(parse_filter(text), rows))


def test_there_are_enough_cases():
    assert len(MATCH_CASES) >= 150
    assert len({(text, view) for text, _, view in MATCH_CASES}) == len(MATCH_CASES)


@pytest.mark.parametrize(
    ("text", "ids", "view"), MATCH_CASES, ids=[f"{text!r}[{view}]" for text, _, view in MATCH_CASES]
)
def test_match_case(con, text, ids, view):
    expected = _expected(ids, view)
    assert _run(con, text, view) == expected
    assert _evaluate(text, view) == expected


@pytest.mark.parametrize(("text", "ids", "view"), MATCH_CASES, ids=[f"{t!r}[{v}]" for t, _, v in MATCH_CASES])
def test_match_case_survives_printing(con, text, ids, view):
    ast = parse_filter(text)
    assert parse_filter(to_text(ast)) == ast
    assert _run(con, to_text(ast), view) == _expected(ids, view)


@pytest.mark.parametrize(("text", "ids", "source"), MLFLOW_FILTERS, ids=[t for t, _, _ in MLFLOW_FILTERS])
def test_mlflow_filter(con, text, ids, source):
    expected = _expected(ids, "all")
    assert _run(con, text) == expected
    assert _evaluate(text) == expected


@pytest.mark.parametrize("text", MLFLOW_REJECTED, ids=MLFLOW_REJECTED)
def test_mlflow_rejected_filter(text):
    with pytest.raises(SearchSyntaxError):
        compile_filter(text)


@pytest.mark.parametrize(("order_by", "source"), MLFLOW_ORDER_BYS, ids=[repr(o) for o, _ in MLFLOW_ORDER_BYS])
def test_mlflow_order_by(con, order_by, source):
    plan = compile_order_by(order_by, dataset.index_of(con))
    got = dataset.search_ids(con, "TRUE", [], plan=plan, view="active")
    active = [r for r in dataset.rows() if r["run"]["lifecycle_stage"] == "active"]
    assert got == [r["run"]["run_id"] for r in evaluator.sort_rows(active, plan.keys)]


def test_filter_and_order_compose_in_the_lakes_shape(con):
    """Join params first, then the lead's, then the filter's, then LIMIT/OFFSET."""
    plan = compile_order_by(["metrics.rmse DESC", "params.lr"], dataset.index_of(con))
    sql, params = compile_filter("metrics.rmse IS NOT NULL AND params.lr IS NOT NULL", dataset.index_of(con))
    ids = dataset.search_ids(con, sql, params, plan=plan, view="active", limit=3, offset=1)
    # active runs with both: r01 .25, r02 .35, r03 .3, r04 NaN, r05 inf, r06 -inf, r07 NaN, r08 1.0
    assert ids == ["r08", "r02", "r03"]


def test_empty_filter_is_true():
    assert compile_filter("") == ("TRUE", [])
    assert compile_filter("  \n ") == ("TRUE", [])
    assert compile_filter(None) == ("TRUE", [])
    assert parse_filter("   ") is None


def test_compile_accepts_an_ast(con):
    ast = parse_filter("tags.color = 'blue' OR metrics.rmse > 0.3")
    assert compile_filter(ast) == compile_filter(to_text(ast))
    assert _run(con, to_text(ast)) == ["r01", "r02", "r04", "r05", "r08", "r14"]


def test_user_values_and_keys_are_bound_not_spliced():
    text = "tags.`zz'; DROP TABLE runs; --` = \"q'uote OR 1=1\" AND params.lr IN ('aa', 'bb')"
    sql, params = compile_filter(text)
    assert "DROP" not in sql and "uote" not in sql and "aa" not in sql
    assert params == ["zz'; DROP TABLE runs; --", "q'uote OR 1=1", "lr", ["aa", "bb"]]


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        ("", "all runs"),
        ("metrics.rmse < 0.3 AND params.lr = '0.01'", "runs where rmse < 0.3 and param lr = '0.01'"),
        ("MIN(metrics.loss) <= 1e-05", "runs where min loss <= 1e-05"),
        ("NOT (tags.team = 'a' OR created > 5)", "runs where not (tag team = 'a' or start time > 5)"),
        ("run_name ILIKE 'élan%'", "runs where run name matches 'élan%' (ignoring case)"),
        ("status NOT IN ('FAILED', 'KILLED')", "runs where status is none of 'FAILED', 'KILLED'"),
        ("metrics.`f1 score` IS NULL", "runs where f1 score is missing"),
        ("tags.x IS NOT NULL", "runs where tag x is set"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_describe(text, sentence):
    assert describe(parse_filter(text)) == sentence


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("metric.acc>=100", "metrics.acc >= 100"),
        ("`metric`.a >= 0.1", "metrics.a >= 0.1"),
        ('tags."t.a.g" = "a"', "tags.t.a.g = 'a'"),
        ('params.`model-type` = "it\'s"', 'params.`model-type` = "it\'s"'),
        ("attributes.`Run Name` IN ('a','b')", "run_name IN ('a', 'b')"),
        ("a.b = 1".replace("a.b", "created"), "start_time = 1"),
        ("metrics.x > 1e16 or metrics.x < -0.000001", "metrics.x > 1e+16 OR metrics.x < -1e-06"),
        ("(status = 'a' AND status = 'b') AND status = 'c'", "(status = 'a' AND status = 'b') AND status = 'c'"),
        ("status = 'a' AND (status = 'b' OR status = 'c')", "status = 'a' AND (status = 'b' OR status = 'c')"),
        ("NOT NOT status = 'a'", "NOT NOT status = 'a'"),
    ],
)
def test_to_text_canonical_form(text, printed):
    assert to_text(parse_filter(text)) == printed
