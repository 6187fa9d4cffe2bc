"""Real processes: writers, compaction, retention and readers at once; SIGKILL mid-flush and mid-rewrite."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time

import pytest

from runlake.core import layout, writer
from runlake.ingest.client import LakeClient
from runlake.lake import Lake
from runlake.lake.maintenance import compact

DAY_MS = 86_400_000
STEPS = 300
ENV = {**os.environ, "RUNLAKE_FLUSH_INTERVAL": "60"}

WRITER = textwrap.dedent(
    """
    import json, sys
    from runlake.ingest.client import LakeClient
    lake, worker = sys.argv[1], int(sys.argv[2])
    client = LakeClient(lake)
    exp = client.create_experiment("conc")
    logged = {}
    for r in range(2):
        run = client.create_run(exp, run_name=f"w{worker}-{r}")
        for start in range(0, %(steps)d, 10):  # one small file per flush, as training jobs leave them
            client.log_batch(run, metrics=[(k, float(s if k == "a" else -s), 1000 + s, s) for s in range(start, start + 10) for k in ("a", "b")])
            client.flush()
        client.set_terminated(run)
        logged[run] = %(steps)d
    print(json.dumps(logged))
"""
    % {"steps": STEPS}
)

MAINTENANCE = textwrap.dedent("""
    import os, sys, time
    from runlake.lake.maintenance import compact, purge
    lake, job, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    passes = 0
    while not os.path.exists(stop):
        if job == "compact":
            compact(lake, grace_s=0.5, wait_s=60)  # files half a second old are merged: heavy churn
        else:
            purge(lake, older_than_s=30 * 86400, wait_s=60)
        passes += 1
        time.sleep(0.05)
    print(passes)
""")

READER = textwrap.dedent(
    """
    import json, os, sys, traceback
    from runlake.lake import Lake
    lake_dir, stop, expected = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    errors, iterations, gone = [], 0, set()
    lake = Lake(lake_dir)  # kept open: its state follows the files incrementally
    def check(lake):
        frame = lake.search_runs(experiment_names=["conc"], run_view_type="ALL", filter_string="attributes.status = 'FINISHED' OR attributes.status = 'RUNNING'")
        stages = dict(zip(frame["run_id"], frame["lifecycle_stage"]))
        for run_id in expected["keep"]:
            assert stages.get(run_id) == "deleted", ("keep", run_id, stages.get(run_id))
        for run_id in expected["restored"]:
            assert stages.get(run_id) == "active", ("restored", run_id, stages.get(run_id))
        for run_id in expected["purge"]:
            if run_id not in stages:
                gone.add(run_id)
            assert not (run_id in gone and run_id in stages), ("purged run came back", run_id)
        finished = frame[(frame["status"] == "FINISHED") & frame["run_name"].str.startswith("w")]
        for run_id in finished["run_id"][:6]:
            run = lake.get_run(run_id)
            assert run.metrics == {"a": %(last)d.0, "b": -%(last)d.0}, (run_id, run.metric_stats)
            assert run.metric_stats["a"]["min"] == 0.0 and run.metric_stats["b"]["min"] == -%(last)d.0
            history = lake.metric_history(run_id, "a")
            assert history["step"].tolist() == list(range(%(steps)d)), (run_id, len(history))
    while not os.path.exists(stop):
        iterations += 1
        try:
            check(lake)
            if iterations %% 5 == 0:
                check(Lake(lake_dir))
        except Exception as exc:
            text = traceback.format_exc()
            errors.append(f"{type(exc).__name__}: {exc}\\n{text[-3000:]}")
    print(json.dumps({"iterations": iterations, "errors": errors[:5], "error_count": len(errors)}))
"""
    % {"steps": STEPS, "last": STEPS - 1}
)


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )


def _seed(lake_dir: str) -> dict[str, list[str]]:
    """Runs retention must purge (deleted 40 days ago), keep (deleted now) and keep (restored)."""
    client = LakeClient(lake_dir)
    exp = client.create_experiment("conc")
    fs, root = layout.resolve_lake(lake_dir)
    groups: dict[str, list[str]] = {"purge": [], "keep": [], "restored": []}
    for group in groups:
        for i in range(3):
            run = client.create_run(exp, run_name=f"{group}-{i}")
            client.log_batch(run, metrics=[("a", float(s), 1, s) for s in range(50)], params={"g": group})
            client.log_text(run, "artifact", "file.txt")
            client.set_terminated(run)
            groups[group].append(run)
    client.flush()
    old = layout.now_ms() - 40 * DAY_MS
    rows = [
        {"run_id": r, "version": layout.next_version(), "lifecycle_stage": "deleted", "deleted_time": old}
        for r in groups["purge"] + groups["restored"]
    ]
    rows += [
        {"run_id": r, "version": layout.next_version(), "lifecycle_stage": "deleted", "deleted_time": layout.now_ms()}
        for r in groups["keep"]
    ]
    rows += [{"run_id": r, "version": layout.next_version(), "lifecycle_stage": "active"} for r in groups["restored"]]
    writer.write_part(fs, root, layout.RUNS, writer.to_table(layout.RUNS, rows), exp)
    return groups


@pytest.mark.slow
def test_writers_compaction_retention_and_readers_at_once(tmp_path):
    lake_dir = str(tmp_path / "lake")
    stop = str(tmp_path / "stop")
    groups = _seed(lake_dir)
    started = time.monotonic()
    maintenance = [_spawn(MAINTENANCE, lake_dir, job, stop) for job in ("compact", "retention")]
    readers = [_spawn(READER, lake_dir, stop, json.dumps(groups)) for _ in range(2)]
    writers = [_spawn(WRITER, lake_dir, str(w)) for w in range(8)]
    logged: dict[str, int] = {}
    for proc in writers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        logged.update(json.loads(out.strip().splitlines()[-1]))
    time.sleep(1.0)  # let readers and maintenance see the finished lake too
    open(stop, "w").close()
    results = []
    for proc in maintenance + readers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(out.strip().splitlines()[-1])
    passes = [int(r) for r in results[:2]]
    reports = [json.loads(r) for r in results[2:]]
    assert all(p >= 1 for p in passes), passes
    for report in reports:
        assert report["iterations"] >= 1
        if report["error_count"]:
            pytest.fail(f"{report['error_count']} reader errors, first ones:\n" + "\n".join(report["errors"]))
    compact(lake_dir, grace_s=0)
    lake = Lake(lake_dir)
    counts = lake.sql("SELECT run_id, key, count(*) AS n, count(DISTINCT step) AS d FROM raw_metrics GROUP BY ALL")
    by_run = {(r, k): (n, d) for r, k, n, d in counts.itertuples(index=False)}
    assert len(logged) == 16
    for run_id, steps in logged.items():  # every point present, exactly once, in the raw files
        assert by_run[(run_id, "a")] == (steps, steps) and by_run[(run_id, "b")] == (steps, steps)
    remaining = set(lake.search_run_ids(run_view_type="ALL"))
    assert remaining.isdisjoint(groups["purge"])
    assert set(groups["keep"] + groups["restored"]) <= remaining
    for run_id in groups["keep"] + groups["restored"]:
        assert len(lake.metric_history(run_id, "a")) == 50
        assert os.path.exists(lake.get_run(run_id).info["artifact_uri"].removeprefix("file://") + "/file.txt")
    for run_id in groups["purge"]:
        assert by_run.get((run_id, "a")) is None
        assert int(lake.sql("SELECT count(*) AS n FROM raw_runs WHERE run_id = ?", [run_id])["n"][0]) == 0
    assert time.monotonic() - started < 90


def _history_is_a_prefix(lake_dir: str, run_id: str, at_least: int) -> int:
    lake = Lake(lake_dir)
    steps = lake.metric_history(run_id, "loss")["step"].tolist()
    assert steps == list(range(len(steps))) and len(steps) >= at_least  # no holes, no duplicates
    return len(steps)


FLUSHING_WRITER = textwrap.dedent("""
    import sys
    from runlake.ingest.client import LakeClient
    client = LakeClient(sys.argv[1])
    run = client.create_run(client.create_experiment("crash"))
    print("run", run, flush=True)
    step = 0
    while True:  # until killed, mid-flush or not
        client.log_batch(run, metrics=[("loss", float(s), s, s) for s in range(step, step + 200)])
        client.flush()
        step += 200
        print("flushed", step, flush=True)
""")

HANGING_COMPACTION = textwrap.dedent("""
    import sys, time
    from runlake.lake.maintenance import compact
    def hang(path):
        print("written", path, flush=True)
        time.sleep(600)  # killed here: merged file written, inputs not yet removed
    compact(sys.argv[1], grace_s=0, on_written=hang)
""")

COMPACTION = "import sys\nfrom runlake.lake.maintenance import compact\ncompact(sys.argv[1], grace_s=0)\n"


@pytest.mark.slow
def test_sigkill_mid_flush_and_mid_compaction_leave_a_readable_complete_lake(tmp_path):
    lake_dir = str(tmp_path / "lake")
    proc = subprocess.Popen(
        [sys.executable, "-c", FLUSHING_WRITER, lake_dir], stdout=subprocess.PIPE, text=True, env=ENV
    )
    run_id = proc.stdout.readline().split()[1]
    flushed = 0
    while flushed < 4000:
        flushed = int(proc.stdout.readline().split()[1])
    time.sleep(random.uniform(0.0, 0.05))
    proc.kill()
    proc.wait(timeout=30)
    total = _history_is_a_prefix(lake_dir, run_id, flushed)

    # Compaction killed between writing a merged file and removing its inputs.
    hang = subprocess.Popen(
        [sys.executable, "-c", HANGING_COMPACTION, lake_dir], stdout=subprocess.PIPE, text=True, env=ENV
    )
    line = hang.stdout.readline()
    assert line.startswith("written"), line
    hang.kill()
    hang.wait(timeout=30)
    assert _history_is_a_prefix(lake_dir, run_id, total) == total
    # The writer may have died between a metrics file and its summary: the summary can lag.
    assert Lake(lake_dir).get_run(run_id).metrics["loss"] <= float(total - 1)

    # Compaction killed at random moments, again and again.
    for _ in range(3):
        killer = subprocess.Popen([sys.executable, "-c", COMPACTION, lake_dir], env=ENV)
        time.sleep(random.uniform(0.3, 1.2))
        killer.kill()
        killer.wait(timeout=30)
        assert _history_is_a_prefix(lake_dir, run_id, total) == total

    # A temporary file like the one a writer killed mid-write leaves.
    directory = os.path.join(
        lake_dir, layout.METRICS, f"experiment_id={Lake(lake_dir).get_run(run_id).info['experiment_id']}"
    )
    with open(os.path.join(directory, ".part-killed.tmp"), "wb") as handle:
        handle.write(b"PAR1 half a file")
    # The dead compactions' lease does not block the next one, which cleans every leftover.
    report = compact(lake_dir, grace_s=0, tmp_max_age_s=0, wait_s=5)
    assert report.tmp_files_removed >= 1
    leftovers = [n for _d, _s, files in os.walk(lake_dir) for n in files if n.endswith(".tmp")]
    assert leftovers == []
    lake = Lake(lake_dir)
    assert lake.sql("SELECT count(*) AS n FROM raw_metrics")["n"][0] == total  # duplicates merged away
    assert _history_is_a_prefix(lake_dir, run_id, total) == total
    assert report.after[layout.METRICS].files == 1 and report.after[layout.METRIC_SUMMARIES].files == 1
    assert lake.get_run(run_id).metrics["loss"] == float(total - 1)  # a completed compaction healed it
