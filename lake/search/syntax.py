"""The typed AST of a run-search filter: frozen dataclasses with source spans, and their enums.

Spans say where a node came from in the filter text (for error carets). They are excluded from
equality, so ``parse_filter(to_text(ast)) == ast`` compares meaning, not layout.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """Half-open character range ``[start, end)`` in the filter text."""

    start: int
    end: int


NO_SPAN = Span(0, 0)


def _span() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False)


class Entity(enum.Enum):
    """What an identifier names. The value is the canonical prefix."""

    METRIC = "metrics"
    PARAM = "params"
    TAG = "tags"
    ATTRIBUTE = "attributes"


class Aggregate(enum.Enum):
    """Which summary of a metric's history: LATEST is the same value as a bare metric."""

    MIN = "MIN"
    MAX = "MAX"
    LATEST = "LATEST"


class Op(enum.Enum):
    """Comparison operators. The value is how the operator is written."""

    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    LIKE = "LIKE"
    ILIKE = "ILIKE"
    NOT_LIKE = "NOT LIKE"
    NOT_ILIKE = "NOT ILIKE"

    @property
    def is_ordering(self) -> bool:
        return self in (Op.LT, Op.LE, Op.GT, Op.GE)

    @property
    def is_pattern(self) -> bool:
        return self in (Op.LIKE, Op.ILIKE, Op.NOT_LIKE, Op.NOT_ILIKE)


# Attribute columns of `runs` a filter may name, by kind.
STRING_ATTRIBUTES = (
    "run_id",
    "run_name",
    "status",
    "user_id",
    "artifact_uri",
    "source_name",
    "source_type",
    "source_version",
    "parent_run_id",
)
NUMERIC_ATTRIBUTES = ("start_time", "end_time")
ATTRIBUTES = STRING_ATTRIBUTES + NUMERIC_ATTRIBUTES


@dataclass(frozen=True)
class Field:
    """``metrics.rmse``, ``params.lr``, ``tags.team``, or an attribute such as ``start_time``.

    For attributes ``key`` is the canonical column name (aliases are resolved by the parser).
    """

    entity: Entity
    key: str
    span: Span = _span()


@dataclass(frozen=True)
class MetricAgg:
    """``MIN(metrics.loss)``, ``MAX(...)`` or ``LATEST(...)``."""

    aggregate: Aggregate
    metric: Field
    span: Span = _span()


Operand = Field | MetricAgg
Value = str | float


@dataclass(frozen=True)
class Comparison:
    """``operand op value``: a string value is a ``str``, a number a ``float``."""

    operand: Operand
    op: Op
    value: Value
    span: Span = _span()
    op_span: Span = _span()
    value_span: Span = _span()


@dataclass(frozen=True)
class InList:
    """``operand [NOT] IN ('a', 'b')``."""

    operand: Operand
    values: tuple[str, ...]
    negated: bool = False
    span: Span = _span()


@dataclass(frozen=True)
class IsNull:
    """``operand IS [NOT] NULL``: the key is absent (or present)."""

    operand: Operand
    negated: bool = False
    span: Span = _span()


@dataclass(frozen=True)
class And:
    """Two or more conditions that must all hold."""

    items: tuple[Expr, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Or:
    """Two or more conditions of which at least one holds."""

    items: tuple[Expr, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Not:
    """The negation of a condition (two-valued: a run missing the key satisfies ``NOT``)."""

    item: Expr
    span: Span = _span()


Expr = Comparison | InList | IsNull | And | Or | Not
Predicate = Comparison | InList | IsNull


def operand_field(operand: Operand) -> Field:
    """The field an operand reads (the metric inside an aggregate)."""
    return operand.metric if isinstance(operand, MetricAgg) else operand


@dataclass(frozen=True)
class OrderKey:
    """One parsed ``order_by`` entry."""

    operand: Operand
    descending: bool = False
    span: Span = _span()
