"""The search rules in plain Python over plain rows: the oracle the compiled SQL is tested against.

Written separately from ``compiler`` on purpose (no shared helpers beyond the AST), so a
differential test comparing the two catches a mistake in either.

A row is a dict::

    {"run": {"run_id": ..., "status": ..., "start_time": ..., ...},   # columns of `runs`
     "params": {key: value}, "tags": {key: value},                    # strings
     "metrics": {key: {"value": v, "min_value": lo, "max_value": hi}}}  # floats

A missing key, or a None value, is "missing".
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, assert_never

from runlake.lake.search.syntax import (
    Aggregate,
    And,
    Comparison,
    Entity,
    Expr,
    Field,
    InList,
    IsNull,
    MetricAgg,
    Not,
    Op,
    Operand,
    Or,
    OrderKey,
)

Row = dict[str, Any]

_SUMMARY = {Aggregate.LATEST: "value", Aggregate.MIN: "min_value", Aggregate.MAX: "max_value"}
_BUCKET = {Entity.PARAM: "params", Entity.TAG: "tags"}


def operand_value(operand: Operand, row: Row) -> Any:
    """The value an operand reads from a row, or None when the key is missing."""
    if isinstance(operand, MetricAgg):
        summary = row["metrics"].get(operand.metric.key)
        return None if summary is None else summary.get(_SUMMARY[operand.aggregate])
    if operand.entity is Entity.METRIC:
        summary = row["metrics"].get(operand.key)
        return None if summary is None else summary.get("value")
    if operand.entity is Entity.ATTRIBUTE:
        return row["run"].get(operand.key)
    return row[_BUCKET[operand.entity]].get(operand.key)


def matches(node: Expr | None, row: Row) -> bool:
    """Whether a row satisfies a filter (None matches everything)."""
    if node is None:
        return True
    match node:
        case And(items):
            return all(matches(item, row) for item in items)
        case Or(items):
            return any(matches(item, row) for item in items)
        case Not(item):
            return not matches(item, row)
        case IsNull(operand, negated):
            return (operand_value(operand, row) is None) is not negated
        case InList(operand, values, negated):
            value = operand_value(operand, row)
            return value is not None and ((value in values) is not negated)
        case Comparison():
            return _compare(node, operand_value(node.operand, row))
        case _:
            assert_never(node)


def search(node: Expr | None, rows: Iterable[Row]) -> list[str]:
    """Run ids of the rows matching ``node``, in input order."""
    return [row["run"]["run_id"] for row in rows if matches(node, row)]


def _compare(node: Comparison, actual: Any) -> bool:
    if actual is None:
        return False
    op, wanted = node.op, node.value
    if op.is_pattern:
        assert isinstance(wanted, str)
        folded = op in (Op.ILIKE, Op.NOT_ILIKE)
        hit = like(actual, wanted, ignore_case=folded)
        return not hit if op in (Op.NOT_LIKE, Op.NOT_ILIKE) else hit
    if isinstance(wanted, str):
        return bool(actual == wanted) if op is Op.EQ else bool(actual != wanted)
    if isinstance(actual, str):  # a param or tag compared with a number
        number = text_number(actual)
        return number is not None and _numeric(op, number, wanted)
    if isinstance(actual, float) and math.isnan(actual):
        return op is Op.NE  # NaN satisfies only '!='
    return _numeric(op, float(actual), wanted)  # times are compared as doubles


def _numeric(op: Op, a: float, b: float) -> bool:
    return {
        Op.EQ: a == b,
        Op.NE: a != b,
        Op.LT: a < b,
        Op.LE: a <= b,
        Op.GT: a > b,
        Op.GE: a >= b,
    }[op]


_DECIMAL_CHARS = frozenset("0123456789+-.eE")


def text_number(text: str) -> float | None:
    """A param/tag value as a number, or None if it does not count as one.

    Counts: an ASCII decimal with optional sign, fraction and exponent ('64', '1e-2', '.5',
    '5.', '+1'), or inf/infinity with optional sign, any case. Not: surrounding spaces,
    underscores, hex, other scripts' digits, 'nan'. Decimals too large become ±inf.
    """
    body = text[1:] if text[:1] in "+-" else text
    if body.lower() in ("inf", "infinity"):
        return float(text)
    if not body or not set(text) <= _DECIMAL_CHARS or body[0] in "+-":
        return None
    mantissa = re.split("[eE]", body, maxsplit=1)[0]
    if not any(ch.isdigit() for ch in mantissa):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _fold(text: str) -> str:
    # One code point to one code point, like DuckDB's lower(): 'İ' -> 'i' (Python's full
    # mapping gives two code points) and no final-sigma rule.
    return "".join(ch.lower()[0] for ch in text)


def like(text: str, pattern: str, *, ignore_case: bool = False) -> bool:
    """SQL LIKE: '%' any run of characters, '_' exactly one code point, no escape character."""
    if ignore_case:
        text, pattern = _fold(text), _fold(pattern)
    parts = []
    for ch in pattern:
        parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.fullmatch("".join(parts), text, flags=re.DOTALL) is not None


# -- ordering ---------------------------------------------------------------------------------


def _sort_position(operand: Operand, row: Row) -> tuple[int, Any]:
    """(rank, value): rank 0 has a value, 1 is NaN, 2 is missing."""
    value = operand_value(operand, row)
    if value is None:
        return 2, None
    if isinstance(value, float) and math.isnan(value):
        return 1, None
    return 0, value


def sort_rows(rows: Iterable[Row], keys: Sequence[OrderKey]) -> list[Row]:
    """Rows in search order: each key (value, then NaN, then missing, in either direction),
    then start_time DESC unless it is a key, then run_id ascending."""
    tie_breaks = []
    named = {(k.operand.entity, k.operand.key) for k in keys if not isinstance(k.operand, MetricAgg)}
    if (Entity.ATTRIBUTE, "start_time") not in named:
        tie_breaks.append(OrderKey(Field(Entity.ATTRIBUTE, "start_time"), descending=True))
    if (Entity.ATTRIBUTE, "run_id") not in named:
        tie_breaks.append(OrderKey(Field(Entity.ATTRIBUTE, "run_id")))
    all_keys = [*keys, *tie_breaks]

    def compare(a: Row, b: Row) -> int:
        for key in all_keys:
            (rank_a, value_a), (rank_b, value_b) = _sort_position(key.operand, a), _sort_position(key.operand, b)
            if rank_a != rank_b:
                return -1 if rank_a < rank_b else 1
            if rank_a == 0 and value_a != value_b:
                result = -1 if value_a < value_b else 1
                return -result if key.descending else result
        return 0

    return sorted(rows, key=functools.cmp_to_key(compare))
