"""Compaction: fewer files, the same answers, deduplicated points, healed summaries, leftovers cleaned."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from runlake.core import layout, writer
from runlake.core.lease import maintenance_lease
from runlake.ingest.client import LakeClient
from runlake.lake import Lake
from runlake.lake.maintenance import MaintenanceBusy, compact
from tests.lifecycle.conftest import part_count, take_over_lease


def _answers(lake_dir: str, ids: list[str]) -> dict:
    lake = Lake(lake_dir)
    return {
        "runs": [(r.info, r.params, r.tags, r.metric_stats) for r in map(lake.get_run, ids)],
        "history": lake.metric_histories(ids).to_dict("list"),
        "frame": lake.runs_frame().to_dict("list"),
        "experiments": lake.list_experiments().to_dict("list"),
        "sql": lake.sql("SELECT run_id, key, count(*) AS n FROM metrics GROUP BY ALL ORDER BY ALL").to_dict("list"),
    }


def test_compaction_merges_small_files_and_changes_no_answer(small_lake):
    lake_dir, _exp, ids = small_lake
    before = _answers(lake_dir, ids)
    assert part_count(lake_dir, layout.METRICS) == 12
    report = compact(lake_dir, grace_s=0)
    for table in (layout.RUNS, layout.PARAMS, layout.TAGS, layout.METRICS, layout.METRIC_SUMMARIES):
        assert part_count(lake_dir, table) == 1, table
        assert report.after[table].files == 1
    assert report.before[layout.METRICS].files == 12
    assert report.files_merged > report.files_written
    assert _answers(lake_dir, ids) == before
    text = report.to_text()
    assert "metrics" in text and "files before" in text
    assert report.to_dict()["after"]["metrics"] == {"files": 1, "bytes": report.after[layout.METRICS].bytes}
    # A second pass has nothing to do.
    again = compact(lake_dir, grace_s=0)
    assert again.files_merged == 0 and again.files_written == 0


def test_merged_files_are_sorted_for_row_group_skipping(small_lake):
    lake_dir, _exp, _ids = small_lake
    compact(lake_dir, grace_s=0)
    fs, root = layout.resolve_lake(lake_dir)
    for table in (layout.METRICS, layout.TAGS, layout.RUNS):
        (info,) = writer.list_parts(fs, root, table)
        data = pq.read_table(info.path)
        keys = [name for name, _ in layout.SORT_KEYS[table]]
        assert data.equals(data.sort_by(layout.SORT_KEYS[table])), table
        assert pq.ParquetFile(info.path).metadata.row_group(0).column(0).statistics.has_min_max
        assert keys[0] == "run_id" or table == layout.EXPERIMENTS


def test_files_younger_than_the_grace_period_are_left_alone(small_lake):
    lake_dir, _exp, _ids = small_lake
    report = compact(lake_dir, grace_s=3600)
    assert report.files_merged == 0
    assert part_count(lake_dir, layout.METRICS) == 12


def test_duplicate_points_are_removed_and_summaries_fold_to_one_row_per_key(small_lake):
    lake_dir, exp, ids = small_lake
    fs, root = layout.resolve_lake(lake_dir)
    # A copy of every metrics file: what a reader sees mid-compaction, or a crashed compaction leaves.
    for info in writer.list_parts(fs, root, layout.METRICS):
        writer.write_part(fs, root, layout.METRICS, pq.read_table(info.path), exp)
    lake = Lake(lake_dir)
    assert lake.sql("SELECT count(*) AS n FROM metrics")["n"][0] == 3 * 2 * 20
    report = compact(lake_dir, grace_s=0)
    assert report.duplicate_points_removed == 120
    raw = Lake(lake_dir).sql("SELECT count(*) AS n FROM raw_metrics")["n"][0]
    assert raw == 120
    summaries = Lake(lake_dir).sql("SELECT run_id, key, count(*) AS n FROM raw_metric_summaries GROUP BY ALL")
    assert len(summaries) == 6 and set(summaries["n"]) == {1}


def test_nan_points_count_once_as_in_the_metrics_view(lake_dir):
    client = LakeClient(lake_dir)
    run = client.create_run(client.create_experiment("nan"))
    points = [("m", float("nan"), 1, 0), ("m", float("nan"), 1, 0), ("m", 1.0, 2, 1), ("m", float("inf"), 3, 2)]
    client.log_batch(run, metrics=points)
    client.flush()
    client.log_batch(run, metrics=points)
    client.flush()
    before = Lake(lake_dir)
    expected = before.metric_history(run, "m")
    stats = before.get_run(run).metric_stats
    compact(lake_dir, grace_s=0)
    after = Lake(lake_dir)
    pd.testing.assert_frame_equal(after.metric_history(run, "m"), expected)
    assert len(expected) == 3
    assert after.get_run(run).metric_stats == stats
    assert after.sql("SELECT count(*) AS n FROM raw_metrics")["n"][0] == 3


def test_a_metrics_file_without_its_summary_is_healed(lake_dir):
    client = LakeClient(lake_dir)
    exp = client.create_experiment("heal")
    run = client.create_run(exp)
    client.log_batch(run, metrics=[("loss", 1.0, 1, 0)])
    client.flush()
    fs, root = layout.resolve_lake(lake_dir)
    # A writer that died between its metrics file and its summary file.
    points = writer.to_table(
        layout.METRICS, {"run_id": [run], "key": ["loss"], "step": [5], "timestamp": [9], "value": [0.5]}
    )
    writer.write_part(fs, root, layout.METRICS, points, exp)
    assert Lake(lake_dir).get_run(run).metric_stats["loss"]["step"] == 0  # the summary misses step 5
    compact(lake_dir, grace_s=0)
    stats = Lake(lake_dir).get_run(run).metric_stats["loss"]
    assert (stats["step"], stats["latest"], stats["min"]) == (5, 0.5, 0.5)


def test_tag_tombstones_and_superseded_versions_keep_their_meaning(small_lake):
    lake_dir, _exp, ids = small_lake
    lake = Lake(lake_dir)
    lake.set_tag(ids[0], "team", "b")
    lake.rename_run(ids[1], "renamed")
    before = _answers(lake_dir, ids)
    assert "temp" not in before["runs"][0][2]
    compact(lake_dir, grace_s=0)
    assert _answers(lake_dir, ids) == before


def test_abandoned_temporary_files_are_removed_after_their_age(small_lake):
    lake_dir, exp, _ids = small_lake
    directory = os.path.join(lake_dir, layout.METRICS, f"experiment_id={exp}")
    old = os.path.join(directory, ".part-dead.tmp")
    fresh = os.path.join(directory, ".part-writing.tmp")
    for path in (old, fresh):
        with open(path, "wb") as handle:
            handle.write(b"x" * 10)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    report = compact(lake_dir, grace_s=0)
    assert report.tmp_files_removed == 1 and report.tmp_bytes_removed == 10
    assert not os.path.exists(old) and os.path.exists(fresh)
    assert compact(lake_dir, grace_s=0, tmp_max_age_s=0).tmp_files_removed == 1


def test_a_lake_with_only_large_files_is_left_alone(lake_dir):
    from runlake.demo import build_demo

    build_demo(lake_dir, runs=50)
    compact(lake_dir, grace_s=0)
    report = compact(lake_dir, grace_s=0)
    assert report.files_merged == 0


def test_another_maintenance_job_holding_the_lease_makes_compaction_wait_then_fail(small_lake):
    lake_dir, _exp, _ids = small_lake
    fs, root = layout.resolve_lake(lake_dir)
    with maintenance_lease(fs, root, "retention"):
        with pytest.raises(MaintenanceBusy, match="Another maintenance job") as info:
            compact(lake_dir, grace_s=0, wait_s=0.3)
    assert info.value.to_dict()["error"] == "MaintenanceBusy"
    assert compact(lake_dir, grace_s=0, wait_s=0).files_merged > 0  # released


def test_a_lease_left_by_a_dead_process_is_ignored(small_lake):
    lake_dir, _exp, _ids = small_lake
    directory = os.path.join(lake_dir, "_maintenance")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "lease-0-dead.json"), "w") as handle:
        json.dump({"host": socket.gethostname(), "pid": 2**22 + 12345, "job": "compact"}, handle)
    assert compact(lake_dir, grace_s=0, wait_s=0).files_merged > 0
    assert os.listdir(directory) == []


def test_a_missing_lake_is_an_error_not_a_new_directory(tmp_path):
    from runlake.core.errors import InvalidArgument
    from runlake.lake.maintenance import purge

    with pytest.raises(InvalidArgument, match="No lake at"):
        compact(str(tmp_path / "typo"))
    with pytest.raises(InvalidArgument, match="No lake at"):
        purge(str(tmp_path / "typo"))
    assert not (tmp_path / "typo").exists()


class _Terminal:
    def __init__(self, tty: bool) -> None:
        self.text = ""
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_progress_draws_on_a_terminal_and_is_silent_otherwise():
    from runlake.lake.maintenance import Progress

    terminal, pipe = _Terminal(True), _Terminal(False)
    for stream in (terminal, pipe):
        with Progress("runs", 4, stream=stream) as bar:
            for _ in range(4):
                bar.advance()
    assert "runs [" in terminal.text and "4/4" in terminal.text and terminal.text.endswith("\n")
    assert pipe.text == ""
    quiet = _Terminal(True)
    with Progress("runs", 4, stream=quiet, quiet=True) as bar:
        bar.advance()
    assert quiet.text == ""


def _other_host_lease(lake_dir: str, *names: str, silent: bool = False) -> str:
    """Lease files (and markers) of a job on another host in the lake's lease folder; returns
    the folder. ``silent``: not rewritten for longer than the lease's time to live."""
    from runlake.core import lease

    directory = os.path.join(lake_dir, "_maintenance")
    os.makedirs(directory, exist_ok=True)
    for name in names or ("lease-0-elsewhere.json",):
        path = os.path.join(directory, name)
        with open(path, "w") as handle:
            json.dump({"host": "another-host.example", "pid": 1, "job": "compact"}, handle)
        if silent:
            then = time.time() - lease.LEASE_TTL_S - 5
            os.utime(path, (then, then))
    return directory


def test_a_lease_of_another_host_counts_while_its_heartbeat_beats(small_lake, monkeypatch):
    """A job on another host cannot be asked whether it lives: its lease holds while rewritten
    within the TTL, and is taken over once it has been silent longer (a dead host)."""
    from runlake.core import lease

    lake_dir, _exp, _ids = small_lake
    directory = _other_host_lease(lake_dir)
    path = os.path.join(directory, "lease-0-elsewhere.json")
    with pytest.raises(MaintenanceBusy):
        compact(lake_dir, grace_s=0, wait_s=0)
    silent = time.time() - lease.LEASE_TTL_S - 5
    os.utime(path, (silent, silent))
    assert compact(lake_dir, grace_s=0, wait_s=0).files_merged > 0
    # Its owner may only be frozen: the marker that tells it stays (a week at most).
    assert os.listdir(directory) == ["taken-lease-0-elsewhere.json"]


def test_a_lease_with_a_take_over_marker_is_not_alive_however_fresh(small_lake):
    """A lease written back after its take-over by a heartbeat that does not look for markers
    (an older runlake) is fresh, but its marker says it is nobody's."""
    lake_dir, _exp, _ids = small_lake
    directory = _other_host_lease(lake_dir, "lease-0-elsewhere.json", "taken-lease-0-elsewhere.json")
    assert compact(lake_dir, grace_s=0, wait_s=0).files_merged > 0
    assert os.listdir(directory) == ["taken-lease-0-elsewhere.json"]


def test_an_acquire_that_fails_half_way_leaves_no_lease_behind(small_lake, monkeypatch):
    """Left behind, a failed acquire's own lease would count as alive while its process lives:
    every later job of that process would find the lake busy."""
    from runlake.core import lease

    lake_dir, _exp, _ids = small_lake
    directory = _other_host_lease(lake_dir, silent=True)

    def storage_fails(*args, **kwargs):
        raise OSError("the store said no")

    with monkeypatch.context() as patched:
        patched.setattr(lease, "take_over", storage_fails)
        with pytest.raises(OSError, match="said no"):
            compact(lake_dir, grace_s=0, wait_s=0)
    assert os.listdir(directory) == ["lease-0-elsewhere.json"]
    assert compact(lake_dir, grace_s=0, wait_s=0).files_merged > 0


def test_doctor_repair_leaves_a_lease_whose_owner_beats_again(small_lake):
    """A lease reported stale whose owner beat again before the repair is not moved."""
    from runlake.lake.maintenance import doctor

    lake_dir, _exp, _ids = small_lake
    fs, root = layout.resolve_lake(lake_dir)
    directory = _other_host_lease(lake_dir)
    report = doctor.DoctorReport(stale_leases=[{"path": f"{root}/_maintenance/lease-0-elsewhere.json"}])
    with pytest.raises(MaintenanceBusy):  # it holds the lake, so the repair waits its turn
        doctor._repair(fs, root, report, wait_s=0)
    assert os.listdir(directory) == ["lease-0-elsewhere.json"]
    assert report.quarantined == []


@pytest.fixture
def fast_beats(small_lake, monkeypatch):
    """The small lake, its filesystem and root, and its lease folder, with a heartbeat every 50 ms."""
    from runlake.core import lease

    lake_dir, _exp, _ids = small_lake
    monkeypatch.setattr(lease, "LEASE_HEARTBEAT_S", 0.05)
    fs, root = layout.resolve_lake(lake_dir)
    return lake_dir, fs, root, os.path.join(lake_dir, "_maintenance")


def test_a_held_lease_is_rewritten_while_its_job_runs(fast_beats):
    _lake_dir, fs, root, directory = fast_beats
    with maintenance_lease(fs, root, "compact"):
        (name,) = [n for n in os.listdir(directory) if n.startswith("lease-")]  # not a beat's temporary
        first = os.stat(os.path.join(directory, name)).st_mtime_ns
        deadline = time.monotonic() + 10
        while os.stat(os.path.join(directory, name)).st_mtime_ns == first:
            assert time.monotonic() < deadline, "the lease was never rewritten"
            time.sleep(0.02)
        with open(os.path.join(directory, name)) as handle:
            assert json.load(handle)["beat"] > 0
    assert os.listdir(directory) == []  # released, and no beat wrote it back
    time.sleep(0.2)
    assert os.listdir(directory) == []


def test_a_compaction_whose_lease_was_taken_over_stops_before_removing_anything(small_lake):
    """A job that stood still past the lease's TTL and woke up must not remove files another
    job now rewrites: it stops at its next removal, as if killed there, and nothing is lost
    or doubled."""
    from runlake.core.lease import LeaseLost

    lake_dir, _exp, ids = small_lake
    before = _answers(lake_dir, ids)
    tables = (layout.RUNS, layout.PARAMS, layout.TAGS, layout.METRICS, layout.METRIC_SUMMARIES)
    files = sum(part_count(lake_dir, table) for table in tables)
    written: list[str] = []

    def stood_still(path: str) -> None:
        written.append(path)
        if len(written) == 1:
            take_over_lease(lake_dir)

    with pytest.raises(LeaseLost, match="taken over"):
        compact(lake_dir, grace_s=0, on_written=stood_still)
    # The first partition's merged points and summaries were written, no input was removed.
    assert [path.split("/")[-3] for path in written] == [layout.METRICS, layout.METRIC_SUMMARIES]
    assert sum(part_count(lake_dir, table) for table in tables) == files + 2
    assert _answers(lake_dir, ids) == before
    # Its own lease file went with it; the other job's stays.
    assert os.listdir(os.path.join(lake_dir, "_maintenance")) == ["lease-1-elsewhere.json"]


def _abandon_files(lake_dir: str) -> float:
    """Make every part file look like a writer's long gone, for the tiers to take."""
    from runlake.core import merge

    old = time.time() - merge.ABANDONED_AFTER_S - 60
    for directory, _dirs, names in os.walk(lake_dir):
        for name in names:
            if name.endswith(".parquet"):
                os.utime(os.path.join(directory, name), (old, old))
    return old


def test_an_automatic_merge_whose_lease_was_taken_over_stops_quietly(small_lake, monkeypatch):
    from runlake.core import lease, merge

    lake_dir, _exp, ids = small_lake
    before = _answers(lake_dir, ids)
    fs, root = layout.resolve_lake(lake_dir)
    _abandon_files(lake_dir)
    tables = (layout.RUNS, layout.PARAMS, layout.TAGS, layout.METRICS, layout.METRIC_SUMMARIES)
    files = sum(part_count(lake_dir, table) for table in tables)
    real_write = writer.write_part
    writes: list[str] = []

    def write_then_stand_still(*args, **kwargs):
        path = real_write(*args, **kwargs)
        writes.append(path)
        take_over_lease(lake_dir)
        return path

    monkeypatch.setattr(merge.writer, "write_part", write_then_stand_still)
    with lease.try_lease(fs, root, "merge") as held:
        assert held
        merged = merge.merge_tiers(fs, root, merge.partitions(fs, root), budget_s=60)
    assert merged == 0 and len(writes) == 1  # one merged file written, then it stopped
    assert sum(part_count(lake_dir, table) for table in tables) == files + 1
    assert _answers(lake_dir, ids) == before


def test_an_automatic_merge_whose_lease_was_taken_over_quarantines_nothing(small_lake):
    """Moving a damaged file to quarantine removes it from the lake, as a merge's removals
    do: a merge whose lease another job took leaves it where it is."""
    from runlake.core import lease, merge

    lake_dir, _exp, _ids = small_lake
    fs, root = layout.resolve_lake(lake_dir)
    old = _abandon_files(lake_dir)
    damaged = sorted(info.path for info in writer.list_parts(fs, root, layout.METRICS))[0]
    with open(damaged, "r+b") as handle:
        handle.seek(0)
        handle.write(b"garbage!" * 64)
    os.utime(damaged, (old, old))
    partition = [(layout.METRICS, writer.partition_of(damaged))]
    with lease.try_lease(fs, root, "merge") as held:
        assert held
        take_over_lease(lake_dir)
        merge.merge_tiers(fs, root, partition, budget_s=60)
    assert os.path.exists(damaged)
    assert not os.path.exists(os.path.join(lake_dir, "_quarantine"))
    # Held, the same merge moves it.
    os.remove(os.path.join(lake_dir, "_maintenance", "lease-1-elsewhere.json"))
    with lease.try_lease(fs, root, "merge") as held:
        assert held
        merge.merge_tiers(fs, root, partition, budget_s=60)
    assert not os.path.exists(damaged)
    assert os.path.exists(os.path.join(lake_dir, "_quarantine"))


def test_a_heartbeat_that_finds_its_lease_gone_never_writes_it_back(fast_beats):
    from runlake.core import lease

    lake_dir, fs, root, directory = fast_beats
    with maintenance_lease(fs, root, "compact"):
        lease.check_held()  # held: nothing to say
        take_over_lease(lake_dir)
        time.sleep(0.5)  # ten beats
        assert [n for n in os.listdir(directory) if n.startswith("lease-")] == ["lease-1-elsewhere.json"]
        with pytest.raises(lease.LeaseLost):
            lease.check_held()
    lease.check_held()  # this thread holds no lease any more
    assert os.listdir(directory) == ["lease-1-elsewhere.json"]  # its marker went with it


def test_a_lease_written_back_after_its_take_over_still_counts_as_lost(fast_beats):
    """A frozen job's heartbeat read its lease just before another job removed it and wrote it
    back just after: the file is there again, but the taker's marker says it is not ours."""
    from runlake.core import lease

    lake_dir, fs, root, directory = fast_beats
    with maintenance_lease(fs, root, "compact"):
        (name,) = [n for n in os.listdir(directory) if n.startswith("lease-")]  # not a beat's temporary
        with open(os.path.join(directory, name), "rb") as handle:
            body = handle.read()
        take_over_lease(lake_dir)
        with open(os.path.join(directory, name), "wb") as handle:
            handle.write(body)  # the late write
        with pytest.raises(lease.LeaseLost):
            lease.check_held()
    assert os.listdir(directory) == ["lease-1-elsewhere.json"]


def test_a_heartbeat_that_wrote_its_lease_back_after_a_take_over_removes_it(fast_beats, monkeypatch):
    from runlake.core import lease

    lake_dir, fs, root, directory = fast_beats
    real_write = lease._write_lease
    raced: list[str] = []

    def write_after_a_take_over(fs, path, owner):
        # Between the beat's read of its lease and this write, another job took it over.
        if threading.current_thread().name == "runlake-lease-heartbeat" and not raced:
            raced.append(path)
            take_over_lease(lake_dir)
        real_write(fs, path, owner)

    monkeypatch.setattr(lease, "_write_lease", write_after_a_take_over)
    with maintenance_lease(fs, root, "compact"):
        deadline = time.monotonic() + 10
        while not raced or os.path.exists(raced[0]):
            assert time.monotonic() < deadline, "the written-back lease stayed"
            time.sleep(0.02)
        time.sleep(0.3)  # six beats more: none writes it back again
        assert not os.path.exists(raced[0])
        with pytest.raises(lease.LeaseLost):
            lease.check_held()
    assert os.listdir(directory) == ["lease-1-elsewhere.json"]


def test_take_over_markers_are_kept_a_week_then_removed(fast_beats):
    from runlake.core import lease

    _lake_dir, fs, root, directory = fast_beats
    os.makedirs(directory, exist_ok=True)
    old, recent = (os.path.join(directory, f"taken-lease-{n}.json") for n in ("old", "recent"))
    for path in (old, recent):
        with open(path, "w") as handle:
            handle.write("{}")
    week_ago = time.time() - lease.TAKEN_KEPT_S - 60
    os.utime(old, (week_ago, week_ago))
    with maintenance_lease(fs, root, "compact"):
        pass
    assert os.listdir(directory) == ["taken-lease-recent.json"]


def test_an_abandoned_upload_of_a_published_state_is_removed_after_its_age(small_lake):
    # ``Lake.publish_state`` uploads under a temporary name and moves it into place: a process
    # killed in between leaves the temporary, which compaction removes as any other.
    lake_dir, _exp, _ids = small_lake
    directory = os.path.join(lake_dir, "_state")
    os.makedirs(directory)
    old = os.path.join(directory, ".state-0123.killed.tmp")
    with open(old, "wb") as handle:
        handle.write(b"x" * 10)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert compact(lake_dir, grace_s=0).tmp_files_removed == 1
    assert not os.path.exists(old)
