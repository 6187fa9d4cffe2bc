"""Run MLflow's own tracking-store tests against runlake's tracking-store plugin.

MLflow's store tests (``tests/store/tracking/`` of an MLflow source checkout: the SQLAlchemy
store's and the file store's test modules) call a ``store`` fixture; here that fixture is a
``RunlakeStore`` over a fresh lake (``runlake://<tmp>/lake``), and the tests that inspect what
only those stores have (SQL sessions, schema and migrations, the file store's folders) or need
what the plugin deliberately leaves out (model registry, GenAI traces and their kin) are
deselected, each group with its reason (``DESELECTED`` below).

Nothing of MLflow's test code is kept in this repository: give the checkout's path.

    .venv/bin/python scripts/mlflow_store_suite.py /path/to/mlflow [pytest args...]
    RUNLAKE_MLFLOW_SRC=/path/to/mlflow .venv/bin/python scripts/mlflow_store_suite.py -x -k log_batch

The run uses the ``mlflow`` installed next to runlake (the ``test`` extra) with the test files
of the checkout, so use a checkout of the same MLflow version where you can. MLflow's own
``conftest.py`` files are not loaded (``--noconftest``): they set up SQL databases, tracking-URI
mocks and workspaces, none of which apply. A summary at the end counts what was collected,
deselected (per group), passed and failed.

Runs so far (mlflow 3.17.2 installed):

- test files of mlflow/mlflow at 28f34833 (3.6.1.dev0, 2025-11-28, one module for the SQL store):
  558 collected, 419 deselected, 138 passed, 1 failed (test_set_experiment_tag expects that tree's
  5,000-character experiment tag limit; MLflow 3.17.2, and so the plugin, says 20,000).
- the newer split (sqlalchemy_store/test_sqlalchemy_store_{runs,experiments,core}.py), each module
  at the newest version a public code index held, with the ``tests`` helpers they import; not one
  commit, so an older module may disagree with 3.17.2: 423 collected, 278 deselected, 100 passed,
  1 failed (test_set_experiment_tag again, in the runs module's older copy; the experiments
  module's copy expects 20,000 and passes), 44 skipped (the file store's module, which MLflow
  skips whole). Before the plugin fixes it led to, 92 passed and 9 failed: ``max_results=None``
  in ``search_runs``, and experiment ids that are no integer.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

# MLflow's store test modules that run against the plugin, as paths inside a checkout. Older
# checkouts keep the SQLAlchemy store's tests in one module, newer ones split them by subject.
MODULES = [
    "tests/store/tracking/test_sqlalchemy_store.py",
    "tests/store/tracking/test_file_store.py",
    "tests/store/tracking/sqlalchemy_store/test_sqlalchemy_store_runs.py",
    "tests/store/tracking/sqlalchemy_store/test_sqlalchemy_store_experiments.py",
    "tests/store/tracking/sqlalchemy_store/test_sqlalchemy_store_experiment_runs.py",
    "tests/store/tracking/sqlalchemy_store/test_sqlalchemy_store_core.py",
]

# group -> (reason, patterns of "<module file>::<test name>"; fnmatch, test names without
# their parameter ids). A test matching any group is deselected and counted under the first.
SQL = "test_sqlalchemy_store*.py::"
SQL_RUNS = "test_sqlalchemy_store_runs.py::"  # the newer split's runs module
FILE = "test_file_store.py::"
ANY = "test_*store*.py::"


def _with_params(name: str, params: str) -> str:
    """A pattern for the variants of a parametrised test whose parameter ids match ``params``
    (matched against ``module.py::test_name[ids]``; fnmatch reads ``[`` as a set)."""
    return f"{name}[[]{params}]"


# The parametrised check that every store method refuses a non-integer experiment id: the
# variants for search_runs and search_logged_models run; these are the plugin's "not supported"
# (GenAI) or outside MLflow's AbstractStore.
_NON_NUMERIC_ID = f"{SQL}test_store_methods_reject_non_numeric_experiment_id"
NOT_A_STORE_TEST = "not-a-store-test"
DESELECTED: dict[str, tuple[str, list[str]]] = {
    NOT_A_STORE_TEST: (
        "asks for no `store` fixture: builds MLflow's own SqlAlchemyStore/FileStore or tests a helper",
        [],  # found at collection (see RunlakeStorePlugin)
    ),
    "sql-internals": (
        "reads SQL rows, sessions, dialects, engines, migrations or mocks SqlAlchemyStore's private methods",
        [
            *(
                f"{SQL}{name}"
                for name in (
                    "test_create_experiments",
                    "test_run_tag_model",
                    "test_metric_model",
                    "test_param_model",
                    "test_run_needs_uuid",
                    "test_run_data_model",
                    "test_run_info",
                    "test_delete_run",
                    "test_log_metric",
                    "test_record_logged_model",
                    "test_log_null_param",
                    "test_delete_restore_run",
                    "test_delete_restore_experiment_with_runs",
                    "test_search_runs_run_name",
                    "test_log_batch_internal_error",
                    "test_log_batch_metrics",
                    "test_upgrade_cli_idempotence",
                    "test_metrics_materialization_upgrade_*",
                    "test_search_runs_returns_expected_results_with_large_experiment",
                    "test_search_runs_correctly_filters_large_data",
                    "test_try_get_run_tag",
                    "test_insert_large_text_in_dataset_table",
                    "test_get_run_inputs",
                    "test_get_run_inputs_run_order",
                    "test_log_model_metrics_use_run_experiment_id",
                    "test_sqlalchemy_store_*",
                    "test_*zero_value_insertion*",
                    "test_get_attribute_name",
                    "test_get_orderby_clauses",
                    # The newer split (tests/store/tracking/sqlalchemy_store/):
                    "test_get_metric_history_bulk_interval_python_fallback_is_bounded",
                    "test_supports_window_functions",
                    "test_run_with_deadlock_retry_*",
                    "test_log_metric_redrives_on_deadlock_and_persists",
                    "test_create_default_experiment_is_idempotent",
                    "test_create_default_experiment_reraises_when_name_slot_taken_and_id_zero_missing",
                    "test_hard_delete_experiment_cascades_to_child_tables",
                )
            ),
            # The split's version bulk-inserts SQL run rows (the older module's logs through the store).
            f"{SQL_RUNS}test_search_with_max_results",
        ],
    ),
    "file-store-layout": (
        "writes or reads the file store's folders and YAML files, mocks its private functions or builds a FileStore",
        [
            f"{FILE}{name}"
            for name in (
                "test_file_store_deprecation_warning",
                "test_valid_root",
                "test_get_experiment",
                "test_get_experiment_int_experiment_id_backcompat",
                "test_get_experiment_retries_for_transient_empty_yaml_read",
                "test_get_experiment_by_name",
                "test_get_experiment_missing_and_empty_metadata_file",
                "test_create_additional_experiment_generates_random_fixed_length_id",
                "test_create_experiment",  # past its name checks: fixed-width random ids, FileStore paths
                "test_create_duplicate_experiments",
                "test_delete_restore_experiment",
                "test_rename_experiment",
                "test_delete_restore_run",
                "test_get_run",
                "test_get_run_retries_for_transient_empty_yaml_read",
                "test_get_run_int_experiment_id_backcompat",
                "test_get_all_metrics",
                "test_get_metric_history",
                "test_search_runs",
                "test_search_tags",
                "test_search_runs_run_name",
                "test_weird_param_names",
                "test_log_param_empty_str",
                "test_log_param_with_newline",
                "test_log_param_enforces_value_immutability",
                "test_log_param_max_length_value",
                "test_weird_metric_names",
                "test_weird_tag_names",
                "test_set_experiment_tags",
                "test_delete_experiment_tags",
                "test_set_tags",
                "test_delete_tags",
                "test_unicode_tag",
                "test_get_deleted_run",
                "test_set_deleted_run",
                "test_default_experiment_attempted_deletion",
                "test_malformed_experiment",
                "test_malformed_run",
                "test_malformed_metric",
                "test_mismatching_experiment_id",
                "test_bad_experiment_id_recorded_for_run",
                "test_log_batch_internal_error",
                "test_log_batch_nonexistent_run",
                "test_experiment_with_default_root_artifact_uri",
                "test_experiment_with_relative_artifact_uri",
                "test_log_inputs_uses_expected_input_and_dataset_ids_for_storage",
                "test_create_experiment_appends_to_artifact_*",
                "test_create_run_appends_to_artifact_*",
                # The file store accepts max_results=0 (an empty page); MLflow's SQL store, and
                # the plugin, answer INVALID_PARAMETER_VALUE.
                "test_search_with_max_results",
                "test_search_with_deterministic_max_results",
            )
        ],
    ),
    "default-experiment-delete": (
        "deletes the Default experiment (id 0), which the plugin refuses as MLflow's file store does (the SQL "
        "store allows it); then rebuilds a SqlAlchemyStore from store.db_uri",
        [f"{SQL}test_default_experiment_lifecycle"],
    ),
    "gc-hooks": (
        "`mlflow gc`'s private _hard_delete_run/_get_deleted_runs (SQL and file stores only); a lake purges "
        "with runlake's retention",
        [f"{ANY}test_hard_delete_run", f"{ANY}test_get_deleted_runs"],
    ),
    "store-private-api": (
        "calls SQL/file-store methods outside MLflow's AbstractStore (_search_datasets, log_logged_model_params)",
        [
            f"{ANY}test_search_datasets",
            f"{ANY}test_search_datasets_returns_no_more_than_max_results",
            f"{SQL}test_log_logged_model_params",
            _with_params(_NON_NUMERIC_ID, "*-_search_datasets-*"),
            f"{SQL}test_store_methods_accept_valid_experiment_id",  # _search_datasets, then traces
        ],
    ),
    "genai": (
        "traces, spans, assessments, evaluation datasets, scorers: not supported by the plugin "
        "(MLflow's FEATURE_DISABLED; see the README)",
        [
            f"{ANY}test_*trace*",
            f"{ANY}test_*span*",
            f"{ANY}test_*assessment*",
            f"{ANY}test_scorer_*",
            f"{SQL}test_dataset_*",
            f"{SQL}test_sql_dataset_record_*",
            f"{SQL}test_set_and_delete_tags",  # trace tags
            f"{SQL}test_set_invalid_tag",  # trace tags
            f"{SQL}test_set_tag_truncate_too_long_tag",  # trace tags
            *(
                _with_params(_NON_NUMERIC_ID, f"*-{method}-*")
                for method in (
                    "_delete_traces",
                    "calculate_trace_filter_correlation",
                    "search_issues",
                    "query_trace_metrics",
                )
            ),
        ],
    ),
    "sequential-ids": (
        "expects SQL's sequential experiment ids (1, 2, ...); a lake derives an experiment's id from its name "
        "so that processes creating the same name agree",
        [
            f"{ANY}test_search_experiments_order_by",  # order_by experiment_id DESC = creation order
            f"{SQL}test_get_metric_history_on_non_existent_metric_key",  # takes the id's first character
        ],
    ),
    "artifact-layout": (
        "expects the run artifact root <root>/<experiment>/<run>/artifacts; a lake keeps a run's artifacts in "
        "artifacts/<experiment>/<run>/ (README: The lake)",
        [f"{SQL}test_search_attrs"],
    ),
}


def _test_key(item: pytest.Item) -> str:
    name = getattr(item, "originalname", None) or item.name.split("[", 1)[0]
    cls = getattr(item, "cls", None)
    if cls is not None:
        name = f"{cls.__name__}::{name}"
    params = item.name[len(item.name.split("[", 1)[0]) :]  # "[ids]" of a parametrised test, else ""
    return f"{Path(str(item.fspath)).name}::{name}{params}"


def deselect_group(key: str) -> str | None:
    """The deselect group a test (``module.py::test_name``, with ``[ids]`` when parametrised)
    belongs to, if any: a pattern without parameter ids matches every variant."""
    plain = key.split("[", 1)[0]
    for group, (_reason, patterns) in DESELECTED.items():
        if any(fnmatch.fnmatchcase(key if "[[]" in p else plain, p) for p in patterns):
            return group
    return None


# -- the fixtures MLflow's store tests ask for -----------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> Any:
    """A ``RunlakeStore`` over a fresh lake, with the artifact root MLflow's own fixture uses."""
    from runlake.mlflow_store.store import RunlakeStore

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir(exist_ok=True)
    lake = RunlakeStore(f"runlake://{tmp_path / 'lake'}", artifacts.as_uri())
    yield lake
    lake.client.store.close()
    lake.close_reader()


@pytest.fixture
def workspaces_enabled() -> bool:
    return False  # a lake has no workspaces: every test runs once, workspaces off


FIXTURES = {"store": store, "workspaces_enabled": workspaces_enabled}
# A test that asks for none of these does not run against the plugin.
_STORE_FIXTURES = {"store", "store_and_trace_info", "store_with_traces", "generate_trace_infos"}


class RunlakeStorePlugin:
    """Give MLflow's store tests a ``RunlakeStore`` where they ask for their store."""

    def __init__(self) -> None:
        self.deselected: Counter[str] = Counter()
        self.collected = 0

    # -- collection ---------------------------------------------------------------------------
    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        # The single-module layout defines its ``store`` (and the workspace switch) in the test
        # module itself, where a module fixture would win over this plugin's: replace them
        # before pytest reads the module's fixtures.
        if isinstance(collector, pytest.Module):
            try:
                module = collector.obj
            except Exception:
                return  # pytest reports the module's import error itself
            for name, fixture in FIXTURES.items():
                if hasattr(module, name):
                    setattr(module, name, fixture)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        self.collected = len(items)
        keep, drop = [], []
        for item in items:
            group = deselect_group(_test_key(item))
            if group is None and not _STORE_FIXTURES & set(getattr(item, "fixturenames", ())):
                group = NOT_A_STORE_TEST
            if group is None:
                keep.append(item)
            else:
                self.deselected[group] += 1
                drop.append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        stats = terminalreporter.stats
        write = terminalreporter.write_line
        write("")
        write("MLflow's store tests against RunlakeStore")
        write(f"  collected   {self.collected}")
        write(f"  deselected  {sum(self.deselected.values())}")
        for group, count in sorted(self.deselected.items()):
            write(f"    {count:4d}  {group}: {DESELECTED[group][0]}")
        for outcome in ("passed", "failed", "error", "skipped", "xfailed", "xpassed"):
            reports = [r for r in stats.get(outcome, []) if getattr(r, "when", "call") in ("call", "setup")]
            if reports:
                write(f"  {outcome:<11} {len(reports)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "mlflow_src",
        nargs="?",
        default=os.environ.get("RUNLAKE_MLFLOW_SRC"),
        help="an MLflow source checkout (default: $RUNLAKE_MLFLOW_SRC)",
    )
    args, pytest_args = parser.parse_known_args(argv)
    if not args.mlflow_src:
        parser.error("give an MLflow source checkout (or set RUNLAKE_MLFLOW_SRC)")
    src = Path(args.mlflow_src).resolve()
    modules = [str(src / m) for m in MODULES if (src / m).is_file()]
    if not modules:
        parser.error(f"no MLflow store tests under {src} (looked for {', '.join(MODULES)})")
    # MLflow's test modules import helpers from its ``tests`` package: that checkout's, not
    # runlake's, comes first.
    sys.path.insert(0, str(src))
    for name in [m for m in sys.modules if m == "tests" or m.startswith("tests.")]:
        del sys.modules[name]
    with tempfile.TemporaryDirectory() as scratch:
        ini = Path(scratch) / "pytest.ini"
        # MLflow's own pytest settings (strict markers, warnings as errors) stay out of it.
        ini.write_text(
            "[pytest]\nfilterwarnings =\n    ignore::DeprecationWarning\n    ignore::FutureWarning\n    ignore::pytest.PytestUnknownMarkWarning\n"
        )
        plugin = RunlakeStorePlugin()
        return int(
            pytest.main(
                [
                    "-c",
                    str(ini),
                    "--rootdir",
                    str(src),
                    "--noconftest",
                    "-p",
                    "no:cacheprovider",
                    "-q",
                    *modules,
                    *pytest_args,
                ],
                plugins=[plugin, sys.modules[__name__]],
            )
        )


if __name__ == "__main__":
    sys.exit(main())
