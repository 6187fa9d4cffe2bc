"""Data loss is never silent: a process whose buffered points cannot be written at exit exits non-zero.

Real processes: a training script logs 300,000 points and exits without ``end_run`` while its
file size limit (RLIMIT_FSIZE, the stand-in for a full disk that works as root too) makes every
large write fail.
"""

from __future__ import annotations

from runlake.lake import Lake
from tests.conftest import run_python

SCRIPT = """
import resource, signal, sys
import runlake.ingest as rl

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
rl.set_experiment("exit-status")
rl.start_run(run_name="never-ended")
rl.log_param("lr", "0.1")
rl.flush()
if sys.argv[-1] == "full":
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
for i in range(300_000):
    rl.log_metric("loss", 1.0 / (i + 1), step=i)
print("script done")
"""


def _run(lake_dir: str, mode: str):
    return run_python(
        SCRIPT.replace('sys.argv[-1] == "full"', repr(mode == "full")),
        env={"RUNLAKE_LAKE": lake_dir, "RUNLAKE_FLUSH_INTERVAL": "1000"},
        timeout=300,
    )


def test_rl_x01_unwritable_buffer_at_exit_gives_non_zero_status_and_says_why(lake_dir):
    done = _run(lake_dir, "full")
    assert "script done" in done.stdout
    assert done.returncode == 1, done.stderr
    assert "300,000 metric points" in done.stderr and "were lost" in done.stderr
    assert "File too large" in done.stderr or "EFBIG" in done.stderr or "Errno 27" in done.stderr
    assert "exiting with status 1" in done.stderr
    # What was flushed before the failure is in the lake; the lost points are not.
    lake = Lake(lake_dir)
    (run_id,) = lake.search_run_ids(run_view_type="ALL")
    assert lake.get_run(run_id).params == {"lr": "0.1"}
    assert len(lake.metric_history(run_id, "loss")) == 0


def test_rl_x02_the_same_script_with_room_exits_zero(lake_dir):
    done = _run(lake_dir, "room")
    assert done.returncode == 0, done.stderr
    lake = Lake(lake_dir)
    (run_id,) = lake.search_run_ids()
    assert len(lake.metric_history(run_id, "loss")) == 300_000


IN_RUN = """
import resource, signal, time
import runlake.ingest as rl

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
rl.set_experiment("in-run")
rl.start_run(run_name="fails-inside")
rl.flush()
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
for i in range(300_000):
    rl.log_metric("loss", 1.0 / (i + 1), step=i)
time.sleep(3)  # the background flusher fails (and keeps the rows for a retry)
rl.log_metric("loss", 0.0, step=300_000)  # buffered: the flusher's error is not raised here
try:
    rl.end_run()
except OSError as exc:
    print("end_run raised", exc.errno)
"""


def test_rl_x03_a_write_failure_inside_a_run_is_reported_and_raised_by_end_run(lake_dir):
    done = run_python(IN_RUN, env={"RUNLAKE_LAKE": lake_dir, "RUNLAKE_FLUSH_INTERVAL": "1"}, timeout=300)
    assert "end_run raised 27" in done.stdout, done.stdout + done.stderr
    # The background flusher says so once, however often it retries.
    assert done.stderr.count("background flush") == 1, done.stderr
    # The rows end_run could not write are still lost at exit: the status says so.
    assert done.returncode == 1 and "300,001 metric points" in done.stderr
