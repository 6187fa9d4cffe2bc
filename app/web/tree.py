"""Nested runs in the runs grid: top-level matches, children per parent, one block of flat rows.

Which matching runs are top-level, how many matching children each parent has, and the
flattened rows of one grid block with expanded parents' children inserted under them.

A matching run shows at the top level when its parent is not itself a match, so a filter that
matches some children but not their parent still shows them. The user's filter is combined with
extra conditions in the search syntax (``(<filter>) AND parent_run_id IS NULL OR ...``), so it
goes through the search parser and binds every value. Who is whose parent comes from the lake's
nesting lookups (``Services.run_parents``, ``children_of``, ``child_counts``): no SQL here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from runlake.app.web.services import Services, quote
from runlake.core import layout

# Ids a user can have expanded at once (the URL holds them): the oldest drop out first.
MAX_EXPANDED = 100
# Parents whose membership is checked with `run_id IN (...)` searches; past this many, the whole
# match list is fetched once instead (one query, however many parents).
MAX_PARENT_PROBES = 1_000
# Ids per IN list: well inside the search limits (10,000 characters, 1,000 nodes).
IN_CHUNK = 200
# How deep expanded children nest before the tree stops expanding (a guard against cycles).
MAX_DEPTH = 20


@dataclass(frozen=True)
class Nesting:
    """How the matching runs of one view nest.

    Attributes:
        top_filter: a filter selecting the view's top-level matches, or None when it would be
            too long for the search limits (then the top level is the match list minus ``nested``).
        nested: matching runs whose parent also matches (they show under it, not at the top).
        counts: matching children per matching parent (the number on its toggle).
    """

    top_filter: str | None
    nested: frozenset[str] = field(default_factory=frozenset)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def flat(self) -> bool:
        return not self.nested


@dataclass(frozen=True)
class Block:
    """One block of grid rows: the runs' frame in display order and the tree facts per row."""

    frame: pd.DataFrame
    rows: int  # rows in the whole flattened grid (top level plus expanded children)
    matches: int  # runs matching the view, nested or not
    depth: dict[str, int]
    counts: dict[str, int]
    expanded: frozenset[str]


def combine(filter_text: str, condition: str) -> str:
    """``(<filter>) AND (<condition>)`` in the search syntax; just the condition for no filter.

    Raises:
        SearchSyntaxError: ``filter_text`` is not a filter on its own. Checked first, so text
            like ``a = '1') OR (b = '2'`` cannot regroup the added condition.
    """
    if not filter_text.strip():
        return condition
    _check(filter_text)
    return f"({filter_text}) AND ({condition})"


@functools.lru_cache(maxsize=256)
def _check(filter_text: str) -> None:
    from runlake.lake.search import parse_filter

    parse_filter(filter_text)


def id_list(run_ids: Sequence[str]) -> str:
    return ", ".join(quote(r) for r in run_ids)


def in_filters(filter_text: str, column: str, run_ids: Sequence[str]) -> Iterator[str]:
    """Filters ``(<filter>) AND <column> IN (...)`` covering ``run_ids`` in chunks that each
    stay inside the search's length limit."""
    from runlake.lake.search import MAX_FILTER_LENGTH

    chunk: list[str] = []
    for run_id in run_ids:
        if chunk and (
            len(chunk) >= IN_CHUNK
            or len(combine(filter_text, f"{column} IN ({id_list([*chunk, run_id])})")) > MAX_FILTER_LENGTH
        ):
            yield combine(filter_text, f"{column} IN ({id_list(chunk)})")
            chunk = []
        chunk.append(run_id)
    if chunk:
        yield combine(filter_text, f"{column} IN ({id_list(chunk)})")


def parse_expanded(value: Any) -> list[str]:
    """The expanded parents from a URL value or a store (comma-separated or a list)."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    out = list(dict.fromkeys(str(i).strip() for i in items if str(i).strip()))
    return out[-MAX_EXPANDED:]


def toggle(expanded: Sequence[str] | None, run_id: str, open_: bool) -> list[str]:
    """``expanded`` with ``run_id`` opened (appended) or closed (removed)."""
    current = [r for r in parse_expanded(list(expanded or [])) if r != run_id]
    return (current + [run_id])[-MAX_EXPANDED:] if open_ else current


def _unordered(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in ("order_by", "offset", "page_size", "columns", "page_token")}


def _fits(filter_text: str) -> bool:
    """True when the search accepts the filter (its length, node and depth limits)."""
    from runlake.lake.search import SearchSyntaxError, parse_filter

    try:
        parse_filter(filter_text)
    except SearchSyntaxError:
        return False
    return True


def nesting(services: Services, search_kwargs: dict[str, Any]) -> Nesting:
    """How the runs matching ``search_kwargs`` (``RunsQuery.search_kwargs()``) nest; cached per lake state."""
    base = _unordered(search_kwargs)
    return services.cached("nesting", base, lambda: _nesting(services, base))


def _nesting(services: Services, base: dict[str, Any]) -> Nesting:
    text = base.get("filter_string") or ""
    # Only ids a run can have: a parent id written by an old client unchecked (quotes, spaces)
    # names no run, and would not survive being written into a filter.
    candidates = sorted(p for p in services.run_parents() if p and layout.is_valid_id(p))
    if not candidates:
        return Nesting(text)
    # Which runs that have children match the view.
    if len(candidates) <= MAX_PARENT_PROBES:
        parents: list[str] = []
        for probe in in_filters(text, "run_id", candidates):
            parents += services.search_run_ids(**{**base, "filter_string": probe})
    else:
        known = set(candidates)
        parents = [r for r in services.search_run_ids(**base) if r in known]
    if not parents:
        return Nesting(text)
    # Their matching children: the runs that show under a parent rather than at the top.
    if len(parents) <= MAX_PARENT_PROBES:
        nested: list[str] = []
        for probe in in_filters(text, "parent_run_id", sorted(parents)):
            nested += services.search_run_ids(**{**base, "filter_string": probe})
    else:
        under = set(services.children_of(sorted(parents)))
        nested = [r for r in services.search_run_ids(**base) if r in under]
    if not nested:
        return Nesting(text)
    counts = dict(services.child_counts(sorted(nested)))
    top = combine(text, f"parent_run_id IS NULL OR parent_run_id NOT IN ({id_list(sorted(counts))})")
    return Nesting(top if _fits(top) else None, frozenset(nested), counts)


# -- one block of the flattened tree -------------------------------------------------------
def block(
    services: Services,
    search_kwargs: dict[str, Any],
    offset: int,
    size: int,
    columns: list[str] | None,
    expanded: Sequence[str] = (),
) -> Block:
    """Rows ``offset .. offset+size`` of the grid: top-level matches in the view's order, each
    expanded parent followed by its matching children (recursively), indented by depth."""
    nest = nesting(services, search_kwargs)
    if nest.flat:
        page = services.search_page(**{**search_kwargs, "offset": offset, "page_size": size, "columns": columns})
        return Block(page.frame, page.total, page.total, {}, {}, frozenset())
    opened = frozenset(r for r in expanded if r in nest.counts)
    roots = [r for r in opened if r not in nest.nested]  # expanded parents shown at the top level
    subtrees = {r: _subtree(services, search_kwargs, nest, opened, r, 1, {r}) for r in roots}
    if not subtrees and nest.top_filter is not None:
        page = services.search_page(
            **{
                **search_kwargs,
                "filter_string": nest.top_filter,
                "offset": offset,
                "page_size": size,
                "columns": columns,
            }
        )
        return Block(page.frame, page.total, page.total + len(nest.nested), {}, nest.counts, opened)
    top_total = _top_total(services, search_kwargs, nest)
    rows = top_total + sum(len(s) for s in subtrees.values())
    matches = top_total + len(nest.nested)
    flat: list[tuple[str, int]] = []
    for run_id in _top_ids(services, search_kwargs, nest, 0, offset + size):
        flat.append((run_id, 0))
        flat += subtrees.get(run_id, [])
        if len(flat) >= offset + size:
            break
    shown = flat[offset : offset + size]
    depth = {r: d for r, d in shown if d}
    return Block(services.frame_for([r for r, _ in shown], columns), rows, matches, depth, nest.counts, opened)


def _subtree(
    services: Services,
    kwargs: dict[str, Any],
    nest: Nesting,
    opened: frozenset[str],
    parent: str,
    depth: int,
    seen: set[str],
) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for child in children(services, kwargs, parent):
        if child in seen:
            continue
        seen.add(child)
        out.append((child, depth))
        if child in opened and depth < MAX_DEPTH:
            out += _subtree(services, kwargs, nest, opened, child, depth + 1, seen)
    return out


def children(services: Services, search_kwargs: dict[str, Any], parent: str) -> list[str]:
    """A parent's children that match the view, in the view's order."""
    if not layout.is_valid_id(parent):
        return []  # an expanded id from a hand-edited URL: no run has it
    text = search_kwargs.get("filter_string") or ""
    kwargs = {k: v for k, v in search_kwargs.items() if k not in ("offset", "page_size", "columns", "page_token")}
    return services.search_run_ids(**{**kwargs, "filter_string": combine(text, f"parent_run_id = {quote(parent)}")})


def _top_total(services: Services, kwargs: dict[str, Any], nest: Nesting) -> int:
    if nest.top_filter is not None:
        return services.search_page(
            **{**kwargs, "filter_string": nest.top_filter, "offset": 0, "page_size": 1, "columns": []}
        ).total
    return len(_top_list(services, kwargs, nest))


def _top_ids(services: Services, kwargs: dict[str, Any], nest: Nesting, offset: int, size: int) -> list[str]:
    """Top-level run ids ``offset .. offset+size`` in the view's order."""
    if nest.top_filter is not None:
        ordered = {k: v for k, v in kwargs.items() if k not in ("offset", "page_size", "columns", "page_token")}
        ids = services.search_run_ids(**{**ordered, "filter_string": nest.top_filter, "max_results": offset + size})
        return ids[offset : offset + size]
    return _top_list(services, kwargs, nest)[offset : offset + size]


def _top_list(services: Services, kwargs: dict[str, Any], nest: Nesting) -> list[str]:
    ordered = {k: v for k, v in kwargs.items() if k not in ("offset", "page_size", "columns", "page_token")}
    return [r for r in services.search_run_ids(**ordered) if r not in nest.nested]
