"""Errors people can act on: what is wrong, where (a caret), what was expected, and a hint."""

from __future__ import annotations

import pytest

from runlake.core.errors import InvalidArgument
from runlake.lake.search import SearchSyntaxError, compile_filter, compile_order_by, parse_filter, parse_order_entry

from .cases import ERROR_CASES, ORDER_ERROR_CASES


def test_there_are_enough_error_cases():
    assert len(ERROR_CASES) + len(ORDER_ERROR_CASES) >= 40


@pytest.mark.parametrize(("text", "problem", "position", "hint"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_case(text, problem, position, hint):
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter(text)
    error = info.value
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    assert (error.problem, error.position, error.line, error.column, error.hint) == (
        problem,
        position,
        line,
        column,
        hint,
    )
    # compile_filter reports the same error
    with pytest.raises(SearchSyntaxError) as again:
        compile_filter(text)
    assert again.value.to_dict() == error.to_dict()


@pytest.mark.parametrize(
    ("entries", "problem", "position", "hint"), ORDER_ERROR_CASES, ids=[repr(c[0]) for c in ORDER_ERROR_CASES]
)
def test_order_error_case(entries, problem, position, hint):
    with pytest.raises(SearchSyntaxError) as info:
        compile_order_by(entries)
    error = info.value
    assert (error.problem, error.position, error.hint) == (problem, position, hint)
    assert error.text == entries[-1]


def test_error_is_a_value_error_and_an_invalid_argument():
    with pytest.raises(ValueError):
        parse_filter("metrics.x ==")
    with pytest.raises(InvalidArgument):
        parse_filter("metrics.x ==")


def test_to_dict_shape_for_a_syntax_error():
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter("metrics.rmse < 0.3 AND AND params.lr = '0.01'")
    assert info.value.to_dict() == {
        "error": "SearchSyntaxError",
        "message": (
            "Unexpected 'AND' (at column 24):\n"
            "  metrics.rmse < 0.3 AND AND params.lr = '0.01'\n"
            "                         ^^^\n"
            "Expected one of: an identifier such as metrics.rmse, params.lr, tags.team or status, "
            "a `quoted` name, MIN(...), MAX(...) or LATEST(...) of a metric, NOT, '('.\n"
            "Hint: AND joins two conditions; one is missing here."
        ),
        "problem": "Unexpected 'AND'",
        "text": "metrics.rmse < 0.3 AND AND params.lr = '0.01'",
        "position": 23,
        "line": 1,
        "column": 24,
        "expected": [
            "an identifier such as metrics.rmse, params.lr, tags.team or status",
            "a `quoted` name",
            "MIN(...), MAX(...) or LATEST(...) of a metric",
            "NOT",
            "'('",
        ],
        "hint": "AND joins two conditions; one is missing here.",
    }


def test_to_dict_shape_for_a_rule_error():
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter("metrics.x < '0.3'")
    assert info.value.to_dict() == {
        "error": "SearchSyntaxError",
        "message": (
            "Metric 'x' is a number: compare it with a number, not a string (at column 13):\n"
            "  metrics.x < '0.3'\n"
            "              ^^^^^\n"
            "Hint: Remove the quotes: 0.3"
        ),
        "problem": "Metric 'x' is a number: compare it with a number, not a string",
        "text": "metrics.x < '0.3'",
        "position": 12,
        "line": 1,
        "column": 13,
        "expected": [],
        "hint": "Remove the quotes: 0.3",
    }


def test_to_dict_shape_on_a_later_line():
    text = "status = 'FINISHED'\n  AND metrics.loss <\n  AND params.lr = '0.01'"
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter(text)
    assert info.value.to_dict() == {
        "error": "SearchSyntaxError",
        "message": (
            "Unexpected 'AND' (at line 3, column 3):\n"
            "    AND params.lr = '0.01'\n"
            "    ^^^\n"
            "Expected one of: a quoted string, a number.\n"
            "Hint: Add a value after the operator, e.g. metrics.rmse < 0.3 or params.lr = '0.01'."
        ),
        "problem": "Unexpected 'AND'",
        "text": text,
        "position": 43,
        "line": 3,
        "column": 3,
        "expected": ["a quoted string", "a number"],
        "hint": "Add a value after the operator, e.g. metrics.rmse < 0.3 or params.lr = '0.01'.",
    }


def test_unknown_prefix_lists_the_valid_ones():
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter("foo.x = 'a'")
    assert info.value.expected == [
        "metrics",
        "metric",
        "params",
        "param",
        "parameters",
        "parameter",
        "tags",
        "tag",
        "attributes",
        "attribute",
        "attr",
        "run",
    ]


def test_unknown_attribute_lists_the_attributes():
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter("attributes.name = 'a'")
    assert "run_name" in info.value.expected and "start_time" in info.value.expected
    assert "lifecycle_stage" not in info.value.expected


def test_caret_window_on_a_long_line():
    text = "status = 'x' AND " * 20 + "metrics.x ==" + " AND status = 'y'" * 20
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter(text)
    excerpt_line, caret_line = info.value.message.splitlines()[1:3]
    assert excerpt_line.startswith("  ...") and excerpt_line.endswith("...")
    assert len(excerpt_line) < 140
    assert excerpt_line[caret_line.index("^")] == "="


def test_tabs_do_not_shift_the_caret():
    with pytest.raises(SearchSyntaxError) as info:
        parse_filter("status\t=\t'x'\tAND\t\t")
    excerpt_line, caret_line = info.value.message.splitlines()[1:3]
    assert caret_line.index("^") == len("  status = 'x' AND")  # just past the last token


def test_order_entry_errors_name_the_entry():
    with pytest.raises(SearchSyntaxError) as info:
        compile_order_by(["metrics.a", "params.b DESC NULLS LAST"])
    assert info.value.text == "params.b DESC NULLS LAST"
    assert info.value.column == 15


@pytest.mark.parametrize("bad", ["metrics.a", 5, None, [1]])
def test_order_by_must_be_a_list_of_strings(bad):
    if bad is None:
        assert compile_order_by(None).joins_sql == ""
        return
    with pytest.raises(InvalidArgument):
        compile_order_by(bad)


def test_non_string_filter_is_an_invalid_argument():
    with pytest.raises(InvalidArgument):
        parse_filter(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        parse_order_entry(42)  # type: ignore[arg-type]


def test_every_filterable_attribute_is_a_column_of_the_runs_view():
    from runlake.core import layout
    from runlake.lake.search.syntax import ATTRIBUTES

    assert set(ATTRIBUTES) <= set(layout.RUN_COLUMNS)


def test_a_compiled_filter_is_kept_but_each_caller_gets_its_own_values():
    text = "params.lr IN ('0.1', '0.2') AND metrics.loss < 0.5"
    sql, params = compile_filter(text)
    kept = [list(v) if isinstance(v, list) else v for v in params]
    params.append("changed by a caller")
    next(v for v in params if isinstance(v, list)).append("0.3")
    again_sql, again = compile_filter(text)
    assert again_sql == sql and again == kept and ["0.1", "0.2"] in again
    with pytest.raises(SearchSyntaxError):
        compile_filter("metrics.loss <")
    with pytest.raises(SearchSyntaxError):  # not kept as an answer either
        compile_filter("metrics.loss <")
