"""A lake written the way teams write it stays small: bounded part files, nothing lost to merges."""

from __future__ import annotations

import glob
import os

import pytest

from runlake.core import layout, merge
from runlake.core.errors import RunNotFound
from runlake.ingest import LakeClient
from runlake.ingest.run import Run
from runlake.lake import Lake
from runlake.lake.sql import q
from tests.conftest import run_python

# The bound: at most 64 files per table partition, plus 4 per process writing to it.
SHARED_BOUND = 64
PER_WRITER = 4


def _files_per_partition(root: str) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for table in layout.PARTITIONED_TABLES:
        for directory in glob.glob(os.path.join(root, table, "experiment_id=*")):
            counts[(table, os.path.basename(directory))] = len(glob.glob(os.path.join(directory, "*.parquet")))
    return counts


def test_a_long_run_flushing_often_keeps_a_handful_of_files(lake_dir):
    client = LakeClient(lake_dir)
    experiment_id = client.create_experiment("long")
    run = Run(client, client.create_run(experiment_id), experiment_id)
    for flush in range(400):  # 20 minutes of training at the default 3 s interval
        for step in range(flush * 50, flush * 50 + 50):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        client.store.flush()
        counts = _files_per_partition(lake_dir)
        assert max(counts.values()) <= SHARED_BOUND + PER_WRITER, (flush, counts)
        assert max(client.store.own_files().values(), default=0) < merge.OWN_FILE_LIMIT
    run.end()
    history = Lake(lake_dir).metric_history(run.run_id, "loss")
    assert history["step"].tolist() == list(range(400 * 50))
    # The end-of-run merge leaves one file per table and no own files behind.
    assert client.store.own_files() == {}
    assert max(_files_per_partition(lake_dir).values()) <= 4


def test_a_client_creating_thousands_of_runs_writes_a_bounded_number_of_files(lake_dir):
    client = LakeClient(lake_dir)
    experiment_id = client.create_experiment("import")
    for i in range(2000):
        run_id = client.create_run(experiment_id, run_name=f"r{i}", start_time=1_700_000_000_000 + i)
        client.log_batch(run_id, metrics=[("loss", 0.5, 1_700_000_000_000, 0)], params={"lr": "0.1"}, tags={"t": "x"})
        client.set_terminated(run_id)
        if i % 250 == 0:
            client.flush()  # an importer's periodic flush: a few files per table each time
    client.flush()
    counts = _files_per_partition(lake_dir)
    assert max(counts.values()) <= PER_WRITER + SHARED_BOUND
    assert sum(counts.values()) <= 5 * 12, counts
    lake = Lake(lake_dir)
    assert len(lake.search_run_ids(filter_string="attributes.status = 'FINISHED'")) == 2000


def test_a_reader_in_the_same_process_sees_buffered_changes_at_once(lake_dir):
    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("e"), run_name="buffered")
    client.set_tag(run_id, "stage", "candidate")
    # Nothing was flushed explicitly: the Lake flushes this process's writers before reading.
    record = Lake(lake_dir).get_run(run_id)
    assert record.info["run_name"] == "buffered" and record.tags["stage"] == "candidate"


def test_another_process_sees_changes_within_a_flush_interval(lake_dir):
    result = run_python(
        f"""
        import time
        from runlake.ingest import LakeClient
        client = LakeClient({lake_dir!r})
        run_id = client.create_run(client.create_experiment("e"), run_name="visible-soon")
        print(run_id, flush=True)
        time.sleep(2.5)  # the background flusher writes within one interval (1 s here)
        import os
        os._exit(0)  # no exit flush: only what the flusher wrote counts
        """,
        env={"RUNLAKE_FLUSH_INTERVAL": "1"},
    )
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[0]
    assert Lake(lake_dir).get_run(run_id).info["run_name"] == "visible-soon"


def test_a_history_reads_points_written_since_the_last_refresh_and_runs_created_since(lake_dir):
    lake = Lake(lake_dir)
    writer = LakeClient(lake_dir)
    experiment_id = writer.create_experiment("live")
    run_id = writer.create_run(experiment_id, run_name="live")
    writer.log_batch(run_id, metrics=[("loss", 1.0, 1_700_000_000_000, 0)])
    writer.flush()
    assert lake.metric_history(run_id, "loss")["step"].tolist() == [0]  # a run new to the state
    writer.log_batch(run_id, metrics=[("loss", 0.5, 1_700_000_000_001, 1)])
    writer.set_tag(run_id, "stage", "late")
    writer.flush()
    assert lake.metric_history(run_id, "loss")["value"].tolist() == [1.0, 0.5]  # points listed at the call
    assert lake.metric_history(run_id, "acc").empty  # a key the run does not have: no points, no error
    with pytest.raises(RunNotFound):
        lake.metric_history("0" * 32, "loss")
    assert lake.get_run(run_id).tags["stage"] == "late"  # other calls still refresh the state


def test_merges_change_no_answer(lake_dir, monkeypatch):
    # The same logging with and without the writers' merges reads back identically.
    def log(root: str) -> Lake:
        client = LakeClient(root)
        experiment_id = client.create_experiment("same")
        for r in range(6):
            run_id = client.create_run(
                experiment_id, run_id=f"run{r}", run_name=f"r{r}", start_time=1_700_000_000_000 + r
            )
            for chunk in range(6):
                client.log_batch(
                    run_id,
                    metrics=[
                        ("m", float(s % 7) if s % 5 else float("nan"), 1_700_000_000_000 + s, s)
                        for s in range(chunk * 10, chunk * 10 + 10)
                    ],
                )
                client.set_tag(run_id, "chunk", str(chunk))
                client.flush()
            client.set_terminated(run_id, end_time=1_700_000_100_000)
        client.flush()
        return Lake(root)

    merged = log(os.path.join(lake_dir, "merged"))
    with monkeypatch.context() as patch:
        patch.setattr(merge, "OWN_FILE_LIMIT", 10**9)
        plain = log(os.path.join(lake_dir, "plain"))
    for lake in (merged, plain):
        lake.refresh()
    query = "SELECT * EXCLUDE (artifact_uri) FROM runs ORDER BY run_id"
    assert merged.sql(query).equals(plain.sql(query))
    for view in ("latest_metrics", "tags", "metrics"):
        sql = f"SELECT * FROM {view} ORDER BY ALL"
        assert merged.sql(sql).astype(str).equals(plain.sql(sql).astype(str)), view
    assert sum(_files_per_partition(merged.root).values()) < sum(_files_per_partition(plain.root).values())


@pytest.mark.parametrize("moment", ["after the merged file is written", "while writing the merged file"])
def test_sigkill_in_the_middle_of_a_merge_loses_and_doubles_nothing(lake_dir, moment):
    kill_in = "merge.delete_quietly" if moment.startswith("after") else "merge.writer.write_part"
    result = run_python(
        f"""
        import os, signal
        from runlake.core import merge
        from runlake.ingest import LakeClient
        from runlake.ingest.run import Run

        client = LakeClient({lake_dir!r})
        experiment_id = client.create_experiment("killed")
        run = Run(client, client.create_run(experiment_id, run_id="victim"), experiment_id)
        original = {kill_in}
        def die(*args, **kwargs):
            if kwargs.get("file_id", "").endswith("-m") or {kill_in!r} == "merge.delete_quietly":
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)
        for flush in range(merge.OWN_FILE_LIMIT - 1):
            for step in range(flush * 100, flush * 100 + 100):
                run.log_metric("loss", float(step), step=step)
            client.store.flush()
        print("flushed", flush=True)
        {"merge.delete_quietly" if moment.startswith("after") else "merge.writer.write_part"} = die
        for step in range(300, 400):
            run.log_metric("loss", float(step), step=step)
        client.store.flush()  # writes the fourth file, then merges: killed in the merge
        print("not killed", flush=True)
        """
    )
    assert "flushed" in result.stdout and "not killed" not in result.stdout, result.stderr
    lake = Lake(lake_dir)
    history = lake.metric_history("victim", "loss")
    assert history["step"].tolist() == list(range(400))
    assert lake.get_run("victim").metric_stats["loss"]["max"] == 399.0
    # The next writer (and its merges) carries on from there.
    client = LakeClient(lake_dir)
    client.log_batch("victim", metrics=[("loss", 400.0, 1, 400)])
    client.flush()
    assert Lake(lake_dir).metric_history("victim", "loss")["step"].tolist() == list(range(401))


def test_the_dashboards_background_upkeep_merges_full_tiers(lake_dir, monkeypatch):
    from runlake.lake.maintenance import upkeep

    with monkeypatch.context() as patch:
        patch.setattr(merge, "TIER_FANOUT", 10**6)  # writers merge their own files, but no tiers
        client = LakeClient(lake_dir)
        experiment_id = client.create_experiment("tiers")
        run = Run(client, client.create_run(experiment_id, run_id="r"), experiment_id)
        for flush in range(40):
            run.log_metric("loss", float(flush), step=flush)
            client.store.flush()
        run.end()
    before = _files_per_partition(lake_dir)[(layout.METRICS, f"experiment_id={experiment_id}")]
    assert before >= 8
    assert upkeep.merge_tiers(lake_dir) > 0
    after = _files_per_partition(lake_dir)[(layout.METRICS, f"experiment_id={experiment_id}")]
    assert after < merge.TIER_FANOUT <= before
    assert Lake(lake_dir).metric_history("r", "loss")["value"].tolist() == [float(i) for i in range(40)]


def test_a_tier_merge_cut_short_by_its_budget_leaves_the_partition_to_do(lake_dir, monkeypatch):
    """A partition whose tier merge ran out of time stays on the writer's list for the next
    flush; only partitions left with no full tier are done."""
    with monkeypatch.context() as patch:
        patch.setattr(merge, "TIER_FANOUT", 10**6)
        client = LakeClient(lake_dir)
        experiment_id = client.create_experiment("budget")
        run = Run(client, client.create_run(experiment_id, run_id="r"), experiment_id)
        for flush in range(40):
            run.log_metric("loss", float(flush), step=flush)
            client.store.flush()
        run.end()
    fs, root = layout.resolve_lake(lake_dir)
    partition = (layout.METRICS, experiment_id)
    done: set = set()
    assert merge.merge_tiers(fs, root, [partition], budget_s=0.0, done=done) == 0
    assert done == set()  # out of time before it looked: still to do
    assert merge.merge_tiers(fs, root, [partition], budget_s=60.0, done=done) > 0
    assert done == {partition}


def test_points_a_killed_writer_left_without_summary_reach_latest_metrics_through_the_tiers(lake_dir):
    """A writer SIGKILLed between a flush's metrics file and its summary file: once its files
    are abandoned, the tier merge that takes them writes the missing summary, so
    ``latest_metrics`` shows the last point with no cron compaction."""
    result = run_python(
        f"""
        import os, signal
        from runlake.core import layout, writer
        from runlake.ingest import LakeClient
        client = LakeClient({lake_dir!r})
        experiment_id = client.create_experiment("killed")
        run_id = client.create_run(experiment_id, run_id="r")
        for flush in range(3):
            client.log_metric(run_id, "loss", float(flush), step=flush)
            client.flush()
        real = writer.write_part
        def write_part(fs, root, table, *args, **kwargs):
            if table == layout.METRIC_SUMMARIES:
                os.kill(os.getpid(), signal.SIGKILL)  # the metrics file is on disk, its summary never
            return real(fs, root, table, *args, **kwargs)
        writer.write_part = write_part
        client.log_metric(run_id, "loss", 3.0, step=3)
        client.flush()
        """
    )
    assert result.returncode == -9, result.stderr
    assert Lake(lake_dir).sql("SELECT step FROM latest_metrics WHERE run_id = 'r'")["step"].tolist() == [2]
    # Ten minutes later the killed writer's raw files are abandoned; the tiers take them.
    old = os.path.getmtime(lake_dir) - merge.ABANDONED_AFTER_S - 60
    for path in glob.glob(os.path.join(lake_dir, "**", "*.parquet"), recursive=True):
        os.utime(path, (old, old))
    fs, root = layout.resolve_lake(lake_dir)
    assert merge.merge_tiers(fs, root, merge.partitions(fs, root), budget_s=60.0) > 0
    lake = Lake(lake_dir)
    latest = lake.sql("SELECT step, value FROM latest_metrics WHERE run_id = 'r'")
    assert latest.to_dict("records") == [{"step": 3, "value": 3.0}]
    assert lake.metric_history("r", "loss")["step"].tolist() == [0, 1, 2, 3]


def _hand_merged_lake(lake_dir, tmp_path, monkeypatch, cached, name, count, *, data):
    """A lake whose merges are left to the test: a client, ``count`` runs of a new experiment
    each flushed alone (a file per run and table) with a tag ``t`` (and with ``data`` a param
    and a metric point), and a reader opened on them, in memory or with a state cache."""
    monkeypatch.setattr(merge, "OWN_FILE_LIMIT", 10**9)  # merged by hand
    client = LakeClient(lake_dir)
    experiment_id = client.create_experiment(name)
    runs = []
    for i in range(count):
        run_id = client.create_run(experiment_id, run_name=f"r{i}", start_time=1_700_000_000_000 + i)
        client.set_tag(run_id, "t", str(i))
        if data:
            client.log_batch(run_id, params={"p": str(i)}, metrics=[("loss", float(i), 1_700_000_000_000, 0)])
        client.flush()
        runs.append(run_id)
    lake = Lake(lake_dir, cache=str(tmp_path / "cache") if cached else False)
    return client, experiment_id, runs, lake


def _recorded_reads(monkeypatch):
    """The paths of the part files the state reads from now on."""
    from runlake.lake import snapshot

    read: list[str] = []
    real_read = snapshot.read_file
    monkeypatch.setattr(
        snapshot, "read_file", lambda fs_, table, path, n: read.append(path) or real_read(fs_, table, path, n)
    )
    return read


@pytest.mark.parametrize("cached", [False, True], ids=["in memory", "state cache"])
def test_a_merged_file_listed_beside_its_inputs_is_read_not_taken_from_them(lake_dir, tmp_path, monkeypatch, cached):
    # A merge killed after writing its output but before removing its inputs leaves both
    # listed; the output may yet go alone (quarantined, or merged away). A reader must read it
    # then, not rename its inputs' rows to it: those rows would go with it.
    import shutil

    import pyarrow.fs as pafs

    from runlake.core import writer

    _client, experiment_id, runs, lake = _hand_merged_lake(
        lake_dir, tmp_path, monkeypatch, cached, "half-merged", 4, data=False
    )
    fs = pafs.LocalFileSystem()
    assert lake.get_run(runs[3]).tags["t"] == "3"
    read = _recorded_reads(monkeypatch)
    inputs = [info.path for info in writer.list_parts(fs, lake_dir, layout.TAGS) if f"={experiment_id}" in info.path]
    assert len(inputs) >= 2
    kept = tmp_path / "inputs"
    kept.mkdir()
    for path in inputs:
        shutil.copy2(path, kept / os.path.basename(path))
    output, _size = merge.merge_files(fs, lake_dir, layout.TAGS, experiment_id, inputs)
    assert output is not None
    for path in inputs:  # the merge "died" before its inputs went
        shutil.copy2(kept / os.path.basename(path), path)
    lake.refresh()
    assert output in read  # read, since its inputs are still listed
    assert [lake.get_run(r).tags["t"] for r in runs] == ["0", "1", "2", "3"]
    os.remove(output)  # the output goes alone
    lake.refresh()
    fresh = Lake(lake_dir, cache=False)
    query = "SELECT * FROM tags ORDER BY ALL"
    assert lake.sql(query).astype(str).equals(fresh.sql(query).astype(str))
    assert [lake.get_run(r).tags["t"] for r in runs] == ["0", "1", "2", "3"]


@pytest.mark.parametrize("cached", [False, True], ids=["in memory", "state cache"])
def test_a_reader_takes_a_merged_file_from_the_inputs_it_holds(lake_dir, tmp_path, monkeypatch, cached):
    # A merged file names its inputs; a reader holding them all renames their rows instead of
    # reading it, and stays equal to a fresh read through later changes, merges and a purge.
    import pyarrow.fs as pafs

    from runlake.core import writer
    from runlake.lake.maintenance import purge

    client, experiment_id, runs, lake = _hand_merged_lake(
        lake_dir, tmp_path, monkeypatch, cached, "renamed", 5, data=True
    )
    fs = pafs.LocalFileSystem()
    client.delete_run(runs[4])
    client.flush()
    assert lake.get_run(runs[4]).info["lifecycle_stage"] == "deleted"
    read = _recorded_reads(monkeypatch)

    def merge_all(table: str) -> str:
        paths = [info.path for info in writer.list_parts(fs, lake_dir, table) if f"={experiment_id}" in info.path]
        output, _size = merge.merge_files(fs, lake_dir, table, experiment_id, paths)
        assert output is not None
        return output

    def same_as_fresh() -> None:
        fresh = Lake(lake_dir, cache=False)
        for view in ("runs", "params", "tags", "latest_metrics"):
            query = (
                f"SELECT * EXCLUDE (artifact_uri) FROM {view} ORDER BY ALL"
                if view == "runs"
                else (f"SELECT * FROM {view} ORDER BY ALL")
            )
            assert lake.sql(query).astype(str).equals(fresh.sql(query).astype(str)), view
        assert sorted(lake.search_run_ids(run_view_type="ALL")) == sorted(fresh.search_run_ids(run_view_type="ALL"))

    merged = [merge_all(table) for table in (layout.RUNS, layout.PARAMS, layout.TAGS)]
    assert lake.refresh()
    assert not set(merged) & set(read)  # taken from the rows the state held
    same_as_fresh()
    # A change after the merge, then a merge of the merged file with a file this reader never saw:
    # that one is read.
    client.set_tag(runs[0], "t", "late")
    client.flush()
    merged_again = merge_all(layout.TAGS)
    lake.refresh()
    assert merged_again in read and lake.get_run(runs[0]).tags["t"] == "late"
    same_as_fresh()
    # The renamed rows go with their new file: a purge rewrites it without the deleted run.
    purge(lake_dir, older_than_s=0)
    lake.refresh()
    same_as_fresh()
    assert runs[4] not in lake.search_run_ids(run_view_type="ALL")
    if cached:  # and a reopened state holds the same
        del lake
        import gc

        gc.collect()
        lake = Lake(lake_dir, cache=str(tmp_path / "cache"))
        assert lake.connection.cached
        same_as_fresh()


def _same_state_as_fresh(lake, lake_dir) -> None:
    fresh = Lake(lake_dir, cache=False)
    for view in ("runs", "params", "tags", "latest_metrics"):
        query = (
            f"SELECT * EXCLUDE (artifact_uri) FROM {view} ORDER BY ALL"
            if view == "runs"
            else f"SELECT * FROM {view} ORDER BY ALL"
        )
        assert lake.sql(query).astype(str).equals(fresh.sql(query).astype(str)), view
    for table in (layout.RUNS, layout.PARAMS, layout.TAGS, layout.METRIC_SUMMARIES):
        # No row twice where a fresh read has it once.
        query = f"SELECT count(*) AS n FROM raw_{table}"
        assert lake.connection.rows(q(query)) == fresh.connection.rows(q(query)), table
    assert sorted(lake.search_run_ids(run_view_type="ALL")) == sorted(fresh.search_run_ids(run_view_type="ALL"))


def _reopened(lake_dir, tmp_path) -> Lake:
    """The state cache of ``_hand_merged_lake`` opened again (the caller dropped its Lake)."""
    import gc

    gc.collect()
    lake = Lake(lake_dir, cache=str(tmp_path / "cache"))
    assert lake.connection.cached
    return lake


def _gone_by_table(monkeypatch) -> dict[str, list[int]]:
    """The numbers of the files each refresh from now on took as gone, by table."""
    from runlake.lake import snapshot

    gone: dict[str, list[int]] = {}
    real = snapshot.Snapshot._apply

    def apply(self, table, view, key, rows, gone_numbers, *rest):
        gone.setdefault(table, []).extend(gone_numbers)
        return real(self, table, view, key, rows, gone_numbers, *rest)

    monkeypatch.setattr(snapshot.Snapshot, "_apply", apply)
    return gone


@pytest.mark.parametrize("cached", [False, True], ids=["in memory", "state cache"])
def test_a_merged_file_holding_a_flush_this_reader_never_saw_settles_against_the_inputs_it_holds(
    lake_dir, tmp_path, monkeypatch, cached
):
    # A writer merges its own files right after a flush, so the merged file holds the new flush
    # besides files a reader folded already. The reader takes those as renamed and adds only the
    # new rows - no file gone, no run folded again for rows it had - and stays exact.
    import pyarrow.fs as pafs

    from runlake.core import writer

    client, experiment_id, runs, lake = _hand_merged_lake(
        lake_dir, tmp_path, monkeypatch, cached, "settled", 4, data=True
    )
    fs = pafs.LocalFileSystem()
    # A row in two known files at once (a flush repeated by a retry): the merge holds it twice.
    client.set_tag(runs[1], "t", "1")
    client.flush()
    lake.refresh()
    gone = _gone_by_table(monkeypatch)
    read = _recorded_reads(monkeypatch)
    client.set_tag(runs[0], "t", "late")
    client.log_batch(runs[2], params={"q": "new"})
    client.set_terminated(runs[3])
    client.flush()  # a flush the reader never saw, then the writer's merge
    merged = []
    for table in (layout.RUNS, layout.PARAMS, layout.TAGS):
        paths = [info.path for info in writer.list_parts(fs, lake_dir, table) if f"={experiment_id}" in info.path]
        output, _size = merge.merge_files(fs, lake_dir, table, experiment_id, paths)
        merged.append(output)
    assert lake.refresh()
    assert set(merged) <= set(read)  # read: it holds rows the state lacks
    assert all(not gone.get(table) for table in (layout.RUNS, layout.PARAMS, layout.TAGS)), gone
    assert lake.get_run(runs[0]).tags["t"] == "late"
    assert lake.get_run(runs[2]).params == {"p": "2", "q": "new"}
    assert lake.get_run(runs[3]).info["status"] == "FINISHED"
    _same_state_as_fresh(lake, lake_dir)
    if cached:  # a reopened state holds the same
        del lake
        _same_state_as_fresh(_reopened(lake_dir, tmp_path), lake_dir)


@pytest.mark.parametrize("cached", [False, True], ids=["in memory", "state cache"])
def test_a_merged_file_lacking_a_row_of_its_named_inputs_is_read_as_it_is(lake_dir, tmp_path, monkeypatch, cached):
    # A merged file is trusted to hold its inputs' rows only where it does: one rewritten
    # without a row (by hand, by a tool that drops what it should not) is the lake's truth, so
    # the reader takes its inputs as gone and its rows as they are.
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from runlake.core import writer

    client, experiment_id, runs, lake = _hand_merged_lake(
        lake_dir, tmp_path, monkeypatch, cached, "short", 4, data=False
    )
    fs = pafs.LocalFileSystem()
    assert lake.get_run(runs[1]).tags["t"] == "1"
    gone = _gone_by_table(monkeypatch)
    client.set_tag(runs[0], "t", "late")
    client.flush()
    paths = [info.path for info in writer.list_parts(fs, lake_dir, layout.TAGS) if f"={experiment_id}" in info.path]
    output, _size = merge.merge_files(fs, lake_dir, layout.TAGS, experiment_id, paths)
    table = pq.read_table(output)
    pairs = zip(table.column("run_id").to_pylist(), table.column("key").to_pylist(), strict=True)
    keep = [i for i, pair in enumerate(pairs) if pair != (runs[1], "t")]
    assert len(keep) == table.num_rows - 1
    pq.write_table(table.take(keep), output)  # the schema's metadata still names every input
    assert merge_inputs_named(output)
    lake.refresh()
    assert gone.get(layout.TAGS)  # the inputs went, and the file was read as it is
    assert "t" not in lake.get_run(runs[1]).tags
    assert lake.get_run(runs[0]).tags["t"] == "late"
    _same_state_as_fresh(lake, lake_dir)


@pytest.mark.parametrize("cached", [False, True], ids=["in memory", "state cache"])
@pytest.mark.parametrize("tampered", [False, True], ids=["as merged", "rewritten lower"])
def test_a_merged_summaries_file_absorbs_the_known_rows_it_folds(lake_dir, tmp_path, monkeypatch, cached, tampered):
    # A merged summaries file folds its inputs' rows, one of them a flush this reader never saw:
    # the reader drops the inputs' rows it holds and folds the merged rows as any flush's, no
    # file gone. Rewritten so its fold no longer covers them (a max lowered), it is read as it
    # is, its inputs gone: what the lake holds is the answer.
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from runlake.core import writer

    client, experiment_id, runs, lake = _hand_merged_lake(
        lake_dir, tmp_path, monkeypatch, cached, "summaries", 4, data=True
    )
    fs = pafs.LocalFileSystem()
    gone = _gone_by_table(monkeypatch)
    client.log_batch(runs[0], metrics=[("loss", 9.5, 1_700_000_000_001, 1), ("acc", 0.5, 1_700_000_000_001, 1)])
    client.flush()  # a flush the reader never saw, then the merge
    paths = [
        info.path
        for info in writer.list_parts(fs, lake_dir, layout.METRIC_SUMMARIES)
        if f"={experiment_id}" in info.path
    ]
    output, _size = merge.merge_files(fs, lake_dir, layout.METRIC_SUMMARIES, experiment_id, paths)
    assert output is not None and merge_inputs_named(output)
    if tampered:
        table = pq.read_table(output)
        lowered = pc.if_else(pc.equal(table.column("run_id"), runs[2]), -1.0, table.column("max_value"))
        table = table.set_column(table.schema.get_field_index("max_value"), "max_value", lowered)
        pq.write_table(table.cast(pa.schema(table.schema, metadata=table.schema.metadata)), output)
        assert merge_inputs_named(output)
    lake.refresh()
    assert bool(gone.get(layout.METRIC_SUMMARIES)) == tampered
    latest = lake.sql(f"SELECT key, value, step, max_value FROM latest_metrics WHERE run_id = '{runs[0]}' ORDER BY key")
    assert latest.to_dict("records") == [
        {"key": "acc", "value": 0.5, "step": 1, "max_value": 0.5},
        {"key": "loss", "value": 9.5, "step": 1, "max_value": 9.5},
    ]
    (max_2,) = lake.sql(f"SELECT max_value FROM latest_metrics WHERE run_id = '{runs[2]}'")["max_value"]
    assert max_2 == (-1.0 if tampered else 2.0)
    _same_state_as_fresh(lake, lake_dir)


@pytest.mark.parametrize("cached", [False, True], ids=["in memory", "state cache"])
@pytest.mark.parametrize("table", [layout.TAGS, layout.METRIC_SUMMARIES])
def test_a_tier_merge_of_a_merge_this_reader_never_saw_settles_against_the_files_that_merge_took(
    lake_dir, tmp_path, monkeypatch, cached, table
):
    # Within one flush a writer merges its own files (one of them new) and then, holding the
    # lease, merges the tier that file joined: the reader never sees the first merged file. The
    # second names it with the files it was merged from, which the reader holds.
    import pyarrow.fs as pafs

    from runlake.core import writer

    client, experiment_id, runs, lake = _hand_merged_lake(
        lake_dir, tmp_path, monkeypatch, cached, "nested", 4, data=True
    )
    fs = pafs.LocalFileSystem()
    gone = _gone_by_table(monkeypatch)

    def files() -> list[str]:
        return sorted(info.path for info in writer.list_parts(fs, lake_dir, table) if f"={experiment_id}" in info.path)

    held = files()
    assert len(held) >= 4
    client.set_tag(runs[0], "t", "late")
    client.log_batch(runs[0], metrics=[("loss", 7.5, 1_700_000_000_001, 1)])
    client.flush()  # a flush the reader never saw
    new = [path for path in files() if path not in held]
    first, _size = merge.merge_files(fs, lake_dir, table, experiment_id, held[:2] + new)
    second, _size = merge.merge_files(fs, lake_dir, table, experiment_id, [first, held[2]])
    assert not os.path.exists(first) and merge_inputs_named(second)
    lake.refresh()
    assert not gone.get(table), gone  # every file the reader held is in the second merge
    assert lake.get_run(runs[0]).tags["t"] == "late"
    assert lake.sql(f"SELECT value FROM latest_metrics WHERE run_id = '{runs[0]}'")["value"].tolist() == [7.5]
    _same_state_as_fresh(lake, lake_dir)


@pytest.mark.parametrize("cached", [False, True], ids=["in memory", "state cache"])
def test_a_merged_file_with_nothing_beyond_the_rows_this_reader_holds_settles(lake_dir, tmp_path, monkeypatch, cached):
    # The input this reader lacks is an empty part file (another engine writes those for an
    # empty partition): the merged file holds no row beyond the known ones. Found by review:
    # the empty remainder made every refresh, and every reopen of the state cache, raise.
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from runlake.core import writer

    _client, experiment_id, runs, lake = _hand_merged_lake(
        lake_dir, tmp_path, monkeypatch, cached, "empty", 2, data=False
    )
    fs = pafs.LocalFileSystem()
    held = [info.path for info in writer.list_parts(fs, lake_dir, layout.TAGS) if f"={experiment_id}" in info.path]
    empty = held[0].rsplit("/", 1)[0] + "/part-foreign-empty.parquet"
    pq.write_table(layout.SCHEMAS[layout.TAGS].empty_table(), empty)
    merge.merge_files(fs, lake_dir, layout.TAGS, experiment_id, [*held, empty])
    gone = _gone_by_table(monkeypatch)
    lake.refresh()
    assert not gone.get(layout.TAGS)
    assert [lake.get_run(run_id).tags["t"] for run_id in runs] == ["0", "1"]
    _same_state_as_fresh(lake, lake_dir)
    if cached:
        del lake
        _same_state_as_fresh(_reopened(lake_dir, tmp_path), lake_dir)


@pytest.mark.parametrize("table", [layout.TAGS, layout.METRIC_SUMMARIES])
def test_a_settle_that_fails_leaves_the_merged_file_read_as_before(lake_dir, tmp_path, monkeypatch, table):
    # Settling is a shortcut: an error inside it (a case nobody foresaw) must cost the old
    # path's time, not the refresh.
    import pyarrow as pa
    import pyarrow.fs as pafs

    from runlake.core import writer
    from runlake.lake import snapshot

    client, experiment_id, runs, lake = _hand_merged_lake(
        lake_dir, tmp_path, monkeypatch, False, "failing", 3, data=True
    )
    fs = pafs.LocalFileSystem()

    def broken(*_args):
        raise pa.ArrowInvalid("unforeseen")

    client.set_tag(runs[0], "t", "late")
    client.log_batch(runs[0], metrics=[("loss", 7.5, 1_700_000_000_001, 1)])
    client.flush()
    paths = [info.path for info in writer.list_parts(fs, lake_dir, table) if f"={experiment_id}" in info.path]
    merge.merge_files(fs, lake_dir, table, experiment_id, paths)
    monkeypatch.setattr(snapshot, "_multiset_rest", broken)
    real_absorb = snapshot.Snapshot._absorbed_summaries

    def absorb_failing(self, rows, partial):
        # The check's SQL broken for this call only: the refresh's own folds need the real one.
        real_fold = snapshot.views.fold_sql
        snapshot.views.fold_sql = lambda *_args: "SELECT nothing FROM nowhere"
        try:
            return real_absorb(self, rows, partial)
        finally:
            snapshot.views.fold_sql = real_fold

    monkeypatch.setattr(snapshot.Snapshot, "_absorbed_summaries", absorb_failing)
    gone = _gone_by_table(monkeypatch)
    lake.refresh()
    assert gone.get(table)  # the old path: inputs gone, the file read
    assert lake.get_run(runs[0]).tags["t"] == "late"
    assert lake.sql(f"SELECT value FROM latest_metrics WHERE run_id = '{runs[0]}'")["value"].tolist() == [7.5]


def merge_inputs_named(path: str) -> bool:
    import pyarrow.parquet as pq

    return layout.MERGED_FROM_KEY in (pq.read_metadata(path).metadata or {})


def test_settling_a_merged_file_takes_out_one_row_for_each_known_row():
    import pyarrow as pa

    from runlake.lake.snapshot import _multiset_rest

    merged = pa.table({"k": ["a", "a", "b", "c"], "v": [1, 1, 2, 3]})
    assert _multiset_rest(merged, [("a", 1), ("b", 2)]) == [1, 3]
    assert _multiset_rest(merged, [("a", 1), ("a", 1)]) == [2, 3]
    assert _multiset_rest(merged, []) == [0, 1, 2, 3]
    assert _multiset_rest(merged, [("a", 1)] * 3) is None  # a known row more often than merged
    assert _multiset_rest(merged, [("d", 4)]) is None
    assert _multiset_rest(merged, [("b", 3)]) is None  # the same key, another value


@pytest.mark.parametrize("probe_limit", [100, 0])
def test_latest_metrics_folded_from_new_summaries_match_a_fresh_fold(lake_dir, monkeypatch, probe_limit):
    """A refresh that only found new files folds a run's new summary rows with its current
    latest row instead of all its raw rows: the result must be what a fresh fold of every row
    gives, through NaN, steps going back, equal steps and merges in between."""
    from runlake.lake import search_index

    monkeypatch.setattr(search_index, "PROBE_LIMIT", probe_limit)
    client = LakeClient(lake_dir)
    experiment_id = client.create_experiment("summaries")
    runs = [client.create_run(experiment_id, run_id=f"run{r}") for r in range(3)]
    client.flush()
    live = Lake(lake_dir)
    nan = float("nan")
    flushes = [
        [("m", nan, 10, 0), ("m", nan, 11, 1)],  # only NaN so far: min and max NaN
        [("m", 3.0, 12, 1), ("n", -1.0, 5, 7)],  # the same step again, later: it wins
        [("m", 9.0, 9, 0), ("m", -2.0, 13, 1)],  # a step back, and a lower value at step 1
        [("m", nan, 14, 5), ("n", -1.0, 5, 7)],  # NaN as the latest value; a point again
        [("m", 1.0, 14, 5)],  # equal step and timestamp: the greater value is latest (NaN)
    ]
    for number, points in enumerate(flushes):
        for r, run_id in enumerate(runs[: number % 3 + 1]):
            client.log_batch(run_id, metrics=[(key, value + r, ts, step) for key, value, ts, step in points])
        client.flush()
        live.refresh()
        query = "SELECT * FROM latest_metrics ORDER BY ALL"
        assert live.sql(query).astype(str).equals(Lake(lake_dir).sql(query).astype(str)), number
    assert live.sql("SELECT count(*) AS n FROM latest_metrics")["n"][0] == 5  # run2 never logged n


def test_summary_rows_without_a_run_never_pile_up_in_latest_metrics(lake_dir):
    """A foreign summaries file whose rows name no run: the incremental fold must not add a
    folded row per refresh for them (no condition on run ids matches NULL)."""
    import pyarrow as pa

    from runlake.core import writer

    client = LakeClient(lake_dir)
    experiment_id = client.create_experiment("foreign")
    run_id = client.create_run(experiment_id, run_id="r")
    client.log_metric(run_id, "m", 1.0, step=0)
    client.flush()
    live = Lake(lake_dir)
    fs, root = layout.resolve_lake(lake_dir)
    for value in (5.0, 7.0, 9.0):
        rows = {name: [None] for name in layout.SCHEMAS[layout.METRIC_SUMMARIES].names}
        rows.update(key=["m"], latest_step=[1], latest_timestamp=[1], latest_value=[value])
        rows.update(min_value=[value], max_value=[value], value_count=[1])
        table = pa.table(rows, schema=layout.SCHEMAS[layout.METRIC_SUMMARIES])
        writer.write_part(fs, root, layout.METRIC_SUMMARIES, table, experiment_id, sort=False)
        client.log_metric(run_id, "m", value, step=int(value))  # and a real run's point beside it
        client.flush()
        live.refresh()
        assert live.sql("SELECT count(*) AS n FROM latest_metrics WHERE run_id IS NULL")["n"][0] <= 1
    query = "SELECT * FROM latest_metrics WHERE run_id = 'r'"
    assert live.sql(query).equals(Lake(lake_dir).sql(query))
