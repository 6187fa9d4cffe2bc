"""Helpers for the lifecycle tests: small lakes logged through the ingest client, file listings, the CLI."""

from __future__ import annotations

import os

import pytest

from runlake.core import layout, merge, writer
from runlake.ingest.client import LakeClient


def log_runs(
    root: str,
    experiment: str = "exp",
    runs: int = 3,
    steps: int = 20,
    flush_every: int = 5,
    start_time: int | None = None,
) -> tuple[str, list[str]]:
    """Runs with params, tags and metrics, flushed often (many small files); returns (experiment id, run ids)."""
    client = LakeClient(root)
    experiment_id = client.create_experiment(experiment)
    ids = []
    for r in range(runs):
        run_id = client.create_run(
            experiment_id, run_name=f"r{r}", start_time=(start_time or 1_700_000_000_000) + r * 1000
        )
        client.log_batch(run_id, params={"lr": f"0.{r + 1}", "seed": r}, tags={"team": "a", "temp": "x"})
        for start in range(0, steps, flush_every):
            client.log_batch(
                run_id,
                metrics=[
                    (k, float(s * (1 if k == "acc" else -1)), 1_700_000_000_000 + s, s)
                    for s in range(start, min(start + flush_every, steps))
                    for k in ("acc", "loss")
                ],
            )
            client.flush()
        client.delete_tag(run_id, "temp")
        client.set_terminated(run_id)
        ids.append(run_id)
    client.flush()
    return experiment_id, ids


def listing(root: str) -> dict[str, tuple[int, ...]]:
    """Every file under the lake (part files, temporaries, artifacts) with its size."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if "_maintenance" in dirpath:
                continue
            path = os.path.join(dirpath, name)
            found[path] = (os.path.getsize(path),)
    return found


def part_count(root: str, table: str) -> int:
    fs, resolved = layout.resolve_lake(root)
    return len(writer.list_parts(fs, resolved, table))


@pytest.fixture
def small_lake(lake_dir: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, list[str]]:
    """A lake of many small files: written with the writers' own merges off, as by writers that
    died before merging (or by runlake before writers merged), for cron compaction to work on."""
    with monkeypatch.context() as patch:
        patch.setattr(merge, "OWN_FILE_LIMIT", 10**9)
        experiment_id, ids = log_runs(lake_dir)
    return lake_dir, experiment_id, ids


def take_over_lease(lake_dir: str, marked: bool = True) -> None:
    """What a job on another host does to a lease silent past its TTL: mark it taken and remove
    it, then hold its own (``marked=False``: remove it only, as runlake before the markers did)."""
    from runlake.core import lease

    directory = os.path.join(lake_dir, "_maintenance")
    fs, _root = layout.resolve_lake(lake_dir)
    for name in os.listdir(directory):
        if not name.startswith(lease.LEASE_PREFIX):
            continue
        if marked:
            lease.take_over(fs, os.path.join(directory, name))
        else:
            os.remove(os.path.join(directory, name))
    with open(os.path.join(directory, "lease-1-elsewhere.json"), "w") as handle:
        handle.write('{"host": "another-host.example", "pid": 1, "job": "retention"}')
