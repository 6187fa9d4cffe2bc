"""Generated filters: SQL on DuckDB agrees with the pure-Python evaluator; text round-trips."""

from __future__ import annotations

import math

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runlake.lake.search import compile_filter, evaluator, parse_filter, to_text
from runlake.lake.search.syntax import (
    NUMERIC_ATTRIBUTES,
    STRING_ATTRIBUTES,
    Aggregate,
    And,
    Comparison,
    Entity,
    Field,
    InList,
    IsNull,
    MetricAgg,
    Not,
    Op,
    Or,
)

from . import dataset

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that stress the rules: numeric text, wildcards, backslash, Unicode case pairs
# (É/é, İ/i, Σ/σ/ς, ǅ/ǆ, Kelvin K/k), whitespace.
TRICKY = "0123456789.eE+-_ %\\infatyINFxÉéİiΣσςǅǆKk\n'\""


def _writable(text: str) -> bool:
    return not ("'" in text and '"' in text)


def _dataset_strings() -> list[str]:
    values = {v for run in dataset.RUNS for k, v in run.items() if isinstance(v, str)}
    for bucket in (dataset.PARAMS, dataset.TAGS):
        values |= {v for kv in bucket.values() for v in kv.values()}
    return sorted(v for v in values if _writable(v))


NUMBERS = st.one_of(
    st.sampled_from([0.0, -0.0, 0.3, 0.25, 1.0, 0.01, 1e-4, 64.0, 5.0, 1300.0, 2000.0, -1.0, 1e308, -1e308]),
    st.floats(allow_nan=False, allow_infinity=False),
)
STRINGS = st.one_of(
    st.sampled_from(_dataset_strings()),
    st.text(alphabet=TRICKY, max_size=6).filter(_writable),
    st.text(max_size=4).filter(_writable),
)
PATTERNS = (
    st.lists(
        st.one_of(st.sampled_from(["%", "_", "%", "a", "e", "0.", "É", "é", "σ", "\\", "\n", "l"]), STRINGS),
        max_size=4,
    )
    .map("".join)
    .filter(_writable)
)


def predicates(metric_keys, param_keys, tag_keys):
    metric = st.sampled_from(metric_keys).map(lambda k: Field(Entity.METRIC, k))
    number_operand = st.one_of(
        metric,
        st.builds(MetricAgg, st.sampled_from(list(Aggregate)), metric),
        st.sampled_from(NUMERIC_ATTRIBUTES).map(lambda k: Field(Entity.ATTRIBUTE, k)),
    )
    string_attr = st.sampled_from(STRING_ATTRIBUTES).map(lambda k: Field(Entity.ATTRIBUTE, k))
    text_operand = st.one_of(
        st.sampled_from(param_keys).map(lambda k: Field(Entity.PARAM, k)),
        st.sampled_from(tag_keys).map(lambda k: Field(Entity.TAG, k)),
    )
    ordering = st.sampled_from([Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE])
    patterns = st.sampled_from([Op.LIKE, Op.ILIKE, Op.NOT_LIKE, Op.NOT_ILIKE])
    values = st.lists(STRINGS, min_size=1, max_size=3).map(tuple)

    def string_predicates(operand):
        return st.one_of(
            st.builds(Comparison, operand, st.sampled_from([Op.EQ, Op.NE]), STRINGS),
            st.builds(Comparison, operand, patterns, PATTERNS),
            st.builds(InList, operand, values, st.booleans()),
        )

    return st.one_of(
        st.builds(Comparison, number_operand, ordering, NUMBERS),
        st.builds(IsNull, st.one_of(number_operand, string_attr, text_operand), st.booleans()),
        string_predicates(string_attr),
        string_predicates(text_operand),
        st.builds(Comparison, text_operand, ordering, NUMBERS),
    )


def filters(metric_keys, param_keys, tag_keys):
    def extend(children):
        return st.one_of(
            st.lists(children, min_size=2, max_size=3).map(lambda items: And(tuple(items))),
            st.lists(children, min_size=2, max_size=3).map(lambda items: Or(tuple(items))),
            children.map(Not),
        )

    return st.recursive(predicates(metric_keys, param_keys, tag_keys), extend, max_leaves=8)


FIXED_FILTERS = filters(
    ["rmse", "loss", "f1 score", "X-Y-Z", "accuracy.2.0", "memUsage", "absent"],
    ["lr", "batch_size", "model", "model-type", "absent"],
    ["color", "size", "note", "mlflow.user", "team.owner", "empty", "absent"],
)


@pytest.fixture(scope="module", params=dataset.MODES)
def con(request):
    connection = dataset.connect(request.param)
    yield connection
    connection.close()


@SETTINGS
@given(FIXED_FILTERS)
def test_text_round_trips(ast):
    text = to_text(ast)
    assert parse_filter(text) == ast
    assert to_text(parse_filter(text)) == text


@SETTINGS
@given(
    entity=st.sampled_from([Entity.METRIC, Entity.PARAM, Entity.TAG]),
    key=st.text(min_size=1, max_size=12).filter(lambda k: not ("`" in k and '"' in k)),
)
def test_any_key_round_trips(entity, key):
    ast = IsNull(Field(entity, key))
    assert parse_filter(to_text(ast)) == ast


@SETTINGS
@given(ast=FIXED_FILTERS, view=st.sampled_from(["all", "active", "deleted"]))
def test_sql_agrees_with_evaluator_on_the_fixed_dataset(con, ast, view):
    sql, params = compile_filter(ast, dataset.index_of(con))
    got = sorted(dataset.search_ids(con, sql, params, view=view))
    rows = [r for r in dataset.rows() if view == "all" or r["run"]["lifecycle_stage"] == view]
    assert got == sorted(evaluator.search(ast, rows))


# -- generated data ---------------------------------------------------------------------------

KEYS = ["a", "b"]
TRICKY_TEXT = st.one_of(
    st.text(alphabet=TRICKY, max_size=7),
    st.sampled_from(
        [
            "1",
            "1.",
            ".5",
            "+1",
            "-1e3",
            "1e999",
            "-1e999",
            "1e-400",
            "inf",
            "-Infinity",
            "nan",
            " 1",
            "1 ",
            "1_0",
            "0x1",
            "١",
            "1e",
            "e1",
            "+-1",
            "",
            "1.5e+3",
        ]
    ),
)
FLOATS = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 1.0, 0.5]))


@st.composite
def generated_rows(draw):
    rows = []
    for i in range(draw(st.integers(1, 6))):
        run = {c: None for c in dataset.RUN_COLUMNS}
        run.update(run_id=f"g{i}", experiment_id="1", lifecycle_stage="active")
        for column in STRING_ATTRIBUTES[1:]:
            run[column] = draw(st.none() | TRICKY_TEXT)
        for column in NUMERIC_ATTRIBUTES:
            run[column] = draw(st.none() | st.integers(-(2**62), 2**62) | st.sampled_from([0, 1, 2, 1300]))
        summaries = {}
        for key in draw(st.sets(st.sampled_from(KEYS))):
            summaries[key] = {"value": draw(FLOATS), "min_value": draw(FLOATS), "max_value": draw(FLOATS)}
        rows.append(
            {
                "run": run,
                "params": draw(st.dictionaries(st.sampled_from(KEYS), TRICKY_TEXT, max_size=2)),
                "tags": draw(st.dictionaries(st.sampled_from(KEYS), TRICKY_TEXT, max_size=2)),
                "metrics": summaries,
            }
        )
    return rows


GENERATED_FILTERS = filters(KEYS, KEYS, KEYS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=generated_rows(), ast=GENERATED_FILTERS, mode=st.sampled_from(dataset.MODES))
def test_sql_agrees_with_evaluator_on_generated_rows(rows, ast, mode):
    connection = duckdb.connect(":memory:")
    try:
        dataset.load(connection, rows, mode)
        sql, params = compile_filter(ast, dataset.index_of(connection))
        got = sorted(dataset.search_ids(connection, sql, params))
    finally:
        connection.close()
    assert got == sorted(evaluator.search(ast, rows))


@settings(max_examples=300, deadline=None)
@given(value=TRICKY_TEXT, number=NUMBERS, op=st.sampled_from([Op.EQ, Op.NE, Op.LT, Op.GT]))
def test_numeric_text_rule_agrees(con, value, number, op):
    """The param-as-number rule, alone: SQL regex + TRY_CAST versus Python."""
    rows = [{"run": {"run_id": "x"}, "params": {"p": value}, "tags": {}, "metrics": {}}]
    ast = Comparison(Field(Entity.PARAM, "p"), op, number)
    sql, params = compile_filter(ast)
    got = con.execute(
        f"SELECT count(*) FROM (SELECT 'x' AS run_id) r WHERE {sql}".replace(
            "FROM params", "FROM (SELECT 'x' AS run_id, 'p' AS key, ? AS value)"
        ),
        [value, *params],
    ).fetchone()[0]
    assert bool(got) == bool(evaluator.search(ast, rows))
