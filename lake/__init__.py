"""The lake: Parquet tables, their current-state SQL views, search, upkeep and transfer.

``Lake`` (DuckDB, pandas) is imported lazily so that ``runlake.core.layout`` and
``runlake.core.writer`` stay importable from the pyarrow-only training side.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runlake.lake.query import Lake, Page

__all__ = ["Lake", "Page"]


def __getattr__(name: str) -> Any:
    if name in ("Lake", "Page"):
        from runlake.lake import query

        return getattr(query, name)
    raise AttributeError(f"module 'runlake.lake' has no attribute {name!r}")
