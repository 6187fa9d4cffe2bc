"""SQL fragments that carry their own bound values, and the helpers that combine them.

A ``Fragment`` is ``(sql, params)``: text with ``?`` placeholders and the values for them, in
order. Fragments combine only through the helpers here, so the values always travel with
their text and no caller counts ``?`` positions by hand. The search compiler returns the same
shape. Identifiers never come from user text: only from fixed tables in the calling module.
"""

from __future__ import annotations

from collections.abc import Iterable, KeysView, Sequence
from typing import Any, NamedTuple

from runlake.core.errors import InvalidArgument


class Fragment(NamedTuple):
    """SQL text and the values of its ``?`` placeholders."""

    sql: str
    params: tuple[Any, ...] = ()


def q(text: str, *params: Any) -> Fragment:
    """A fragment from fixed text and its values."""
    return Fragment(text, tuple(params))


def as_fragment(value: Fragment | tuple[str, Sequence[Any]] | str) -> Fragment:
    """A fragment from a fragment, a ``(sql, params)`` pair (the search compiler's) or bare text."""
    if isinstance(value, str):
        return Fragment(value)
    sql, params = value
    return Fragment(sql, tuple(params))


def join(parts: Iterable[Fragment | tuple[str, Sequence[Any]] | str], separator: str = " ") -> Fragment:
    """The fragments' texts joined by ``separator``, their values in the same order."""
    items = [as_fragment(p) for p in parts]
    return Fragment(separator.join(p.sql for p in items), tuple(v for p in items for v in p.params))


def all_of(conditions: Iterable[Fragment | tuple[str, Sequence[Any]] | str]) -> Fragment:
    """``(c1) AND (c2) ...``; TRUE for none."""
    items = [as_fragment(c) for c in conditions]
    if not items:
        return Fragment("TRUE")
    return join([Fragment(f"({c.sql})", c.params) for c in items], " AND ")


def check_ids(ids: Any, what: str = "ids") -> list[str]:
    """``ids`` as a list of strings; anything else (a number, one string, None inside) is refused.

    An id of another type would reach DuckDB as a number or a list and fail there with a raw
    conversion error - or match by a cast nobody meant.

    Raises:
        InvalidArgument: not a sequence of strings.
    """
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple, set, frozenset, dict, KeysView)):
        raise InvalidArgument(f"{what} must be a list of strings, got {type(ids).__name__}")
    items = list(ids)
    if not all(isinstance(i, str) for i in items):
        raise InvalidArgument(f"{what} must be a list of strings")
    return items


def check_id(value: Any, what: str = "run_id") -> str:
    """One id that must be a string (raises ``InvalidArgument`` otherwise)."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, got {type(value).__name__}")
    return value


def id_list(column: str, ids: Sequence[str]) -> Fragment:
    """``column IN (the ids)`` with the ids as one bound list (fine at any length)."""
    return Fragment(f"{column} IN (SELECT unnest(?::VARCHAR[]))", (check_ids(ids),))


# Up to this many ids are looked up through the run_id index (an IN list of placeholders);
# more are joined against one bound list, which scans but stays linear.
INDEX_LOOKUP_LIMIT = 1000


def indexed_ids(column: str, ids: Sequence[str]) -> Fragment:
    """``column IN (...)`` shaped so DuckDB probes its ART index for page-sized id sets."""
    ids = check_ids(ids)
    if len(ids) <= INDEX_LOOKUP_LIMIT:
        return Fragment(f"{column} IN ({', '.join('?' * len(ids)) or 'NULL'})", tuple(ids))
    return id_list(column, ids)
