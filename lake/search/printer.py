"""AST -> text: ``to_text`` gives a filter that parses back to the same AST; ``describe`` a sentence."""

from __future__ import annotations

import math
import re
from typing import assert_never

from runlake.core.errors import InvalidArgument
from runlake.lake.search.syntax import (
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
    Value,
)

# A key that, glued to its prefix, lexes as one NAME token (see grammar.lark) needs no quotes.
_BARE_KEY = re.compile(r"\w+(?:\.\w+)*")


def to_text(node: Expr | None) -> str:
    """Filter text for an AST; ``parse_filter(to_text(ast)) == ast``. Empty for None.

    Raises:
        InvalidArgument: the AST holds something the syntax cannot write (a string holding both
            quote characters, a NaN or infinite number).
    """
    if node is None:
        return ""
    match node:
        case And(items):
            return " AND ".join(_wrap(item, (And, Or)) for item in items)
        case Or(items):
            return " OR ".join(_wrap(item, (Or,)) for item in items)
        case Not(item):
            return "NOT " + _wrap(item, (And, Or))
        case Comparison(operand, op, value):
            return f"{operand_text(operand)} {op.value} {_value(value)}"
        case InList(operand, values, negated):
            listed = ", ".join(_string(v) for v in values)
            return f"{operand_text(operand)} {'NOT IN' if negated else 'IN'} ({listed})"
        case IsNull(operand, negated):
            return f"{operand_text(operand)} IS {'NOT NULL' if negated else 'NULL'}"
        case _:
            assert_never(node)


def order_text(key: OrderKey) -> str:
    """The ``order_by`` entry for a parsed key, e.g. ``"metrics.loss DESC"``."""
    return operand_text(key.operand) + (" DESC" if key.descending else " ASC")


def _wrap(node: Expr, needs_parens: tuple[type, ...]) -> str:
    text = to_text(node)
    return f"({text})" if isinstance(node, needs_parens) else text


def operand_text(operand: Operand) -> str:
    """``metrics.rmse``, ``tags.`my tag```, ``MIN(metrics.loss)``, ``status``."""
    if isinstance(operand, MetricAgg):
        return f"{operand.aggregate.value}({_field(operand.metric)})"
    return _field(operand)


def _field(field: Field) -> str:
    if field.entity is Entity.ATTRIBUTE:
        return field.key if _BARE_KEY.fullmatch(field.key) else _quote_name(field.key)
    if _BARE_KEY.fullmatch(field.key):
        return f"{field.entity.value}.{field.key}"
    return f"{field.entity.value}.{_quote_name(field.key)}"


def _quote_name(key: str) -> str:
    if "`" not in key:
        return f"`{key}`"
    if '"' not in key:
        return f'"{key}"'
    raise InvalidArgument('A key holding both ` and " cannot be written in a filter', key=key)


def _string(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise InvalidArgument("A string holding both ' and \" cannot be written in a filter", value=value)


def _value(value: Value) -> str:
    return _string(value) if isinstance(value, str) else format_number(value)


def format_number(value: float) -> str:
    """Shortest text that reads back as the same float: ``3``, ``0.25``, ``1e-05``."""
    if not math.isfinite(value):
        raise InvalidArgument("NaN and infinity cannot be written in a filter", value=repr(value))
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


# -- describe -------------------------------------------------------------------------------

_OP_WORDS = {Op.LIKE: "matches", Op.ILIKE: "matches", Op.NOT_LIKE: "does not match", Op.NOT_ILIKE: "does not match"}


def describe(node: Expr | None) -> str:
    """A sentence for people, e.g. "runs where rmse < 0.3 and param lr = '0.01'"."""
    return "all runs" if node is None else "runs where " + _describe(node)


def _describe(node: Expr) -> str:
    match node:
        case And(items):
            return " and ".join(_describe_wrapped(item, (And, Or)) for item in items)
        case Or(items):
            return " or ".join(_describe_wrapped(item, (Or,)) for item in items)
        case Not(item):
            return "not " + _describe_wrapped(item, (And, Or))
        case Comparison(operand, op, value):
            words = f"{_operand_words(operand)} {_OP_WORDS.get(op, op.value)} {_value(value)}"
            return words + " (ignoring case)" if op in (Op.ILIKE, Op.NOT_ILIKE) else words
        case InList(operand, values, negated):
            listed = ", ".join(_string(v) for v in values)
            return f"{_operand_words(operand)} is {'none' if negated else 'one'} of {listed}"
        case IsNull(operand, negated):
            return f"{_operand_words(operand)} is {'set' if negated else 'missing'}"
        case _:
            assert_never(node)


def _describe_wrapped(node: Expr, needs_parens: tuple[type, ...]) -> str:
    text = _describe(node)
    return f"({text})" if isinstance(node, needs_parens) else text


def _operand_words(operand: Operand) -> str:
    if isinstance(operand, MetricAgg):
        return f"{operand.aggregate.value.lower()} {operand.metric.key}"
    if operand.entity is Entity.METRIC:
        return operand.key
    if operand.entity is Entity.ATTRIBUTE:
        return operand.key.replace("_", " ")
    return f"{operand.entity.value[:-1]} {operand.key}"
