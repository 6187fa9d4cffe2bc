"""The lake: Parquet tables, their current-state SQL views, search, upkeep and transfer.

``Lake`` (DuckDB, pandas) is imported on first use, so the CLI's light commands and the SQL
views stay quick to import.
"""

from typing import TYPE_CHECKING, Any

from runlake.core.damage import DamagedFile, DamagedFileWarning
from runlake.core.errors import (
    ExperimentNotFound,
    InvalidArgument,
    LakeFormatError,
    NotFound,
    RunlakeError,
    RunNotFound,
)

if TYPE_CHECKING:
    from runlake.lake.connection import StateCacheHint
    from runlake.lake.facade import Lake, Page, RunRecord

__all__ = [
    "DamagedFile",
    "DamagedFileWarning",
    "ExperimentNotFound",
    "InvalidArgument",
    "Lake",
    "LakeFormatError",
    "NotFound",
    "Page",
    "RunNotFound",
    "RunRecord",
    "RunlakeError",
    "StateCacheHint",
]


def __getattr__(name: str) -> Any:
    if name in ("Lake", "Page", "RunRecord"):
        from runlake.lake import facade

        return getattr(facade, name)
    if name == "StateCacheHint":
        from runlake.lake import connection

        return connection.StateCacheHint
    raise AttributeError(f"module 'runlake.lake' has no attribute {name!r}")
