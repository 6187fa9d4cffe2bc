"""Ingest under bad input, forks and concurrent maintenance: nothing lost, errors at the call."""

from __future__ import annotations

import os
import threading

import pytest

from runlake.core.errors import InvalidArgument
from runlake.ingest import LakeClient
from runlake.lake import Lake
from tests.conftest import run_python


def test_text_that_cannot_be_stored_is_refused_at_the_call_and_blocks_nothing(rl, lake_dir):
    bad = os.fsdecode(b"/data/caf\xe9")  # what os.listdir returns for a non-UTF-8 name
    with rl.start_run() as run:
        rl.log_metric("loss", 1.0)
        with pytest.raises(ValueError, match="not valid Unicode"):
            rl.log_param("data_dir", bad)
        with pytest.raises(ValueError, match="not valid Unicode"):
            rl.set_tag("path", bad)
        rl.log_param("ok", "fine")
    rec = Lake(lake_dir).get_run(run.run_id)
    assert rec.info["status"] == "FINISHED" and rec.params == {"ok": "fine"} and rec.metrics == {"loss": 1.0}
    client = LakeClient(lake_dir)
    with pytest.raises(ValueError, match="not valid Unicode"):
        client.create_run(run.experiment_id, run_name=os.fsdecode(b"run-\xff"))
    assert client.create_run(run.experiment_id, run_name="good")


@pytest.mark.parametrize("name", ["two\nlines", "carriage\rreturn", "bell\x07", "x" * 251])
def test_run_names_are_one_line_of_text(rl, lake_dir, name):
    client = LakeClient(lake_dir)
    exp = client.create_experiment("names")
    with pytest.raises(ValueError):
        client.create_run(exp, run_name=name)
    run_id = client.create_run(exp, run_name="fine")
    with pytest.raises(InvalidArgument):
        Lake(lake_dir).rename_run(run_id, name)
    with pytest.raises(ValueError):
        client.rename_run(run_id, name)
    assert Lake(lake_dir).get_run(run_id).info["run_name"] == "fine"


def test_a_failed_log_params_changes_nothing_and_can_be_retried(rl, lake_dir):
    with rl.start_run() as run:
        with pytest.raises(ValueError, match="Invalid param key"):
            rl.log_params({"lr": 0.1, "bad key!": 1})
        rl.log_params({"lr": 0.1})
    assert Lake(lake_dir).get_run(run.run_id).params == {"lr": "0.1"}


def test_changing_a_param_logged_by_another_client_is_an_error(lake_dir):
    first = LakeClient(lake_dir)
    exp = first.create_experiment("params")
    run_id = first.create_run(exp)
    first.log_param(run_id, "lr", "0.1")
    first.flush()
    other = LakeClient(lake_dir)
    other._params_seen.clear()  # as a fresh process would be
    other.log_param(run_id, "lr", "0.1")  # the same value is fine
    with pytest.raises(InvalidArgument, match="Changing param values is not allowed"):
        other.log_param(run_id, "lr", "0.5")


def test_run_object_has_end_run(rl, lake_dir):
    run = rl.start_run()
    run.end_run("KILLED")
    assert Lake(lake_dir).get_run(run.run_id).info["status"] == "KILLED"


def test_forked_children_logging_to_the_parents_run_object(lake_dir):
    # The DataLoader-worker pattern: the run was started in the parent, children log to it.
    result = run_python(
        f"""
        import multiprocessing as mp, os
        import runlake.ingest as rl
        rl.set_lake({lake_dir!r})
        run = rl.start_run(run_name="shared")
        run.log_metric("parent", 1.0)

        def work(offset):
            for i in range(100):
                run.log_metric("worker", float(i), step=offset + i)

        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=work, args=(k * 100,)) for k in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0
        pid = os.fork()
        if pid == 0:  # a bare fork: the child flushes itself before os._exit
            work(200)
            rl.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        run.end()
        print(run.run_id)
    """,
        env={"RUNLAKE_FLUSH_INTERVAL": "60"},
    )
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[-1]
    lake = Lake(lake_dir)
    assert lake.metric_history(run_id, "worker")["step"].tolist() == list(range(300))
    assert lake.get_run(run_id).metrics["parent"] == 1.0
    assert lake.get_run(run_id).info["status"] == "FINISHED"


def test_training_side_reads_survive_compaction(tmp_path):
    from runlake.lake.maintenance import compact

    root = str(tmp_path / "lake")
    client = LakeClient(root)
    experiments = [client.create_experiment(f"e{i}") for i in range(8)]
    runs = [client.create_run(e) for e in experiments for _ in range(3)]
    client.flush()
    stop = threading.Event()
    errors: list[BaseException] = []

    def compactor() -> None:
        while not stop.is_set():
            try:
                compact(root, grace_s=0, wait_s=5)
                LakeClient(root).create_experiment(f"x{len(errors)}-{os.urandom(3).hex()}")  # new files keep coming
            except BaseException as exc:
                errors.append(exc)

    thread = threading.Thread(target=compactor)
    thread.start()
    try:
        for _ in range(60):
            reader = LakeClient(root)
            reader._store._run_experiments.clear()
            reader._store._indexed_files.clear()
            reader._store._partition_mtimes.clear()
            assert set(experiments) <= set(reader._store.experiments())
            for run_id in runs[::5]:
                assert reader._store.experiment_of_run(run_id) is not None
    finally:
        stop.set()
        thread.join()
    assert not errors


def _flushers(store) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "runlake-flusher" and t is store._thread]


def test_an_idle_flusher_stops_and_the_next_log_call_starts_one(lake_dir, monkeypatch):
    """A process holding clients of many lakes keeps no thread for those it no longer logs to,
    and what it logs later is still written in the background, without an explicit flush."""
    import time

    from runlake.ingest import store as store_module

    monkeypatch.setattr(store_module, "FLUSH_INTERVAL_S", 0.02)
    monkeypatch.setattr(store_module, "IDLE_ROUNDS", 3)
    clients = [LakeClient(os.path.join(lake_dir, f"lake{i}")) for i in range(5)]
    runs = [(client, client.create_run(client.create_experiment("idle"))) for client in clients]
    threads = [client.store._thread for client in clients]
    assert all(thread is not None and thread.is_alive() for thread in threads)

    def settled(condition) -> bool:
        deadline = time.monotonic() + 10
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    assert settled(lambda: all(not thread.is_alive() for thread in threads))
    assert all(client.store._thread is None and not client.store.buffer.pending() for client in clients)

    for client, run_id in runs:
        client.log_metric(run_id, "loss", 0.5, step=1)
    assert all(client.store._thread is not None and client.store._thread.is_alive() for client in clients)
    # Written by the new threads: a reader in another process sees the points.
    assert settled(lambda: not any(client.store.buffer.pending() for client, _ in runs))
    for client, run_id in runs:
        out = run_python(
            f"from runlake.lake import Lake; print(len(Lake({client.store.root!r}).metric_history({run_id!r}, 'loss')))"
        )
        assert out.stdout.strip() == "1", out.stderr


def test_a_point_logged_while_the_flusher_retires_is_still_written(lake_dir, monkeypatch):
    """The race ``_retire`` closes: a call buffers a point after the flusher's last look and
    reads the old thread before it is cleared, so it starts none."""

    client = LakeClient(lake_dir)
    experiment_id = client.create_experiment("race")
    run_id = client.create_run(experiment_id)
    client.flush()
    store = client.store
    # The real flusher stops first, so only this thread looks at the buffer.
    flusher = store._thread
    store._stop.set()
    store._wake.set()
    flusher.join()
    store._stop.clear()
    real_pending = store.buffer.pending
    looks = []

    def pending() -> bool:
        looks.append(True)
        answer = real_pending()
        if len(looks) == 1:  # right after the first look: the call buffers its point
            store.buffer.add_metric(experiment_id, run_id, "loss", 1.0, 0, 0)
        return answer

    monkeypatch.setattr(store.buffer, "pending", pending)
    store._thread = threading.current_thread()  # this thread plays the flusher
    assert store._retire() is False  # it saw the point on its second look and stays on
    assert store._thread is threading.current_thread()
    monkeypatch.setattr(store.buffer, "pending", real_pending)
    store._thread = None
    client.flush()
    assert len(Lake(lake_dir).metric_history(run_id, "loss")) == 1
