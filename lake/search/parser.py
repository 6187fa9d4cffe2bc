"""Filter text -> typed AST: the lark parser (built once), limits, and alias resolution.

No lark object leaves this module: parse errors become ``SearchSyntaxError`` and trees become
the dataclasses of ``syntax``.
"""

from __future__ import annotations

import difflib
import math
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.tree import Meta

from runlake.core.errors import InvalidArgument
from runlake.lake.search.check import check
from runlake.lake.search.errors import (
    SearchSyntaxError,
    character_problem,
    expected_words,
    token_hint,
    token_text,
)
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
    Or,
    OrderKey,
    Span,
)

# Limits against hostile or runaway input; each is a clean SearchSyntaxError.
MAX_FILTER_LENGTH = 10_000
MAX_DEPTH = 100  # nested parentheses and NOTs
MAX_NODES = 1_000  # conditions plus IN-list items

ENTITY_PREFIXES: dict[str, Entity] = {
    "metrics": Entity.METRIC,
    "metric": Entity.METRIC,
    "params": Entity.PARAM,
    "param": Entity.PARAM,
    "parameters": Entity.PARAM,
    "parameter": Entity.PARAM,
    "tags": Entity.TAG,
    "tag": Entity.TAG,
    "attributes": Entity.ATTRIBUTE,
    "attribute": Entity.ATTRIBUTE,
    "attr": Entity.ATTRIBUTE,
    "run": Entity.ATTRIBUTE,
}

# MLflow's spellings of two attributes (its docs show all of these).
ATTRIBUTE_ALIASES = {
    "created": "start_time",
    "Created": "start_time",
    "run name": "run_name",
    "Run name": "run_name",
    "Run Name": "run_name",
}

_AGGREGATES = {"MIN": Aggregate.MIN, "MAX": Aggregate.MAX, "LATEST": Aggregate.LATEST}
_OPS = {
    "EQ": Op.EQ,
    "NE": Op.NE,
    "LT": Op.LT,
    "LE": Op.LE,
    "GT": Op.GT,
    "GE": Op.GE,
    "LIKE": Op.LIKE,
    "ILIKE": Op.ILIKE,
}


def _build_parser() -> Lark:
    grammar = resources.files("runlake.lake.search").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        lexer="basic",
        propagate_positions=True,
        maybe_placeholders=True,
        start=["filter", "order_entry"],
    )


_PARSER = _build_parser()
# Lark compiles its lexer's regular expressions at the first parse (4 ms): done here, with
# the rest of the parser's building, so that a process's first search does not pay it.
_PARSER.parse("metrics.m > 0", start="filter")


def parse_filter(text: str | None) -> Expr | None:
    """Parse and check a filter string.

    Args:
        text: the filter, e.g. ``"metrics.rmse < 0.3 AND params.lr = '0.01'"``.

    Returns:
        The AST, or None for an empty (or whitespace-only) filter, which matches every run.

    Raises:
        SearchSyntaxError: the text does not parse or breaks a search rule.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidArgument(f"A filter must be a string, not {type(text).__name__}", filter=repr(text))
    if len(text) > MAX_FILTER_LENGTH:
        raise SearchSyntaxError(
            f"The filter is too long ({len(text):,} characters; the limit is {MAX_FILTER_LENGTH:,})",
            text=text,
            position=MAX_FILTER_LENGTH,
            hint="Shorten the filter; to select many runs by id, search in smaller batches.",
        )
    _check_encodable(text)
    if not text.strip():
        return None
    tree = _parse(text, "filter")
    _check_shape(tree, text)
    ast: Expr = _transform(tree, text)
    check(ast, text)
    return ast


def parse_order_entry(text: str) -> OrderKey:
    """Parse one ``order_by`` entry such as ``"metrics.loss DESC"`` or ``"MIN(metrics.loss)"``.

    Raises:
        SearchSyntaxError: the entry does not parse or names something that cannot be sorted on.
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"An order_by entry must be a string, not {type(text).__name__}", entry=repr(text))
    if len(text) > MAX_FILTER_LENGTH:
        raise SearchSyntaxError("The order_by entry is too long", text=text, position=MAX_FILTER_LENGTH)
    _check_encodable(text)
    if not text.strip():
        raise SearchSyntaxError(
            "Empty order_by entry",
            text=text,
            position=0,
            expected=["an identifier such as metrics.rmse, params.lr, tags.team or status"],
            hint="Write one key per entry, e.g. 'metrics.rmse DESC'.",
        )
    tree = _parse(text, "order_entry")
    key: OrderKey = _transform(tree, text)
    check(key, text)
    return key


def _check_encodable(text: str) -> None:
    # A lone surrogate (possible in a Python str, never in UTF-8) would fail later, in DuckDB.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise SearchSyntaxError(
            "The text holds a character that is not valid Unicode (a lone surrogate)",
            text=text.encode("utf-8", "replace").decode("utf-8"),
            position=e.start,
        ) from None


def _parse(text: str, start: str) -> Tree[Token]:
    try:
        return _PARSER.parse(text, start=start)
    except UnexpectedCharacters as e:
        raise _character_error(text, e.pos_in_stream or 0, start) from None
    except UnexpectedToken as e:
        raise _token_error(text, e, start) from None
    except UnexpectedInput as e:  # any other lark input error: still a clean, positioned error
        raise SearchSyntaxError("Cannot parse this", text=text, position=e.pos_in_stream or 0) from None


def _transform(tree: Tree[Token], text: str) -> Any:
    try:
        return _ToAst(text).transform(tree)
    except VisitError as e:  # lark wraps errors raised in callbacks; ours are meant for users
        if isinstance(e.orig_exc, SearchSyntaxError):
            raise e.orig_exc from None
        raise


def _accepts_at(text: str, position: int, start: str) -> set[str]:
    """The terminals the parser would accept after the text before ``position``."""
    try:
        interactive = _PARSER.parse_interactive(text[:position], start=start)
        interactive.exhaust_lexer()
        return set(interactive.accepts())  # type: ignore[no-untyped-call]
    except UnexpectedInput:
        return set()


def _character_error(text: str, position: int, start: str) -> SearchSyntaxError:
    accepts = _accepts_at(text, position, start)
    problem, hint = character_problem(text, position, accepts)
    return SearchSyntaxError(problem, text=text, position=position, expected=expected_words(accepts), hint=hint)


def _token_error(text: str, e: UnexpectedToken, start: str) -> SearchSyntaxError:
    token = e.token
    accepts = set(e.accepts or e.expected)
    name = token.type
    # At the end, point just past the last token rather than past trailing blanks.
    position = len(text.rstrip()) if name == "$END" else token.start_pos
    end = None if name == "$END" else token.end_pos
    kind = "filter" if start == "filter" else "order_by entry"
    if name == "$END":
        problem = f"Unexpected end of {kind}"
    else:
        problem = f"Unexpected {token_text(name, str(token))}"
    hint = token_hint(text, name, str(token), position, accepts, start)
    return SearchSyntaxError(
        problem, text=text, position=position, end=end, expected=expected_words(accepts), hint=hint
    )


def _check_shape(tree: Tree[Token], text: str) -> None:
    """Depth and size limits, walked without recursion (the transformer recurses)."""
    stack: list[tuple[Tree[Token], int]] = [(tree, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        kind = node.data
        if kind in ("group", "not_expr"):
            depth += 1
            if depth > MAX_DEPTH:
                raise SearchSyntaxError(
                    f"Parentheses and NOTs are nested too deeply (the limit is {MAX_DEPTH})",
                    text=text,
                    position=node.meta.start_pos,
                    hint="Simplify the filter: remove redundant parentheses or double NOTs.",
                )
        elif kind in ("comparison", "in_list", "is_null", "string_list"):
            nodes += len(node.children) // 2 + 1 if kind == "string_list" else 1  # items, not commas
            if nodes > MAX_NODES:
                raise SearchSyntaxError(
                    f"The filter has too many conditions and list items (the limit is {MAX_NODES:,})",
                    text=text,
                    position=node.meta.start_pos,
                    hint="Split the search into smaller ones.",
                )
        stack.extend((child, depth) for child in node.children if isinstance(child, Tree))


def _span(meta: Meta) -> Span:
    return Span(meta.start_pos, meta.end_pos)


def _tspan(token: Token) -> Span:
    return Span(token.start_pos, token.end_pos)  # type: ignore[arg-type]


def _unquote(token: Token) -> str:
    return str(token)[1:-1]


@v_args(meta=True)
class _ToAst(Transformer[Token, Any]):
    """Lark tree -> syntax dataclasses. Holds only the text (for error carets)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def _error(self, problem: str, span: Span, **kwargs: object) -> SearchSyntaxError:
        return SearchSyntaxError(problem, text=self._text, position=span.start, end=span.end, **kwargs)  # type: ignore[arg-type]

    # -- boolean structure ------------------------------------------------------------------
    def filter(self, meta: Meta, children: list[Any]) -> Any:
        return children[0]

    def disjunction(self, meta: Meta, children: list[Any]) -> Any:
        return Or(tuple(c for c in children if not isinstance(c, Token)), _span(meta))

    def conjunction(self, meta: Meta, children: list[Any]) -> Any:
        return And(tuple(c for c in children if not isinstance(c, Token)), _span(meta))

    def not_expr(self, meta: Meta, children: list[Any]) -> Any:
        return Not(children[1], _span(meta))

    def group(self, meta: Meta, children: list[Any]) -> Any:
        return children[1]

    # -- predicates -------------------------------------------------------------------------
    def comparison(self, meta: Meta, children: list[Any]) -> Any:
        operand, (op, op_span), (value, value_span) = children
        return Comparison(operand, op, value, _span(meta), op_span, value_span)

    def in_list(self, meta: Meta, children: list[Any]) -> Any:
        operand, negation, _in, _lpar, values, _rpar = children
        return InList(operand, values, negation is not None, _span(meta))

    def is_null(self, meta: Meta, children: list[Any]) -> Any:
        operand, _is, negation, _null = children
        return IsNull(operand, negation is not None, _span(meta))

    def comparator(self, meta: Meta, children: list[Any]) -> Any:
        token = children[0]
        return _OPS[token.type], _tspan(token)

    def not_like(self, meta: Meta, children: list[Any]) -> Any:
        return Op.NOT_LIKE, _span(meta)

    def not_ilike(self, meta: Meta, children: list[Any]) -> Any:
        return Op.NOT_ILIKE, _span(meta)

    def string(self, meta: Meta, children: list[Any]) -> Any:
        return _unquote(children[0]), _span(meta)

    def string_list(self, meta: Meta, children: list[Any]) -> Any:
        return tuple(value for value, _ in (c for c in children if not isinstance(c, Token)))

    def NUMBER(self, token: Token) -> tuple[float, Span]:
        number = float(token)
        if math.isinf(number):
            raise self._error(
                f"The number {token} is too large",
                _tspan(token),
                hint="Numbers must fit in a 64-bit float (about ±1.8e308).",
            )
        return number, _tspan(token)

    # -- operands ---------------------------------------------------------------------------
    def aggregate(self, meta: Meta, children: list[Any]) -> Any:
        name, _lpar, field, _rpar = children
        return MetricAgg(_AGGREGATES[name.type], field, _span(meta))

    def name_field(self, meta: Meta, children: list[Any]) -> Any:
        (name,) = children
        prefix, dot, key = str(name).partition(".")
        if not dot:
            return self._field(None, None, prefix, _span(meta))
        prefix_span = Span(name.start_pos, name.start_pos + len(prefix))
        return self._field(prefix, prefix_span, key, _span(meta))

    def quoted_field(self, meta: Meta, children: list[Any]) -> Any:
        return self._field(None, None, _unquote(children[0]), _span(meta))

    def quoted_key_field(self, meta: Meta, children: list[Any]) -> Any:
        prefix_token, _dot, key_token = children
        prefix = str(prefix_token) if prefix_token.type == "NAME" else _unquote(prefix_token)
        if prefix_token.type == "NAME" and "." in prefix:
            entity, _, partial = prefix.partition(".")
            raise self._error(
                "Only part of this key is quoted",
                _span(meta),
                hint=f"Quote the whole key: {entity}.`{partial}.{_unquote(key_token)}`",
            )
        return self._field(prefix, _tspan(prefix_token), _unquote(key_token), _span(meta))

    def quoted_prefix_field(self, meta: Meta, children: list[Any]) -> Any:
        prefix_token, _dot, key_token = children
        return self._field(_unquote(prefix_token), _tspan(prefix_token), str(key_token), _span(meta))

    def _field(self, prefix: str | None, prefix_span: Span | None, key: str, span: Span) -> Field:
        if prefix is None:
            entity = Entity.ATTRIBUTE
        else:
            entity = ENTITY_PREFIXES.get(prefix)  # type: ignore[assignment]
            if entity is None:
                assert prefix_span is not None
                raise self._error(
                    f"Unknown prefix '{prefix}'",
                    prefix_span,
                    expected=list(ENTITY_PREFIXES),
                    hint=_prefix_hint(prefix),
                )
        if not key:
            raise self._error("Empty key", span, hint="Name the key, e.g. metrics.`f1 score`.")
        if entity is Entity.ATTRIBUTE:
            key = ATTRIBUTE_ALIASES.get(key, key)
        return Field(entity, key, span)

    # -- order_by entries -------------------------------------------------------------------
    def order_entry(self, meta: Meta, children: list[Any]) -> Any:
        operand, direction = children
        return OrderKey(operand, direction is not None and direction.children[0].type == "DESC", _span(meta))


def _prefix_hint(prefix: str) -> str:
    lowered = prefix.lower()
    if lowered in ENTITY_PREFIXES:
        return f"Prefixes are case-sensitive: write '{lowered}.'"
    close = difflib.get_close_matches(lowered, list(ENTITY_PREFIXES), n=1)
    if close:
        return f"Did you mean '{close[0]}.'? Keys with dots or spaces go in backticks: tags.`a b`."
    return "Start with metrics., params., tags. or attributes. (or name an attribute such as status)."
