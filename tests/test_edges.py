"""Odd values at every entry point: numbers beyond int64, hostile ids, SQL access, Host headers.

Each case goes through the public API or the real CLI and expects a clean ``InvalidArgument``
(exit status 2 in the CLI) or a refusal, never a raw DuckDB/pyarrow error or a traceback.
"""

from __future__ import annotations

import subprocess

import pytest

from runlake.core.errors import InvalidArgument
from runlake.ingest.client import LakeClient
from runlake.lake import Lake
from runlake.lake.search.results import encode_token
from tests.conftest import RUNLAKE

BIG = 2**63
HUGE = 99999999999999999999999


@pytest.fixture
def small(lake_dir):
    client = LakeClient(lake_dir)
    exp = client.create_experiment("edges")
    runs = []
    for i in range(3):
        run = client.create_run(exp, run_name=f"r{i}")
        client.log_metric(run, "loss", 0.1 * i, step=i)
        client.set_terminated(run)
        runs.append(run)
    client.flush()
    return client, exp, runs


@pytest.mark.parametrize(
    "call",
    [
        lambda lake: lake.search_runs(max_results=BIG),
        lambda lake: lake.search_runs(max_results=HUGE),
        lambda lake: lake.search_run_ids(max_results=BIG),
        lambda lake: lake.search_page(page_size=BIG),
        lambda lake: lake.search_page(offset=BIG),
        lambda lake: lake.search_page(page_token=encode_token(BIG)),
        lambda lake: lake.search_runs(created_after=HUGE),
        lambda lake: lake.search_runs(created_before=-HUGE),
        lambda lake: lake.plan_delete_runs(lake.list_experiments()["experiment_id"][0], BIG),
        lambda lake: lake.restore_runs(lake.list_experiments()["experiment_id"][0], -HUGE),
    ],
    ids=[
        "max_results=2^63",
        "max_results=1e23",
        "search_run_ids max_results=2^63",
        "page_size=2^63",
        "offset=2^63",
        "page_token offset=2^63",
        "created_after=1e23",
        "created_before=-1e23",
        "delete_runs max_timestamp=2^63",
        "restore_runs min_timestamp=-1e23",
    ],
)
def test_rl_e01_numbers_beyond_int64_are_invalid_arguments(small, lake_dir, call):
    with pytest.raises(InvalidArgument) as raised:
        call(Lake(lake_dir))
    message = raised.value.message
    assert "64-bit" in message or "2^63" in message or "page token" in message


def test_rl_e02_the_largest_int64_still_works(small, lake_dir):
    lake = Lake(lake_dir)
    assert len(lake.search_runs(max_results=BIG - 1)) == 3
    assert lake.search_page(offset=BIG - 1).run_ids == []


@pytest.mark.parametrize("field", ["step", "timestamp"])
@pytest.mark.parametrize("value", [BIG, -(BIG + 1), HUGE])
def test_rl_e03_steps_and_timestamps_beyond_int64_fail_at_the_call_not_the_flush(small, field, value):
    client, _exp, runs = small
    with pytest.raises(InvalidArgument):
        client.log_metric(runs[0], "loss", 1.0, **{field: value})
    client.log_metric(runs[0], "loss", 2.0, step=99)
    client.flush()  # nothing poisoned the buffer


@pytest.mark.parametrize("field", ["step", "timestamp"])
@pytest.mark.parametrize("value", [BIG, -(BIG + 1), HUGE])
def test_rl_e03b_fluent_steps_and_timestamps_beyond_int64_fail_at_the_call(rl, lake_dir, field, value):
    """The fluent API's fast path (plain ints) checks the range too: nothing poisons the buffer."""
    run = rl.start_run()
    rl.log_metric("loss", 1.0, step=1)
    with pytest.raises(InvalidArgument, match="64-bit"):
        rl.log_metric("loss", 2.0, **{field: value})
    with pytest.raises(InvalidArgument, match="64-bit"):
        rl.log_metrics({"loss": 3.0, "acc": 0.5}, **{field: value})
    rl.end_run()
    assert len(Lake(lake_dir).metric_history(run.info.run_id, "loss")) == 1


@pytest.mark.parametrize("field", [2, 3])
def test_rl_e03c_client_log_batch_beyond_int64_fails_at_the_call(small, field):
    client, _exp, runs = small
    point = ["loss", 1.0, 1000, 5]
    point[field] = BIG
    with pytest.raises(InvalidArgument):
        client.log_batch(runs[0], metrics=[tuple(point)])
    client.flush()


def test_rl_e04_cli_max_results_beyond_int64_exits_2_without_traceback(small, lake_dir):
    done = subprocess.run(
        [RUNLAKE, "search", "--lake", lake_dir, "--max-results", str(HUGE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "max_results" in done.stderr
    done = subprocess.run(
        [RUNLAKE, "delete-runs", "--lake", lake_dir, "--experiment", "edges", "--before", str(HUGE), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr


@pytest.mark.parametrize("older_than_s", [float(HUGE) * 86400, float("inf"), float("nan")])
def test_rl_e04b_retention_window_beyond_int64_is_an_invalid_argument(small, lake_dir, older_than_s):
    from runlake.lake.maintenance import purge

    with pytest.raises(InvalidArgument, match="older_than"):
        purge(lake_dir, older_than_s=older_than_s, dry_run=True)


def test_rl_e04c_cli_retention_window_beyond_int64_exits_2_without_traceback(small, lake_dir):
    done = subprocess.run(
        [RUNLAKE, "retention", "--lake", lake_dir, "--older-than", f"{HUGE}d", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "older_than" in done.stderr


@pytest.mark.parametrize("parent", ["x'\"y", "a b", "", "../etc", "é", "x" * 300])
def test_rl_e05_parent_run_id_is_checked_like_a_run_id(small, parent):
    client, exp, _runs = small
    with pytest.raises(InvalidArgument, match="parent run id"):
        client.create_run(exp, parent_run_id=parent)


def test_rl_e06_fluent_start_run_checks_parent_run_id(rl):
    with pytest.raises(InvalidArgument, match="parent run id"):
        rl.start_run(parent_run_id="x'\"y")
    assert rl.active_run() is None


# -- SQL access -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/hostname')",
        "COPY (SELECT 1) TO '/tmp/runlake-should-not-exist.csv'",
        "ATTACH '/tmp/runlake-x.db' AS x",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "DROP TABLE runs",
        "DELETE FROM runs",
        "SELECT 1; DROP TABLE runs",
    ],
)
def test_rl_e07_sql_access_views_refuses_external_access_and_changes(small, lake_dir, query):
    lake = Lake(lake_dir, sql_access="views")
    with pytest.raises(InvalidArgument, match="sql_access='views'"):
        lake.sql(query)
    # The state other callers read is intact, and SELECTs over every view work.
    assert len(lake.sql("SELECT * FROM runs")) == 3
    assert len(lake.sql("SELECT * FROM metrics WHERE key = ?", ["loss"])) == 3


def test_rl_e08_full_sql_access_is_the_default_and_is_full(small, lake_dir, tmp_path):
    target = tmp_path / "out.csv"
    Lake(lake_dir).sql(f"COPY (SELECT run_id FROM runs) TO '{target}'")
    assert target.read_text().count("\n") == 4
    with pytest.raises(InvalidArgument, match="sql_access"):
        Lake(lake_dir, sql_access="none")


# -- the Host check ----------------------------------------------------------------------------
def _client(lake_dir, **settings):
    from runlake.app.settings import Settings
    from runlake.app.web.server import create_app

    app = create_app(Settings(lake=lake_dir, **settings), Lake(lake_dir))
    return app.server.test_client()


@pytest.mark.parametrize(
    "host, status",
    [
        ("evil.example.com", 403),
        ("evil.example.com:8050", 403),
        ("127.0.0.1.nip.io", 403),
        ("localhost:8050", 200),
        ("127.0.0.1:8050", 200),
        ("127.8.9.10", 200),
        ("[::1]:8050", 200),
        ("LOCALHOST", 200),
    ],
)
def test_rl_e09_loopback_dashboard_refuses_foreign_host_headers(small, lake_dir, host, status):
    client = _client(lake_dir)
    response = client.get("/", headers={"Host": host})
    assert response.status_code == status
    if status == 403:
        assert "--allow-host" in response.get_data(as_text=True)
        # The callback endpoint is refused too: a rebinding page cannot change anything.
        assert client.post("/_dash-update-component", json={}, headers={"Host": host}).status_code == 403


def test_rl_e10_allow_host_and_public_binding(small, lake_dir):
    client = _client(lake_dir, allow_hosts=("runs.example.org",))
    assert client.get("/", headers={"Host": "runs.example.org"}).status_code == 200
    assert client.get("/", headers={"Host": "evil.example.com"}).status_code == 403
    # Bound to every interface on purpose: the proxy in front decides, no check here.
    assert _client(lake_dir, host="0.0.0.0").get("/", headers={"Host": "evil.example.com"}).status_code == 200


def test_rl_e11_ui_flags_become_settings():
    from runlake.app.cli import build_parser
    from runlake.app.settings import Settings

    args = build_parser().parse_args(["ui", "--read-only", "--allow-host", "a.example", "--allow-host", "B.example"])
    settings = Settings.from_args(args, env={})
    assert settings.read_only and settings.allow_hosts == ("a.example", "b.example")
    assert Settings.from_args(None, env={"RUNLAKE_READ_ONLY": "1", "RUNLAKE_ALLOW_HOSTS": "x, y"}).allow_hosts == (
        "x",
        "y",
    )
    assert not Settings.from_args(None, env={}).read_only
