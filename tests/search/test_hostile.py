"""Any text gives results or a SearchSyntaxError - never another exception, never injected SQL."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runlake.lake.search import (
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_NODES,
    SearchSyntaxError,
    compile_filter,
    compile_order_by,
    describe,
    parse_filter,
    to_text,
)

from . import dataset


@pytest.fixture(scope="module", params=dataset.MODES)
def con(request):
    connection = dataset.connect(request.param)
    yield connection
    connection.close()


def _run_or_reject(con, text: str) -> list[str] | None:
    """Results, or None when the filter is rejected with a SearchSyntaxError."""
    try:
        sql, params = compile_filter(text, dataset.index_of(con))
    except SearchSyntaxError as error:
        assert error.to_dict()["error"] == "SearchSyntaxError"
        assert 0 <= error.position <= len(text)
        return None
    return dataset.search_ids(con, sql, params)


def _tables_intact(con) -> None:
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == len(dataset.RUNS)
    assert con.execute("SELECT count(*) FROM params").fetchone()[0] == sum(len(p) for p in dataset.PARAMS.values())


# Pieces of the language, so generated soup often gets deep into the grammar.
TOKENS = [
    "metrics.rmse",
    "params.lr",
    "tags.color",
    "status",
    "start_time",
    "`run name`",
    "tags.`a b`",
    "MIN(",
    "MAX(",
    "LATEST(",
    "(",
    ")",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "LIKE",
    "ILIKE",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "<>",
    ",",
    ".",
    "'x'",
    '"y"',
    "'%'",
    "0.3",
    "-1",
    "1e5",
    "+1",
    "nan",
    ";",
    "--",
    "'",
    '"',
    "`",
    "\\",
    "\n",
    "read_csv('/etc/passwd')",
    "DROP TABLE runs",
]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text() | st.lists(st.characters() | st.integers(0xD800, 0xDFFF).map(chr), max_size=20).map("".join))
def test_any_text_gives_results_or_a_syntax_error(con, text):
    _run_or_reject(con, text)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join))
def test_any_token_soup_gives_results_or_a_syntax_error(con, text):
    result = _run_or_reject(con, text)
    if result is not None:  # what parses also prints, re-parses and describes
        ast = parse_filter(text)
        assert parse_filter(to_text(ast)) == ast
        assert describe(ast)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=3))
def test_any_order_by_gives_a_plan_or_a_syntax_error(con, entries):
    try:
        plan = compile_order_by(entries, dataset.index_of(con))
    except SearchSyntaxError:
        return
    dataset.search_ids(con, "TRUE", [], plan=plan)


@pytest.mark.parametrize(
    "text",
    [
        "'; DROP TABLE runs; --",
        "status = 'x'; DROP TABLE runs; --",
        "read_csv('/etc/passwd')",
        "status = read_csv('/etc/passwd')",
        "run_id IN (SELECT run_id FROM runs)",
        "status = 'x' UNION SELECT * FROM runs",
        "1=1",
        "status = 'x' OR 1=1",
        "status = 'x' -- comment",
        "status = 'x' /* comment */",
        'metrics."x"; DROP TABLE runs',
    ],
)
def test_sql_in_the_filter_is_a_syntax_error(con, text):
    assert _run_or_reject(con, text) is None
    _tables_intact(con)


@pytest.mark.parametrize(
    "text",
    [
        "status = '; DROP TABLE runs; --'",
        "run_name = \"read_csv('/etc/passwd')\"",
        "tags.`'; DROP TABLE runs; --` = 'x'",
        "params.`x\") OR 1=1 --` = 'y'",
        "run_id IN ('r01'')--', 'r02')",
        "tags.note LIKE '%''; DROP TABLE tags; --%'",
        "run_name = 'a\x00b'",
    ],
)
def test_sql_in_values_and_keys_is_just_data(con, text):
    try:
        sql, params = compile_filter(text, dataset.index_of(con))
    except SearchSyntaxError:
        _tables_intact(con)
        return
    assert "DROP" not in sql and "passwd" not in sql and "--" not in sql
    dataset.search_ids(con, sql, params)
    _tables_intact(con)


def test_ten_thousand_nested_parentheses():
    text = "(" * 10_000 + "status = 'x'" + ")" * 10_000
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter(text)
    assert "too long" in info.value.problem


def test_deep_nesting_within_the_length_limit():
    depth = (MAX_FILTER_LENGTH - 20) // 2
    text = "(" * depth + "status = 'x'" + ")" * depth
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter(text)
    assert "nested too deeply" in info.value.problem
    assert info.value.position == MAX_DEPTH  # the first '(' past the limit


def test_deep_not_chain():
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter("NOT " * 2_000 + "status = 'x'")
    assert "nested too deeply" in info.value.problem


def test_nesting_up_to_the_limit_works(con):
    text = "(" * (MAX_DEPTH - 1) + "NOT status = 'KILLED'" + ")" * (MAX_DEPTH - 1)
    assert len(_run_or_reject(con, text)) == len(dataset.RUNS) - 1


def test_one_megabyte_of_text_is_rejected_fast():
    text = "status = 'x' AND " * 62_000
    started = time.perf_counter()
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter(text)
    assert time.perf_counter() - started < 0.5
    assert info.value.position == MAX_FILTER_LENGTH
    assert len(info.value.message) < 2_000  # the excerpt is a window, not the megabyte


def test_many_conditions_within_the_limits_run(con):
    text = " OR ".join(f"run_id = 'r{i:02d}'" for i in range(1, 17))
    assert sorted(_run_or_reject(con, text)) == dataset.ALL_IDS
    text = " OR ".join(["status = 'x'"] * 600)
    assert _run_or_reject(con, text) == []


def test_too_many_list_items():
    text = "run_id IN (" + ",".join(["'a'"] * (MAX_NODES + 1)) + ")"
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter(text)
    assert "too many" in info.value.problem


def test_lone_surrogates_are_a_syntax_error():
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter("status = '\ud800'")
    assert info.value.position == 10
    with pytest.raises(SearchSyntaxError):
        compile_order_by(["tags.`\udfff`"])
