"""A Lake's state cache: a later open applies only what changed, and reads the same as memory."""

from __future__ import annotations

import gc
import glob
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runlake.core.errors import InvalidArgument
from runlake.ingest import LakeClient
from runlake.lake import Lake, snapshot, state_cache
from runlake.lake.maintenance.compaction import compact


def _log(client: LakeClient, experiment_id: str, first: int, count: int) -> list[str]:
    run_ids = []
    for i in range(first, first + count):
        run_id = client.create_run(experiment_id, run_name=f"run-{i}", tags={"t": f"v{i % 3}"})
        client.log_batch(run_id, metrics=[("loss", 1.0 / (i + 1), 0, s) for s in range(3)], params={"i": str(i)})
        client.set_terminated(run_id, "FINISHED")
        run_ids.append(run_id)
    client.flush()
    return run_ids


def _state(lake: Lake) -> dict[str, Any]:
    frame = lake.search_runs(run_view_type="ALL", order_by=["attributes.run_name"])
    return {
        "frame": frame.astype(str).to_dict("list"),
        "experiments": lake.list_experiments(view_type="ALL").astype(str).to_dict("list"),
        "latest": lake.sql("SELECT * FROM latest_metrics ORDER BY run_id, key").astype(str).to_dict("list"),
    }


def test_a_cached_open_applies_what_changed_and_reads_as_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = str(tmp_path / "lake"), tmp_path / "cache"
    client = LakeClient(root)
    experiment = client.create_experiment("cached")
    first = _log(client, experiment, 0, 20)

    lake = Lake(root, cache=cache)
    assert lake.connection.cached
    assert _state(lake) == _state(Lake(root))
    del lake

    # Nothing changed: a cached open reads no part file at all.
    read: list[str] = []
    real_read = snapshot.read_file
    monkeypatch.setattr(
        snapshot, "read_file", lambda fs, table, path, number: read.append(path) or real_read(fs, table, path, number)
    )
    unchanged = Lake(root, cache=cache)
    assert unchanged.connection.cached and read == []
    assert len(unchanged.search_runs()) == 20
    del unchanged

    # Between two opens: new runs, a delete, a rename, a tag change, then compaction
    # (files gone, merged files new).
    _log(client, experiment, 20, 5)
    client.delete_run(first[0])
    client.rename_run(first[1], "renamed")
    client.set_tag(first[2], "t", "changed")
    client.flush()
    reopened = Lake(root, cache=cache)
    assert reopened.connection.cached
    assert 0 < len(read) < 10  # the new files only
    memory = Lake(root)
    assert _state(reopened) == _state(memory)
    assert len(reopened.search_runs(run_view_type="ALL")) == 25
    del reopened

    report = compact(root, grace_s=0)
    assert report  # something was merged
    after = Lake(root, cache=cache)
    assert _state(after) == _state(Lake(root))
    # And a live refresh on the cached state keeps going.
    _log(client, experiment, 25, 2)
    assert len(after.search_runs()) == 26
    assert _state(after) == _state(Lake(root))


def test_a_second_lake_on_the_same_cache_reads_in_memory(tmp_path: Path) -> None:
    root, cache = str(tmp_path / "lake"), tmp_path / "cache"
    client = LakeClient(root)
    _log(client, client.create_experiment("two"), 0, 3)
    first = Lake(root, cache=cache)
    second = Lake(root, cache=cache)
    assert first.connection.cached and not second.connection.cached
    assert len(first.search_runs()) == len(second.search_runs()) == 3


def _holding(code: str, *args: str) -> subprocess.Popen[str]:
    """Another process that runs ``code`` (with ``sys`` imported), then holds what it opened
    until a line arrives on its stdin; returned once it is ready."""
    script = "import sys\n" + textwrap.dedent(code) + "\nprint('ready', flush=True)\nsys.stdin.readline()\n"
    holder = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    return holder


def test_a_cache_held_by_another_process_is_left_to_it(tmp_path: Path) -> None:
    root, cache = str(tmp_path / "lake"), tmp_path / "cache"
    client = LakeClient(root)
    _log(client, client.create_experiment("held"), 0, 3)
    holder = _holding(
        """
        from runlake.lake import Lake
        lake = Lake(sys.argv[1], cache=sys.argv[2])
        assert lake.connection.cached
        """,
        root,
        str(cache),
    )
    try:
        here = Lake(root, cache=cache)
        assert not here.connection.cached
        assert len(here.search_runs()) == 3
        # Once the lake has a published state, a private copy of it, not a fold in memory.
        _published(root, tmp_path / "dashboard-cache")
        elsewhere = Lake(root, cache=cache)
        assert elsewhere.connection.private and len(elsewhere.search_runs()) == 3
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    assert Lake(root, cache=cache).connection.cached  # released with the other process


def test_a_damaged_cache_file_is_started_again(tmp_path: Path) -> None:
    root, cache = str(tmp_path / "lake"), tmp_path / "cache"
    client = LakeClient(root)
    _log(client, client.create_experiment("damaged"), 0, 4)
    lake = Lake(root, cache=cache)
    path = state_cache.cache_file(lake.fs, lake.root, cache)
    del lake
    assert path.exists()
    path.write_bytes(b"not a duckdb file" * 100)
    again = Lake(root, cache=cache)
    assert again.connection.cached
    assert len(again.search_runs()) == 4


def test_each_lake_has_its_own_cache_file(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    counts = {}
    for name, runs in (("a", 2), ("b", 5)):
        client = LakeClient(str(tmp_path / name))
        _log(client, client.create_experiment(name), 0, runs)
        counts[name] = runs
    for name, runs in counts.items():
        lake = Lake(str(tmp_path / name), cache=cache)
        assert lake.connection.cached
        assert len(lake.search_runs()) == runs
        del lake
    assert len(list(cache.glob("state-*.duckdb"))) == 2


def test_no_cache_is_written_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(state_cache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    client = LakeClient(str(tmp_path / "lake"))
    _log(client, client.create_experiment("plain"), 0, 1)
    assert not Lake(str(tmp_path / "lake")).connection.cached
    assert not (tmp_path / "cache").exists()
    assert Lake(str(tmp_path / "lake"), cache=True).connection.cached
    assert list((tmp_path / "cache").glob("state-*.duckdb"))


def test_frames_match_between_cached_and_memory_dtypes(tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment("dtypes"), 0, 3)
    cached = Lake(root, cache=tmp_path / "cache").search_runs()
    memory = Lake(root).search_runs()
    pd.testing.assert_frame_equal(cached, memory)


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        ("", True, True),
        ("", False, False),
        ("1", False, True),
        ("off", True, False),
        ("/somewhere", False, "/somewhere"),
    ],
)
def test_the_environment_chooses_the_cache(
    monkeypatch: pytest.MonkeyPatch, value: str, default: bool, expected: bool | str
) -> None:
    monkeypatch.setenv(state_cache.CACHE_ENV, value)
    assert state_cache.from_env(default) == expected


def test_a_damaged_file_is_reported_again_by_the_next_cached_open(tmp_path: Path) -> None:
    from runlake.core.damage import DamagedFileWarning

    root, cache = str(tmp_path / "lake"), tmp_path / "cache"
    client = LakeClient(root)
    experiment = client.create_experiment("damaged-part")
    _log(client, experiment, 0, 2)
    _log(client, experiment, 2, 2)
    victim = sorted((tmp_path / "lake" / "params").rglob("*.parquet"))[-1]
    victim.write_bytes(victim.read_bytes()[:20])
    for _ in range(2):
        with pytest.warns(DamagedFileWarning):
            lake = Lake(root, cache=cache)
        assert lake.connection.cached
        assert [d.path for d in lake.damaged_files()] == [str(victim)]
        assert len(lake.search_runs()) == 4
        del lake


def test_a_path_listed_again_with_another_size_drops_its_old_rows(tmp_path: Path) -> None:
    # The lake is deleted and written again under the same file names (another content).
    import pyarrow.parquet as pq

    root, cache = str(tmp_path / "lake"), tmp_path / "cache"
    client = LakeClient(root)
    _log(client, client.create_experiment("first"), 0, 1)
    del Lake(root, cache=cache).connection
    (params_file,) = (tmp_path / "lake" / "params").rglob("*.parquet")
    other = LakeClient(str(tmp_path / "other"))
    _log(other, other.create_experiment("second"), 100, 3)
    (other_file,) = (tmp_path / "other" / "params").rglob("*.parquet")
    before = pq.read_table(params_file)
    pq.write_table(pq.read_table(other_file), params_file)
    assert params_file.stat().st_size != before.nbytes
    query = "SELECT run_id, key, value FROM params ORDER BY ALL"
    cached = Lake(root, cache=cache)
    assert cached.connection.cached
    assert cached.sql(query).to_dict("list") == Lake(root).sql(query).to_dict("list")


def test_two_spellings_of_the_cache_directory_are_one_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment("spelled"), 0, 2)
    monkeypatch.chdir(tmp_path)
    first = Lake(root, cache="cache")
    second = Lake(root, cache=tmp_path / "cache")
    assert first.connection.cached and not second.connection.cached


def test_a_cache_that_cannot_be_written_reads_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, cache = str(tmp_path / "lake"), tmp_path / "cache"
    client = LakeClient(root)
    experiment = client.create_experiment("unwritable")
    _log(client, experiment, 0, 2)
    lake = Lake(root, cache=cache)
    path = state_cache.cache_file(lake.fs, lake.root, cache)
    del lake
    _log(client, experiment, 2, 1)
    real_open = state_cache._open

    def open_then_lose_the_log(where: Path) -> Any:
        con = real_open(where)
        Path(str(where) + ".wal").mkdir()  # as a read-only directory or a full disk: no log can be written
        return con

    monkeypatch.setattr(state_cache, "_open", open_then_lose_the_log)
    again = Lake(root, cache=cache)
    assert not again.connection.cached
    assert len(again.search_runs()) == 3
    assert path.exists()


def test_user_sql_does_not_change_a_cached_state(tmp_path: Path) -> None:
    root, cache = str(tmp_path / "lake"), tmp_path / "cache"
    client = LakeClient(root)
    _log(client, client.create_experiment("sql"), 0, 3)
    lake = Lake(root, cache=cache)
    assert lake.connection.cached
    assert lake.sql("DELETE FROM runs; SELECT count(*) AS n FROM runs")["n"][0] == 0
    assert len(lake.search_runs()) == 3
    del lake
    assert len(Lake(root, cache=cache).search_runs()) == 3


@pytest.mark.parametrize("cached", [False, True])
def test_a_file_rewritten_in_place_while_the_table_is_read_again_keeps_its_rows_accountable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cached: bool
) -> None:
    # While one runs file is read, another is rewritten in place (another size) and the one
    # being read vanishes: the table is listed again and the rewritten file read again, so its
    # rows carry the number of the file the listing holds - and go when that file goes.
    import os

    import pyarrow.parquet as pq

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("e")
    client.flush()
    client.create_run(experiment)
    client.flush()
    client.create_run(experiment)
    client.flush()
    first, second = sorted(str(p) for p in Path(root).rglob("*.parquet") if "/runs/" in str(p))
    real_read = snapshot.read_file
    done = []

    def racing_read(fs: Any, table: str, path: str, number: int) -> Any:
        rows = real_read(fs, table, path, number)
        if table == "runs" and path == second and not done:
            done.append(path)
            rewritten = pq.read_table(first).replace_schema_metadata({b"pad": b"x" * 100})
            pq.write_table(rewritten, first)
            os.remove(second)
            raise FileNotFoundError(second)
        return rows

    monkeypatch.setattr(snapshot, "read_file", racing_read)
    lake = Lake(root, cache=tmp_path / "cache" if cached else False)
    monkeypatch.setattr(snapshot, "read_file", real_read)
    assert done and len(lake.search_runs()) == 1
    os.remove(first)  # compacted or purged away
    assert len(lake.search_runs()) == 0
    assert lake.sql("SELECT count(*) AS n FROM raw_runs")["n"][0] == 0


def _state_file(path: Path, age_days: float) -> Path:
    import os
    import time

    import duckdb

    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    con.close()
    stamp = time.time() - age_days * 86400
    os.utime(path, (stamp, stamp))
    return path


def test_state_files_no_lake_opened_for_two_weeks_are_removed(tmp_path: Path) -> None:
    import os
    import time

    root, cache = str(tmp_path / "lake"), tmp_path / "cache"
    cache.mkdir()
    client = LakeClient(root)
    _log(client, client.create_experiment("swept"), 0, 2)
    first = Lake(root, cache=cache)
    (own,) = cache.glob("state-*.duckdb")
    del first
    gc.collect()  # its state file is released with it
    # This lake's own file, unopened for a month: opening it makes it recent again.
    os.utime(own, (time.time() - 30 * 86400,) * 2)
    stale = _state_file(cache / "state-0000000000000000000000aa.duckdb", 15)
    recent = _state_file(cache / "state-0000000000000000000000bb.duckdb", 13)
    other = _state_file(cache / "notes-0000000000000000000000cc.duckdb", 100)  # not a state file
    held = _state_file(cache / "state-0000000000000000000000dd.duckdb", 0)
    holder = _holding("import duckdb; con = duckdb.connect(sys.argv[1])", str(held))
    try:
        os.utime(held, (time.time() - 60 * 86400,) * 2)  # old, but another process holds it
        lake = Lake(root, cache=cache)
        assert lake.connection.cached and len(lake.search_runs()) == 2
        assert not stale.exists()
        assert own.exists() and time.time() - own.stat().st_mtime < 3600
        assert recent.exists() and other.exists() and held.exists()
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    # Released: the next sweep removes it, never the file a Lake of this process holds, however
    # old its time, and the sweep's test leaves that Lake's lock in place.
    os.utime(own, (time.time() - 30 * 86400,) * 2)
    assert state_cache.sweep(cache) == [held]
    assert own.exists() and lake.connection.cached and len(lake.search_runs()) == 2
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, duckdb; duckdb.connect(sys.argv[1])", str(own)],
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "lock" in probe.stderr.lower()
    # Closing a Lake marks its file as used: held for weeks, it is not stale when released.
    del lake
    gc.collect()
    assert time.time() - own.stat().st_mtime < 3600 and state_cache.sweep(cache) == []


def test_warming_a_lake_reads_without_changing_it(tmp_path: Path) -> None:
    root, cache = str(tmp_path / "lake"), tmp_path / "cache"
    Lake(root, cache=cache).warm()  # no lake yet: nothing to read, nothing raised
    client = LakeClient(root)
    _log(client, client.create_experiment("warm"), 0, 250)  # more runs than one probed page
    Lake(root, cache=cache)  # builds the cache file
    gc.collect()
    reopened = Lake(root, cache=cache)
    assert reopened.connection.cached
    before = _state(reopened)
    reopened.warm()
    reopened.warm(sample=0)
    assert _state(reopened) == before == _state(Lake(root))


@pytest.mark.parametrize("sample", [-1, 1.5, "200", True, 10**6])
def test_warming_with_a_bad_sample_says_so(tmp_path: Path, sample: Any) -> None:
    from runlake.core.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="sample must be a whole number"):
        Lake(str(tmp_path / "lake")).warm(sample=sample)


def test_no_state_connection_draws_a_progress_bar(tmp_path):
    # DuckDB draws a progress bar on standard output, terminal or not, for any statement of a
    # connection that runs over two seconds (the first fold of a big lake): in the output of
    # `runlake sql --format csv > file` it would corrupt the file. A bar shows only after two
    # seconds, so the setting is what is checked, on both kinds of state connection and in a
    # plain interpreter (under pytest DuckDB starts with the bar off).
    script = textwrap.dedent(
        """
        import sys
        import pyarrow.fs as pafs
        from runlake.lake import state_cache
        root, cache = sys.argv[1], sys.argv[2]
        for where in (False, cache):
            con, key, private = state_cache.connect(pafs.LocalFileSystem(), root, where)
            print(where is False, key is None, con.execute("SELECT current_setting('enable_progress_bar')").fetchall())
            state_cache.release(con, key, private)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "lake"), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out == ["True True [(False,)]", "False False [(False,)]"]


def _compressions(lake: Lake, table: str) -> set[str]:
    rows = lake.connection._con.execute(
        "SELECT DISTINCT compression FROM pragma_storage_info(?) WHERE segment_type <> 'VALIDITY'", [table]
    ).fetchall()
    return {compression for (compression,) in rows}


def test_a_first_fold_in_memory_compresses_the_raw_rows_and_nothing_a_page_reads(tmp_path: Path) -> None:
    # The raw rows are read only when a refresh folds a run again; the folded tables and the
    # search index are read row by row by every page, and compressed ones made pages slower.
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("compressed")
    _log(client, experiment, 0, 30)
    lake = Lake(root)
    for table in ("raw_runs", "raw_params", "raw_tags", "raw_metric_summaries"):
        assert "Uncompressed" not in _compressions(lake, table), table
    for table in ("runs", "params", "tags", "latest_metrics", "_runs_wide"):
        assert _compressions(lake, table) == {"Uncompressed"}, table

    # Later refreshes fold into the same tables (nothing is checkpointed after the first fold)
    # and read as a fresh fold does.
    first = _log(client, experiment, 30, 5)
    client.delete_run(first[0])
    client.set_tag(first[1], "t", "changed")
    client.flush()
    compact(root, grace_s=0)
    _log(client, experiment, 35, 2)
    assert len(lake.search_runs()) == 36
    assert _state(lake) == _state(Lake(root))
    assert _compressions(lake, "params") == {"Uncompressed"}


def test_a_first_fold_that_fails_half_way_is_done_again_by_the_next_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.fs as pafs

    from runlake.lake import views

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment("half"), 0, 10)
    state = snapshot.Snapshot(state_cache.new_connection(), pafs.LocalFileSystem(), root)
    real_fold = views.split_fold_sql

    def failing_fold(view: str) -> str:
        if view == "tags":
            raise RuntimeError("the fold stopped here")
        return real_fold(view)

    monkeypatch.setattr(views, "split_fold_sql", failing_fold)
    with pytest.raises(RuntimeError, match="stopped here"):
        state.refresh()
    monkeypatch.setattr(views, "split_fold_sql", real_fold)

    assert state.refresh()
    con, fresh = state._con, Lake(root)
    assert con.execute("SELECT count(*) FROM _runs_wide").fetchone() == (10,)
    for view in ("runs", "params", "tags", "latest_metrics"):
        query = f"SELECT * FROM {view} ORDER BY ALL"
        assert con.execute(query).df().equals(fresh.sql(query)), view


def test_a_slow_open_in_memory_suggests_the_state_cache_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runlake.lake import StateCacheHint, connection

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment("hinted"), 0, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Lake(root)  # quick: no hint
        monkeypatch.setattr(connection, "SLOW_OPEN_S", 0.0)
        slow = Lake(root)
        slow.refresh()  # only the open hints, not a later refresh
        Lake(root, cache=tmp_path / "cache")  # a cache asked for: nothing to suggest
        first = Lake(root, cache=tmp_path / "cache2")
        Lake(root, cache=tmp_path / "cache2")  # held by `first`, so read in memory: no hint either
        del first
    hints = [w for w in caught if issubclass(w.category, StateCacheHint)]
    assert len(hints) == 1
    assert "cache=True" in str(hints[0].message) and root in str(hints[0].message)
    assert hints[0].filename == __file__  # points at the caller's line


# -- published states ----------------------------------------------------------------------------
def _published(root: str, cache: Path) -> tuple[Lake, state_cache.PublishedState]:
    publisher = Lake(root, cache=cache)
    assert publisher.connection.cached
    return publisher, publisher.publish_state()


def _files_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    read: list[str] = []
    real_read = snapshot.read_file
    monkeypatch.setattr(
        snapshot, "read_file", lambda fs, table, path, number: read.append(path) or real_read(fs, table, path, number)
    )
    return read


def test_a_reader_with_no_state_of_its_own_starts_from_the_published_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("published")
    first = _log(client, experiment, 0, 20)
    publisher, published = _published(root, tmp_path / "dashboard-cache")
    assert published.path == state_cache.published_file(publisher.fs, publisher.root)
    assert published.path.startswith(f"{publisher.root}/_state/state-")
    assert Path(published.path).stat().st_size == published.size > 0

    # Written after the publish: the reader folds these files, and only these.
    _log(client, experiment, 20, 5)
    client.delete_run(first[0])
    client.set_tag(first[1], "t", "changed")
    client.flush()
    read = _files_read(monkeypatch)
    reader = Lake(root, cache=tmp_path / "notebook-cache")
    assert reader.connection.cached
    assert 0 < len(read) < 10
    assert state_cache.published_digest(reader.fs, reader.root) == state_cache.listing_digest(
        publisher.connection.cursor()
    )
    copied = io.BytesIO()  # the copy is the DuckDB file alone: no digest, no trailer
    with open(published.path, "rb") as src:
        assert state_cache._copy_checked(src, copied, published.size) is None
    assert len(copied.getvalue()) == published.size - state_cache._DIGEST_SIZE - state_cache._TRAILER.size
    assert _state(reader) == _state(Lake(root, cache=False))
    assert len(reader.search_runs()) == 24


def test_a_default_lake_reads_a_private_copy_of_the_published_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``Lake(path)`` starts from a copy of the published state (at a million runs 4-8 s instead
    # of 40-58 s in memory), which is its alone: user SQL keeps what it creates, as in memory,
    # nothing of it reaches another reader, and the copy goes with the Lake.
    default = tmp_path / "default-cache"
    monkeypatch.setenv(state_cache.CACHE_DIR_ENV, str(default))
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("private")
    first = _log(client, experiment, 0, 20)
    assert not Lake(root).connection.file_backed  # nothing published: memory, and no folder
    assert not default.exists()
    _published(root, tmp_path / "dashboard-cache")
    _log(client, experiment, 20, 5)
    client.delete_run(first[0])
    client.flush()

    read = _files_read(monkeypatch)
    lake = Lake(root)
    assert lake.connection.private and lake.connection.file_backed and not lake.connection.cached
    assert 0 < len(read) < 10
    assert _state(lake) == _state(Lake(root, cache=False))
    lake.sql("CREATE TABLE mine AS SELECT run_id FROM runs")
    assert len(lake.sql("SELECT * FROM mine")) == 25  # kept: no rollback, as in memory
    other = Lake(root)
    assert other.connection.private
    with pytest.raises(InvalidArgument, match="mine"):
        other.sql("SELECT * FROM mine")
    copies = list((default / "private").glob(".private-*.duckdb"))
    assert len(copies) == 2
    assert (default / "private").stat().st_mode & 0o777 == 0o700  # their logs too
    assert all(os.stat(p).st_mode & 0o777 == 0o600 for p in copies)  # whatever the umask
    setting = "SELECT current_setting('memory_limit') AS m"
    assert lake.sql(setting)["m"].tolist() == Lake(root, cache=False).sql(setting)["m"].tolist()  # memory's
    with pytest.raises(InvalidArgument, match="cache=True"):
        lake.publish_state()
    _log(client, experiment, 25, 1)
    assert len(lake.search_runs()) == 25  # 26 logged, one deleted
    assert not Lake(root, cache=False).connection.file_backed  # memory when memory is asked for

    del lake, other
    gc.collect()
    assert not _private_copies(default)


def _refresh_fails_once(monkeypatch: pytest.MonkeyPatch, error: Exception) -> list[int]:
    """Make the next ``Snapshot.refresh`` of a Lake raise ``error`` (later ones run); the calls
    made. The reference state a copy is checked against is folded first, so it is not that one."""
    state_cache._reference()
    real_refresh = snapshot.Snapshot.refresh
    calls: list[int] = []

    def fail_once(self: snapshot.Snapshot, *args: Any, **kwargs: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real_refresh(self, *args, **kwargs)

    monkeypatch.setattr(snapshot.Snapshot, "refresh", fail_once)
    return calls


@pytest.mark.parametrize("failure", ["a damaged copy", "a failing first refresh"])
def test_a_default_lake_that_cannot_use_the_published_state_reads_in_memory_and_does_not_take_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    default = tmp_path / "default-cache"
    monkeypatch.setenv(state_cache.CACHE_DIR_ENV, str(default))
    root = _published_with_three_runs(tmp_path, "refused")
    if failure == "a damaged copy":
        (published,) = Path(root, "_state").glob("state-*.duckdb")
        published.write_bytes(b"not a database" * 100)
    else:
        _refresh_fails_once(monkeypatch, KeyError("a key this code does not know"))
    downloads = _downloads(monkeypatch)
    reader = Lake(root)
    assert not reader.connection.file_backed and len(reader.search_runs()) == 3
    assert len(downloads) == 1
    assert list(default.glob(".rejected-*"))
    assert not _private_copies(default)
    assert not Lake(root).connection.file_backed and len(downloads) == 1


def _private_copies(folder: Path) -> list[Path]:
    """Private copies (and their logs and spill folders) in a cache folder."""
    return sorted((folder / "private").glob(".private-*")) + sorted(folder.glob(".private-*"))


def _published_with_three_runs(tmp_path: Path, name: str) -> str:
    """A lake of three runs whose state a dashboard (its own cache) published; its root."""
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment(name), 0, 3)
    _published(root, tmp_path / "dashboard-cache")
    return root


def _python(code: str, cache_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a new interpreter with ``args`` and ``cache_dir`` as its cache folder."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, state_cache.CACHE_DIR_ENV: str(cache_dir)},
    )


def test_a_forked_child_leaves_its_parents_state_alone(tmp_path: Path) -> None:
    # A forked child that exits through the interpreter's exit hooks runs the finalizer of the
    # Lake it inherited: it must neither remove the parent's private copy nor close DuckDB
    # there (which crashes the child). The child here runs the finalizer itself, then leaves.
    root = _published_with_three_runs(tmp_path, "forked")
    default = tmp_path / "default-cache"
    code = """
        import glob, os, sys
        from runlake.lake import Lake
        lake = Lake(sys.argv[1])
        assert lake.connection.private
        child = os.fork()
        if child == 0:
            lake.connection._finalizer()
            os._exit(0)
        _pid, status = os.waitpid(child, 0)
        copies = glob.glob(os.path.join(sys.argv[2], "private", ".private-*.duckdb"))
        print(status, len(copies), len(lake.search_runs()))
        """
    out = _python(code, default, root, str(default))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "1", "3"]
    assert not _private_copies(default)  # the parent removed it as it exited


def test_a_cache_held_in_this_process_is_read_as_a_private_copy_of_the_published_state(tmp_path: Path) -> None:
    # A notebook with cache=True beside a Lake that holds the cache: not a fold of the whole lake
    # in memory when the lake has a published state (another process: see the test above).
    root, cache = str(tmp_path / "lake"), tmp_path / "cache"
    client = LakeClient(root)
    _log(client, client.create_experiment("held"), 0, 3)
    publisher, _published_state = _published(root, cache)
    second = Lake(root, cache=cache)  # held by `publisher`, in this process
    assert second.connection.private and len(second.search_runs()) == 3
    with pytest.raises(InvalidArgument, match="held by another process"):
        second.publish_state()
    assert len(list((cache / "private").glob(".private-*.duckdb"))) == 1


def test_multiprocessing_workers_remove_their_private_copies(tmp_path: Path) -> None:
    # Workers end with os._exit, past the interpreter's exit hooks: a reader kept in a worker
    # (the MLflow plugin keeps one) would leave a copy of the published state per worker.
    root = _published_with_three_runs(tmp_path, "workers")
    default = tmp_path / "default-cache"
    code = """
        import multiprocessing, sys
        from runlake.lake import Lake
        kept = []
        def count(_):
            kept.append(Lake(sys.argv[1]))
            assert kept[-1].connection.private
            return len(kept[-1].search_runs())
        if __name__ == "__main__":
            with multiprocessing.get_context("fork").Pool(2) as pool:
                print(pool.map(count, range(4)))
                pool.close()
                pool.join()
        """
    out = _python(code, default, root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[3, 3, 3, 3]"
    assert not _private_copies(default)


def test_a_forked_child_exiting_does_not_checkpoint_its_parents_state(tmp_path: Path) -> None:
    # DuckDB's own teardown in a child that exits through the interpreter's exit hooks used to
    # write the child's view of the state into the parent's file (the log was gone after it).
    root = _published_with_three_runs(tmp_path, "teardown")
    default = tmp_path / "default-cache"
    code = """
        import glob, os, sys
        from runlake.lake import Lake
        lake = Lake(sys.argv[1])
        lake.sql("CREATE TABLE mine AS SELECT 1 AS x")  # in the copy's log until a checkpoint
        logs = lambda: len(glob.glob(os.path.join(sys.argv[2], "private", ".private-*.duckdb.wal")))
        before = logs()
        if os.fork() == 0:
            sys.exit(0)
        os.wait()
        print(before, logs(), len(lake.search_runs()), len(lake.sql("SELECT * FROM mine")))
        """
    out = _python(code, default, root, str(default))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "3", "1"]


@pytest.mark.parametrize("cache", ["private", "cached"])
@pytest.mark.parametrize("when", ["during the download", "during the first refresh"])
def test_an_interrupted_open_leaves_nothing_behind_and_refuses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str, cache: str
) -> None:
    # Ctrl-C (KeyboardInterrupt, or DuckDB's InterruptException during a query) stops the open:
    # the user's, not a fault of the file. No fold in memory starts instead, the published state
    # is not refused, no copy is left, and the cache is not left "in use" for the next open.
    import duckdb

    default = tmp_path / "default-cache"
    monkeypatch.setenv(state_cache.CACHE_DIR_ENV, str(default))
    root = _published_with_three_runs(tmp_path, "interrupted")
    error: type[BaseException]
    if when == "during the download":
        real = state_cache._copy_checked
        calls: list[int] = []

        def interrupted_once(src: Any, dst: Any, size: int) -> str | None:
            calls.append(1)
            if len(calls) == 1:
                raise KeyboardInterrupt
            return real(src, dst, size)

        monkeypatch.setattr(state_cache, "_copy_checked", interrupted_once)
        error = KeyboardInterrupt
    else:
        calls = _refresh_fails_once(monkeypatch, duckdb.InterruptException("INTERRUPT Error: Interrupted!"))
        error = duckdb.InterruptException
    where = None if cache == "private" else default
    with pytest.raises(error):
        Lake(root, cache=where)
    gc.collect()
    assert len(calls) == 1
    assert not _private_copies(default) and not list(default.glob(".adopt-*"))
    assert not list(default.glob(".rejected-*"))
    again = Lake(root, cache=where)
    assert (again.connection.private, again.connection.cached) == (cache == "private", cache == "cached")
    assert len(calls) >= 2 and len(again.search_runs()) == 3


def test_private_copies_left_by_killed_readers_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = tmp_path / "default-cache"
    monkeypatch.setenv(state_cache.CACHE_DIR_ENV, str(default))
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment("killed"), 0, 3)
    _published(root, tmp_path / "dashboard-cache")
    code = """
        from runlake.lake import Lake
        lake = Lake(sys.argv[1])
        assert lake.connection.private
        """
    killed, alive = _holding(code, root), _holding(code, root)
    try:
        copies = sorted((default / "private").glob(".private-*.duckdb"))
        assert len(copies) == 2
        killed.kill()
        killed.wait(timeout=60)
        hour_ago = time.time() - 3600
        for path in copies:
            os.utime(path, (hour_ago, hour_ago))
        host, dead = state_cache._host_tag(), f"{killed.pid:x}"
        other_host = "0" * 8 if host != "0" * 8 else "1" * 8

        def planted(host: str, pid: str, age_s: float, suffix: str = "") -> Path:
            path = default / "private" / f".private-{'0' * 24}-{host}-{pid}-{secrets.token_hex(3)}.duckdb{suffix}"
            path.write_bytes(b"x")
            os.utime(path, (time.time() - age_s, time.time() - age_s))
            return path

        kept = [
            planted(host, dead, 0),  # being linked into place
            planted(host, f"{os.getpid():x}", 3600),  # its process runs: held, whatever a lock says
            planted(other_host, dead, 3600),  # another host's (a shared home folder): theirs
        ]
        spill = default / "private" / f".private-{'0' * 24}-{host}-{dead}-abc.duckdb.tmp"  # its copy gone
        spill.mkdir()
        (spill / "block").write_bytes(b"x")
        removed = state_cache.sweep(default)
        assert len(removed) == 1 and removed[0] in copies  # the killed reader's, not the held one
        assert all(path.exists() for path in kept) and not spill.exists()
    finally:
        alive.communicate("\n", timeout=60)
    assert alive.returncode == 0
    # A reader that exits normally removes its copy.
    assert sorted((default / "private").glob(".private-*.duckdb")) == sorted(kept)


def _part_files(root: str) -> list[str]:
    return [p for p in glob.glob(f"{root}/**/*.parquet", recursive=True) if "/artifacts/" not in p]


def test_a_published_state_is_never_used_by_a_copy_of_the_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its tables name the files of the lake it was made from: a copy, or the same lake reached by
    # another path, starts from nothing rather than from another lake's files.
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("copied")
    _log(client, experiment, 0, 5)
    _published(root, tmp_path / "dashboard-cache")
    copy = str(tmp_path / "copy")
    shutil.copytree(root, copy)
    LakeClient(copy).create_run(experiment, run_name="only-in-the-copy")
    LakeClient(copy).flush()
    read = _files_read(monkeypatch)
    lake = Lake(copy, cache=tmp_path / "copy-cache")
    assert lake.connection.cached
    assert sorted(read) == sorted(p for p in _part_files(copy) if "/metrics/" not in p)
    assert len(lake.search_runs()) == 6
    read.clear()
    assert Lake(root, cache=tmp_path / "lake-cache").connection.cached and len(read) == 0


def test_a_publish_copies_the_state_of_one_moment(tmp_path: Path) -> None:
    # Refreshes go on while the copy is made (it takes a minute at a million runs): the copy
    # holds the tables and listings of the moment it began, and a reader folds the rest.
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("moment")
    _log(client, experiment, 0, 10)
    publisher = Lake(root, cache=tmp_path / "dashboard-cache")
    snap = publisher.connection._snapshot
    real_begin = snap.begin_pinned

    def begin_then_change(cursor: Any) -> None:
        real_begin(cursor)
        _log(client, experiment, 10, 3)
        assert publisher.refresh()
        assert len(publisher.search_runs()) == 13

    snap.begin_pinned = begin_then_change  # type: ignore[method-assign]
    published = publisher.publish_state()
    import duckdb

    with duckdb.connect(published.path, read_only=True) as copy:
        assert copy.execute("SELECT count(*) FROM runs").fetchall() == [(10,)]
        assert copy.execute("SELECT count(*) FROM _runs_wide").fetchall() == [(10,)]
    reader = Lake(root, cache=tmp_path / "reader-cache")
    assert reader.connection.cached
    assert _state(reader) == _state(Lake(root, cache=False))
    assert len(reader.search_runs()) == 13
    # The publisher's own state went on, and its connection is as it was.
    assert publisher.connection._con.execute("SELECT current_setting('force_compression')").fetchall() == [
        ("uncompressed",)
    ]
    assert not [n for n in os.listdir(tmp_path / "dashboard-cache") if n.startswith(".")]


def test_a_published_state_is_compressed_but_for_the_search_index(tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment("compressed"), 0, 40)
    _publisher, published = _published(root, tmp_path / "dashboard-cache")
    import duckdb

    with duckdb.connect(published.path, read_only=True) as copy:

        def compressions(table: str) -> set[str]:
            rows = copy.execute(
                "SELECT DISTINCT compression FROM pragma_storage_info(?) WHERE segment_type <> 'VALIDITY'", [table]
            ).fetchall()
            return {compression for (compression,) in rows}

        assert compressions("params") - {"Uncompressed"}
        assert compressions("raw_params") - {"Uncompressed"}
        # Every page scans the index: compressed, a first page at 100,000 runs took twice as long.
        # (A column of one value is stored as a constant either way.)
        assert "Uncompressed" in compressions("_runs_wide") <= {"Uncompressed", "Constant"}
        indexes = {name for (name,) in copy.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
        assert {"_runs_wide_run_id", "runs_run_id", "params_run_id"} <= indexes


def test_a_published_state_of_the_first_format_is_still_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Sealed without the digest of its listings (RLSTATE1): readers take it; a publisher cannot
    # tell whether it holds its state, so publishes over it once it is old.
    import zlib

    from runlake.lake.maintenance.upkeep import Publisher

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment("first-format"), 0, 3)
    publisher, published = _published(root, tmp_path / "dashboard-cache")
    sealed = Path(published.path).read_bytes()[: -state_cache._TRAILER.size]
    body = sealed[: -state_cache._DIGEST_SIZE]
    Path(published.path).write_bytes(body + state_cache._TRAILER.pack(b"RLSTATE1", len(body), zlib.crc32(body)))
    assert state_cache.published_digest(publisher.fs, publisher.root) is None
    adoptions = _adoptions(monkeypatch)
    reader = Lake(root, cache=tmp_path / "reader-cache")
    assert adoptions == [True] and len(reader.search_runs()) == 3
    (copy,) = (tmp_path / "reader-cache").glob("state-*.duckdb")
    assert copy.stat().st_size >= len(body)
    assert Publisher(publisher, min_runs=1, every_s=0).due()


def _downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The published files readers copy from now on."""
    copied: list[str] = []
    real = state_cache._copy_checked
    monkeypatch.setattr(
        state_cache, "_copy_checked", lambda src, dst, size: copied.append(str(size)) or real(src, dst, size)
    )
    return copied


@pytest.mark.parametrize("damage", ["garbage", "truncated", "a damaged block", "unsealed"])
def test_a_damaged_published_state_is_read_past_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment("damaged"), 0, 30)
    publisher, published = _published(root, tmp_path / "dashboard-cache")
    data = Path(published.path).read_bytes()
    middle = len(data) // 2
    damaged = {
        "garbage": b"not a database" * 100,
        "truncated": data[:middle],
        # A block no open reads, only the queries over its table: found by the file's CRC-32.
        "a damaged block": data[:middle] + b"\xff" * 40960 + data[middle + 40960 :],
        "unsealed": data[: -state_cache._TRAILER.size],
    }[damage]
    Path(published.path).write_bytes(damaged)
    downloads = _downloads(monkeypatch)
    cache = tmp_path / "reader-cache"
    reader = Lake(root, cache=cache)
    assert reader.connection.cached  # folded from the files into a new cache file
    assert _state(reader) == _state(Lake(root, cache=False))
    assert len(reader.search_runs()) == 30
    assert len(downloads) == 1
    # The next reader in that folder does not copy the same file again; a new publish is taken.
    del reader
    gc.collect()
    for path in cache.glob("state-*.duckdb"):
        path.unlink()
    assert Lake(root, cache=cache).connection.cached and len(downloads) == 1
    gc.collect()
    for path in cache.glob("state-*.duckdb"):
        path.unlink()
    _log(client, client.create_experiment("later"), 0, 1)
    publisher.publish_state()
    again = Lake(root, cache=cache)
    assert len(downloads) == 2 and _state(again) == _state(Lake(root, cache=False))


def _adoptions(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each cached open from now on started from the published state."""
    taken: list[bool] = []
    real = state_cache.adopt

    def adopt(fs: Any, root: str, path: Path) -> bool:
        taken.append(real(fs, root, path))
        return taken[-1]

    monkeypatch.setattr(state_cache, "adopt", adopt)
    return taken


def _reseal(published: str, change: str) -> None:
    """Run ``change`` in the published file's DuckDB and seal it again, as someone with write
    access to the lake could."""
    import duckdb

    sealed = Path(published).read_bytes()[: -state_cache._TRAILER.size]
    body, digest = sealed[: -state_cache._DIGEST_SIZE], sealed[-state_cache._DIGEST_SIZE :]
    plain = Path(published + ".plain")
    plain.write_bytes(body)
    with duckdb.connect(str(plain)) as con:
        con.execute(change)
        con.execute("CHECKPOINT")
    with open(plain, "rb") as src, open(published, "wb") as dst:
        state_cache._copy_sealed(src, dst, digest)
    plain.unlink()


def _refused_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> tuple[str, LakeClient, str, Lake]:
    """A lake of 5 runs whose published state had ``change`` made to it (and resealed), and a
    cached reader that refused it and folded the lake itself; the same copy resealed unchanged
    is taken, so the change is what it was refused for."""
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("refused")
    _log(client, experiment, 0, 5)
    _publisher, published = _published(root, tmp_path / "dashboard-cache")
    adoptions = _adoptions(monkeypatch)
    _reseal(published.path, "SELECT 1")
    Lake(root, cache=tmp_path / "unchanged-cache")
    assert adoptions == [True]
    _reseal(published.path, change)
    reader = Lake(root, cache=tmp_path / "reader-cache")
    assert reader.connection.cached and adoptions == [True, False]
    return root, client, experiment, reader


@pytest.mark.parametrize(
    "plant",
    [
        "CREATE MACRO lower(x) AS 'planted'",
        "CREATE VIEW planted AS SELECT 1",
        "CREATE TABLE planted (x INTEGER)",
        "CREATE SEQUENCE planted",
        'CREATE INDEX "x""; SELECT 1; --" ON runs(run_id)',
        "CREATE INDEX runs_name ON runs(lower(run_name))",
        "ALTER TABLE raw_runs ALTER COLUMN run_name SET DEFAULT 'planted'",
        "CREATE SCHEMA planted",
        "CREATE TYPE planted AS ENUM ('a')",
    ],
)
def test_a_published_state_holding_more_than_a_state_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plant: str
) -> None:
    # A DuckDB file is closer to code than to data: a macro named as a built-in replaces it in
    # every query of the reader that opens the file, an index's or a default's expression runs
    # on insert, and the publisher used to run its catalog's SQL text.
    root, _client, _experiment, reader = _refused_after(tmp_path, monkeypatch, plant)
    con = reader.connection._con
    assert con.execute("SELECT count(*) FROM duckdb_functions() WHERE NOT internal").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'planted'").fetchall() == [(0,)]
    assert reader.sql("SELECT lower('ABC') AS x")["x"].tolist() == ["abc"]
    assert _state(reader) == _state(Lake(root, cache=False))
    # And a reader of it publishes nothing planted either.
    assert "planted" not in Path(reader.publish_state().path).read_bytes().decode("latin-1")


def test_a_published_state_is_as_private_as_the_files_it_was_read_from(tmp_path: Path) -> None:
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("private")
    _log(client, experiment, 0, 3)
    publisher, published = _published(root, tmp_path / "dashboard-cache")
    assert os.stat(published.path).st_mode & 0o777 == 0o666 & ~_umask()
    secret = [p for p in _part_files(root) if "/params/" in p][0]
    os.chmod(secret, 0o600)
    _log(client, experiment, 3, 1)  # changed, so the next publish rewrites it
    published = publisher.publish_state()
    assert os.stat(published.path).st_mode & 0o077 == 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_only_a_cached_state_with_full_sql_access_is_published(tmp_path: Path) -> None:
    from runlake.core.errors import InvalidArgument

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment("refused"), 0, 1)
    with pytest.raises(InvalidArgument, match="cache=True"):
        Lake(root, cache=False).publish_state()
    with pytest.raises(InvalidArgument, match="sql_access"):
        Lake(root, cache=tmp_path / "cache", sql_access="views").publish_state()
    assert not os.path.exists(os.path.join(root, "_state"))


def test_the_dashboard_publishes_a_big_lake_when_due(tmp_path: Path) -> None:
    from runlake.lake.maintenance.upkeep import Publisher

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiment = client.create_experiment("due")
    _log(client, experiment, 0, 4)
    assert Publisher(Lake(root, cache=False), min_runs=1).publish_if_due() is None  # in memory
    lake = Lake(root, cache=tmp_path / "dashboard-cache")
    publisher = Publisher(lake, min_runs=5, every_s=3600)
    assert publisher.publish_if_due() is None  # too small to be worth it
    _log(client, experiment, 4, 2)
    first = publisher.publish_if_due()
    assert first is not None and os.path.exists(first.path)
    assert publisher.publish_if_due() is None  # nothing changed
    _log(client, experiment, 6, 1)
    assert publisher.publish_if_due() is None  # changed, but the copy is recent
    os.utime(first.path, (time.time() - 7200, time.time() - 7200))
    again = publisher.publish_if_due()
    assert again is not None
    with __import__("duckdb").connect(again.path, read_only=True) as copy:
        assert copy.execute("SELECT count(*) FROM runs").fetchall() == [(7,)]
    # Gone (someone removed _state/): published again at the next tick.
    os.remove(again.path)
    _log(client, experiment, 7, 1)
    assert publisher.publish_if_due() is not None

    # A restarted dashboard writes nothing while the copy there holds its state, however old...
    os.utime(os.path.join(root, "_state", os.path.basename(again.path)), (time.time() - 7200, time.time() - 7200))
    assert not Publisher(lake, min_runs=5, every_s=3600).due()
    # ...and publishes at once when the lake changed (while it was down, or since).
    _log(client, experiment, 20, 1)
    assert Publisher(lake, min_runs=5, every_s=3600).due()

    # A publish that fails (a read-only lake) is tried again after every_s, not every minute.
    os.remove(os.path.join(root, "_state", os.path.basename(again.path)))
    _log(client, experiment, 8, 1)
    real_publish = lake.publish_state

    def fail() -> Any:
        raise OSError("read-only file system")

    lake.publish_state = fail  # type: ignore[method-assign]
    with pytest.raises(OSError):
        publisher.publish_if_due()
    lake.publish_state = real_publish  # type: ignore[method-assign]
    assert not publisher.due()
    assert publisher.due(now=time.time() + 3601)


@pytest.mark.parametrize(
    ("value", "expected", "said"), [("", 20_000, False), ("500", 500, False), ("5k", 20_000, True)]
)
def test_the_publish_threshold_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str, expected: int, said: bool
) -> None:
    from runlake.lake.maintenance import upkeep

    monkeypatch.setenv(upkeep.PUBLISH_MIN_RUNS_ENV, value)
    assert upkeep.publish_min_runs() == expected
    assert ("'5k' is not a whole number" in capsys.readouterr().err) == said


def test_leftovers_of_killed_publishes_and_other_formats_are_removed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    digest = "0" * 24
    old = [cache / f".publish-{digest}-ab12.duckdb", cache / f".adopt-{digest}-cd34.duckdb.wal"]
    fresh = cache / f".publish-{digest}-ef56.duckdb"
    other = cache / ".notes.duckdb"
    for path in (*old, fresh, other):
        path.write_bytes(b"x")
    day_ago = time.time() - state_cache.LEFTOVER_S - 60
    for path in (*old, other):
        os.utime(path, (day_ago, day_ago))
    removed = state_cache.sweep(cache)
    assert sorted(removed) == sorted(old)
    assert fresh.exists() and other.exists()

    # In the lake: published states of another format (an older runlake's) go after two weeks.
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment("formats"), 0, 2)
    stale = Path(root) / "_state" / f"state-{'1' * 24}.duckdb"
    recent = Path(root) / "_state" / f"state-{'2' * 24}.duckdb"
    stale.parent.mkdir()
    for path in (stale, recent):
        path.write_bytes(b"x")
    weeks_ago = time.time() - state_cache.STALE_AFTER_S - 60
    os.utime(stale, (weeks_ago, weeks_ago))
    _publisher, published = _published(root, tmp_path / "dashboard-cache")
    assert not stale.exists() and recent.exists() and os.path.exists(published.path)


def test_runlake_publish_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runlake.app.cli import main

    monkeypatch.setenv(state_cache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment("cli"), 0, 3)
    lake = Lake(root, cache=False)
    assert not state_cache.has_published(lake.fs, lake.root)
    assert main(["publish-state", "--lake", root, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == state_cache.published_file(lake.fs, lake.root) and report["bytes"] > 0
    assert state_cache.has_published(lake.fs, lake.root)
    monkeypatch.setenv(state_cache.CACHE_ENV, "off")
    assert main(["publish-state", "--lake", root]) == 2
    assert "publish" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change",
    [
        # Every refresh that folds a metric would fail, in every reader of the copy, for good.
        "DROP INDEX latest_metrics_run_id; ALTER TABLE latest_metrics ALTER COLUMN value SET DATA TYPE VARCHAR; "
        "CREATE INDEX latest_metrics_run_id ON latest_metrics(run_id)",
        # Later params would be folded to integers, and tags compared without case.
        "ALTER TABLE raw_params ALTER COLUMN value SET DATA TYPE INTEGER USING 0",
        "DROP INDEX tags_run_id; ALTER TABLE tags ALTER COLUMN value SET DATA TYPE VARCHAR COLLATE NOCASE; "
        "CREATE INDEX tags_run_id ON tags(run_id)",
        "DROP INDEX params_run_id",
        "ALTER TABLE _runs_wide ADD COLUMN m_0123456789abcdef VARCHAR",
    ],
)
def test_a_published_state_whose_tables_differ_from_a_state_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    root, client, experiment, reader = _refused_after(tmp_path, monkeypatch, change)
    _log(client, experiment, 5, 2)
    client.log_batch(reader.search_run_ids()[0], params={"lr": "0.01"})
    client.set_tag(reader.search_run_ids()[1], "t", "V1")
    client.flush()
    assert _state(reader) == _state(Lake(root, cache=False))
    assert reader.sql("SELECT value FROM params WHERE key = 'lr'")["value"].tolist() == ["0.01"]


def test_a_copy_that_fails_its_first_refresh_in_any_way_is_set_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever a copy of a published state does wrong (an Arrow error, a key the code does not
    # know), the reader reads in memory, and the folder does not take the same file again.
    root = str(tmp_path / "lake")
    client = LakeClient(root)
    _log(client, client.create_experiment("fails"), 0, 3)
    _published(root, tmp_path / "dashboard-cache")
    calls = _refresh_fails_once(monkeypatch, KeyError("a key this code does not know"))
    cache = tmp_path / "reader-cache"
    reader = Lake(root, cache=cache)
    assert not reader.connection.cached and len(reader.search_runs()) == 3
    assert not list(cache.glob("state-*.duckdb")) and list(cache.glob(".rejected-*"))
    # A cache file of its own (not a copy) that fails so is a bug: it is not hidden.
    del reader
    gc.collect()
    own = Lake(root, cache=tmp_path / "own-cache")  # starts from the copy: the failure was once
    assert own.connection.cached
    del own
    gc.collect()
    calls.clear()
    with pytest.raises(KeyError):
        Lake(root, cache=tmp_path / "own-cache")
