"""Real processes: exit statuses, forked children, SIGKILL mid-run, eight writers at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from runlake.lake import Lake
from tests.conftest import run_python


def _only_run(lake_dir: str) -> dict:
    frame = Lake(lake_dir).runs_frame()
    assert len(frame) == 1
    return Lake(lake_dir).get_run(frame["run_id"][0]).info


def test_exit_without_end_run_flushes_and_finishes(lake_dir):
    result = run_python(
        f"""
        import runlake.ingest as rl
        rl.set_lake({lake_dir!r})
        rl.start_run(run_name="forgot-to-end")
        for i in range(1000):
            rl.log_metric("loss", 1.0 / (i + 1), step=i)
    """,
        env={"RUNLAKE_FLUSH_INTERVAL": "60"},
    )
    assert result.returncode == 0, result.stderr
    info = _only_run(lake_dir)
    assert info["status"] == "FINISHED" and info["end_time"] is not None
    assert len(Lake(lake_dir).metric_history(info["run_id"], "loss")) == 1000


def test_uncaught_exception_ends_failed(lake_dir):
    result = run_python(f"""
        import runlake.ingest as rl
        rl.set_lake({lake_dir!r})
        rl.start_run()
        rl.log_metric("x", 1.0)
        raise SystemError("training diverged")
    """)
    assert result.returncode != 0 and "training diverged" in result.stderr
    info = _only_run(lake_dir)
    assert info["status"] == "FAILED"
    assert Lake(lake_dir).get_run(info["run_id"]).metrics == {"x": 1.0}


def test_uncaught_keyboard_interrupt_ends_killed(lake_dir):
    result = run_python(f"""
        import runlake.ingest as rl
        rl.set_lake({lake_dir!r})
        rl.start_run()
        raise KeyboardInterrupt
    """)
    assert result.returncode != 0
    assert _only_run(lake_dir)["status"] == "KILLED"


def test_forked_children_log_their_own_runs(lake_dir):
    result = run_python(
        f"""
        import multiprocessing as mp
        import runlake.ingest as rl
        rl.set_lake({lake_dir!r})

        def bare_child(i, queue):
            # no `with`, no end_run: the child's exit must still flush and end its run
            run = rl.start_run(run_name=f"child-{{i}}", parent_run_id=PARENT)
            for step in range(500):
                run.log_metric("loss", float(step), step=step)
            queue.put(run.run_id)

        def pool_child(i):
            with rl.start_run(run_name=f"pooled-{{i}}", parent_run_id=PARENT) as run:
                for step in range(500):
                    rl.log_metric("loss", float(step), step=step)
            return run.run_id

        ctx = mp.get_context("fork")
        with rl.start_run(run_name="parent") as parent:
            PARENT = parent.run_id
            rl.log_metric("before_fork", 1.0)
            queue = ctx.Queue()
            procs = [ctx.Process(target=bare_child, args=(i, queue)) for i in range(2)]
            for p in procs:
                p.start()
            ids = [queue.get(timeout=60) for _ in procs]
            for p in procs:
                p.join()
                assert p.exitcode == 0
            with ctx.Pool(2) as pool:
                ids += pool.map(pool_child, range(2))
            rl.log_metric("after_fork", 2.0)
        print(",".join(ids))
    """,
        env={"RUNLAKE_FLUSH_INTERVAL": "60"},
    )
    assert result.returncode == 0, result.stderr
    child_ids = result.stdout.strip().splitlines()[-1].split(",")
    lake = Lake(lake_dir)
    frame = lake.runs_frame()
    assert len(frame) == 5
    parent = frame[frame.run_name == "parent"].iloc[0]
    assert parent["metrics.before_fork"] == 1.0 and parent["metrics.after_fork"] == 2.0
    assert parent["status"] == "FINISHED"
    for run_id in child_ids:
        info = lake.get_run(run_id)
        assert info.info["status"] == "FINISHED", info.info
        assert info.info["parent_run_id"] == parent["run_id"]
        assert len(lake.metric_history(run_id, "loss")) == 500
    # The parent's buffered points were not written twice by the children.
    assert lake.sql("SELECT count(*) AS n FROM raw_metric_summaries WHERE key = 'before_fork'")["n"][0] == 1


def test_sigkill_mid_run_leaves_a_readable_lake_with_everything_flushed(lake_dir):
    code = textwrap.dedent(f"""
        import sys, runlake.ingest as rl
        rl.set_lake({lake_dir!r})
        run = rl.start_run(run_name="doomed")
        for i in range(3000):
            run.log_metric("loss", float(i), step=i)
        rl.flush()
        print("flushed", run.run_id, flush=True)
        i = 3000
        while True:  # keep logging and flushing until killed, mid-write or not
            run.log_metric("loss", float(i), step=i)
            i += 1
            if i % 5000 == 0:
                rl.flush()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "RUNLAKE_FLUSH_INTERVAL": "0.05"},
    )
    line = proc.stdout.readline()
    assert line.startswith("flushed"), line
    run_id = line.split()[1]
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    lake = Lake(lake_dir)
    info = lake.get_run(run_id)
    assert info.info["status"] == "RUNNING"  # nobody ended it: that is the truth
    history = lake.metric_history(run_id, "loss")
    steps = history["step"].tolist()
    assert steps[:3000] == list(range(3000))
    assert steps == list(range(len(steps)))  # a prefix, no holes and no duplicates
    assert info.metrics["loss"] == float(steps[-1]) or info.metrics["loss"] <= float(steps[-1])


def test_eight_processes_logging_at_once_lose_and_double_nothing(lake_dir):
    code = textwrap.dedent(f"""
        import sys, runlake.ingest as rl
        rl.set_lake({lake_dir!r})
        rl.set_experiment("concurrent")
        worker = int(sys.argv[1])
        with rl.start_run(run_name=f"w{{worker}}") as run:
            rl.log_param("worker", worker)
            for step in range(4000):
                rl.log_metrics({{"a": step, "b": -step}}, step=step)
                if step % 1000 == 999:
                    rl.set_tag(f"progress", str(step))
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(w)], env={**os.environ, "RUNLAKE_FLUSH_INTERVAL": "0.02"})
        for w in range(8)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * 8
    lake = Lake(lake_dir)
    assert len(lake.list_experiments()) == 1  # eight processes created one experiment
    frame = lake.runs_frame()
    assert len(frame) == 8 and set(frame["status"]) == {"FINISHED"}
    counts = lake.sql("SELECT run_id, key, count(*) AS n, count(DISTINCT step) AS d FROM raw_metrics GROUP BY ALL")
    assert len(counts) == 16
    assert set(counts["n"]) == {4000} and set(counts["d"]) == {4000}
    assert set(frame["metrics.a"]) == {3999.0} and set(frame["metrics.b"]) == {-3999.0}
    assert set(frame["tags.progress"]) == {"3999"}
    assert sorted(frame["params.worker"].astype(int)) == list(range(8))


def test_import_changes_nothing_until_a_run_starts(lake_dir):
    result = run_python(
        f"""
        import atexit, os, sys
        import pyarrow, pyarrow.fs  # what runlake.ingest imports itself (pyarrow.fs has an atexit hook)
        hook, before = sys.excepthook, atexit._ncallbacks()
        import runlake.ingest as rl
        assert sys.excepthook is hook, "excepthook replaced at import"
        assert atexit._ncallbacks() == before, "atexit hooks registered at import"
        rl.set_lake({lake_dir!r})
        rl.start_run()
        assert sys.excepthook is not hook and atexit._ncallbacks() > before
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
