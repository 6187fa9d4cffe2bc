"""Lake upkeep that is safe under concurrent writers and readers: compaction and retention."""

from runlake.core.lease import MaintenanceBusy
from runlake.lake.maintenance.common import Progress
from runlake.lake.maintenance.compaction import CompactionReport, compact
from runlake.lake.maintenance.retention import RetentionReport, purge

__all__ = ["CompactionReport", "MaintenanceBusy", "Progress", "RetentionReport", "compact", "purge"]
