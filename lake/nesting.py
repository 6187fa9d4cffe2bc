"""The nested-run tree: parents, children, child counts and whole subtrees (any depth)."""

from __future__ import annotations

from collections.abc import Sequence

from runlake.lake.connection import Connection
from runlake.lake.sql import id_list, join, q


def run_parents(db: Connection) -> list[str]:
    """Ids that some run names as its parent (any lifecycle stage), sorted."""
    rows = db.rows(q("SELECT DISTINCT parent_run_id FROM runs WHERE parent_run_id IS NOT NULL ORDER BY 1"))
    return [r[0] for r in rows if r[0]]


def children_of(db: Connection, parent_ids: Sequence[str]) -> list[str]:
    """The runs whose parent is one of ``parent_ids`` (one level), in run id order."""
    if not parent_ids:
        return []
    rows = db.rows(
        join(["SELECT run_id FROM runs WHERE", id_list("parent_run_id", list(parent_ids)), "ORDER BY run_id"])
    )
    return [r[0] for r in rows]


def child_counts(db: Connection, run_ids: Sequence[str]) -> dict[str, int]:
    """Parent id -> how many of ``run_ids`` are its children (runs without a parent left out)."""
    if not run_ids:
        return {}
    rows = db.rows(
        join(
            [
                "SELECT parent_run_id, count(*) FROM runs WHERE",
                id_list("run_id", list(run_ids)),
                "AND parent_run_id IS NOT NULL GROUP BY parent_run_id",
            ]
        )
    )
    return {str(parent): int(n) for parent, n in rows}


def descendants(db: Connection, run_ids: Sequence[str]) -> list[str]:
    """Every run below the given runs in the nested-run tree (any depth), in no given order."""
    if not run_ids:
        return []
    rows = db.rows(
        join(
            [
                "WITH RECURSIVE tree(run_id) AS (SELECT run_id FROM runs WHERE",
                id_list("parent_run_id", list(run_ids)),
                "UNION SELECT r.run_id FROM runs r JOIN tree t ON r.parent_run_id = t.run_id) SELECT run_id FROM tree",
            ]
        )
    )
    given = set(run_ids)
    return [r[0] for r in rows if r[0] not in given]
