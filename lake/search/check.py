"""The semantic rules a parsed filter must follow: which values and operators each entity takes.

The grammar accepts any operand/operator/value combination so that these rules can explain
themselves (``metrics.x < '0.3'`` gets "remove the quotes", not "unexpected string").
"""

from __future__ import annotations

from typing import NoReturn, assert_never

from runlake.lake.search.errors import SearchSyntaxError
from runlake.lake.search.syntax import (
    ATTRIBUTES,
    NUMERIC_ATTRIBUTES,
    And,
    Comparison,
    Entity,
    Expr,
    Field,
    InList,
    IsNull,
    MetricAgg,
    Not,
    Operand,
    Or,
    OrderKey,
    Span,
    operand_field,
)

# Columns of `runs` that exist but are chosen by other search arguments, not by the filter.
_NOT_FILTERABLE = {
    "experiment_id": "Choose experiments with the experiment arguments (experiment_ids / --experiment).",
    "lifecycle_stage": "Choose active or deleted runs with the view type (run_view_type / --view).",
    "deleted_time": "Deleted runs are chosen with the view type (run_view_type / --view).",
}

_NUMBER_OPS = ["'='", "'!='", "'<'", "'<='", "'>'", "'>='", "IS NULL", "IS NOT NULL"]
_STRING_OPS = ["'='", "'!='", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE", "IN", "NOT IN", "IS NULL", "IS NOT NULL"]


def check(node: Expr | OrderKey, text: str) -> None:
    """Raise SearchSyntaxError (pointing at the offending node) if a rule is broken."""
    match node:
        case And(items) | Or(items):
            for item in items:
                check(item, text)
        case Not(item):
            check(item, text)
        case Comparison() | InList() | IsNull():
            _check_operand(node.operand, text)
            _check_predicate(node, text)
        case OrderKey():
            _check_operand(node.operand, text)
        case _:
            assert_never(node)


def _fail(problem: str, text: str, span: Span, **details: object) -> NoReturn:
    raise SearchSyntaxError(problem, text=text, position=span.start, end=span.end, **details)  # type: ignore[arg-type]


def describe_operand(operand: Operand) -> str:
    """How messages name an operand: "metric 'rmse'", "MIN(metrics.loss)", "attribute 'status'"."""
    if isinstance(operand, MetricAgg):
        return f"{operand.aggregate.value}(metrics.{operand.metric.key})"
    noun = {Entity.METRIC: "metric", Entity.PARAM: "param", Entity.TAG: "tag", Entity.ATTRIBUTE: "attribute"}
    return f"{noun[operand.entity]} '{operand.key}'"


def _check_operand(operand: Operand, text: str) -> None:
    if isinstance(operand, MetricAgg) and operand.metric.entity is not Entity.METRIC:
        _fail(
            f"{operand.aggregate.value}() takes a metric, not a {operand.metric.entity.value[:-1]}",
            text,
            operand.metric.span,
            hint=f"Write {operand.aggregate.value}(metrics.<key>).",
        )
    field = operand_field(operand)
    if field.entity is Entity.ATTRIBUTE and field.key not in ATTRIBUTES:
        if field.key in _NOT_FILTERABLE:
            _fail(
                f"The attribute '{field.key}' cannot be used in a search",
                text,
                field.span,
                hint=_NOT_FILTERABLE[field.key],
            )
        _fail(
            f"Unknown attribute '{field.key}'",
            text,
            field.span,
            expected=list(ATTRIBUTES),
            hint=_attribute_hint(field),
        )


def _attribute_hint(field: Field) -> str:
    prefix, dot, key = field.key.partition(".")
    if dot and prefix in ("metrics", "params", "tags", "metric", "param", "tag"):
        return f"Quote only the key, not the prefix: {prefix}.`{key}`"
    return (
        f"To search a metric, param or tag, add its prefix: metrics.{field.key}, "
        f"params.{field.key} or tags.{field.key}."
    )


def _kind(operand: Operand) -> str:
    """'number' (metrics, times), 'string' (string attributes) or 'text' (params, tags: both)."""
    field = operand_field(operand)
    if isinstance(operand, MetricAgg) or field.entity is Entity.METRIC:
        return "number"
    if field.entity is Entity.ATTRIBUTE:
        return "number" if field.key in NUMERIC_ATTRIBUTES else "string"
    return "text"


def _check_predicate(node: Comparison | InList | IsNull, text: str) -> None:
    kind = _kind(node.operand)
    what = describe_operand(node.operand)
    if isinstance(node, IsNull):
        return
    if isinstance(node, InList):
        if kind == "number":
            _fail(
                f"IN lists apply to params, tags and string attributes, not to {what}",
                text,
                node.span,
                hint="Combine comparisons with OR instead, e.g. (metrics.x = 1 OR metrics.x = 2).",
            )
        return
    op, value = node.op, node.value
    if kind == "number":
        if op.is_pattern:
            _fail(f"{op.value} compares strings, but {what} is a number", text, node.op_span, expected=_NUMBER_OPS)
        if isinstance(value, str):
            _fail(
                f"{_cap(what)} is a number: compare it with a number, not a string",
                text,
                node.value_span,
                hint=f"Remove the quotes: {value}" if _looks_numeric(value) else "Write a number, e.g. 0.3 or 1e-4.",
            )
    elif kind == "string":
        if op.is_ordering:
            _fail(f"'{op.value}' cannot compare {what}, which is a string", text, node.op_span, expected=_STRING_OPS)
        if isinstance(value, float):
            _fail(
                f"{_cap(what)} takes a quoted string",
                text,
                node.value_span,
                hint=f"Quote the value: '{text[node.value_span.start : node.value_span.end]}'",
            )
    else:
        if op.is_pattern and isinstance(value, float):
            _fail(
                f"{op.value} needs a quoted pattern",
                text,
                node.value_span,
                hint=f"Quote it: '{text[node.value_span.start : node.value_span.end]}'",
            )
        if op.is_ordering and isinstance(value, str):
            _fail(
                f"'{op.value}' compares {what} as a number, so it needs a number, not a string",
                text,
                node.value_span,
                hint=(
                    "Write the number without quotes (values that are not numbers never match); "
                    "quoted strings take =, !=, LIKE, ILIKE and IN."
                ),
            )


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.strip() == value and value.lower().lstrip("+-") not in ("nan", "inf", "infinity")
