"""The plugin store answers as MLflow's own stores do where MLflow's store test suite checks them.

Found by running MLflow's tracking-store tests against the plugin (scripts/mlflow_store_suite.py);
each test here calls the store MLflow's client resolves for a ``runlake:`` URI, with the real
``mlflow`` package, and checks the behaviour or message MLflow's SQL store gives.
"""

from __future__ import annotations

import time

import mlflow
import pytest
from mlflow.entities import ExperimentTag, Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import (
    MAX_EXPERIMENT_NAME_LENGTH,
    MAX_EXPERIMENT_TAG_VAL_LENGTH,
    MAX_PARAM_VAL_LENGTH,
    MAX_TAG_VAL_LENGTH,
)


@pytest.fixture
def store(lake_uri):
    from mlflow.tracking._tracking_service.utils import _get_store

    return _get_store(lake_uri[1])


@pytest.fixture
def run_id(store):
    experiment_id = store.create_experiment("semantics")
    return store.create_run(experiment_id, "user", 0, [], "r").info.run_id


def test_long_param_and_tag_values_are_truncated_as_in_mlflow(store, run_id, monkeypatch):
    # MLflow's stores truncate values over the limit (with a warning) unless told not to.
    store.log_param(run_id, Param("long", "x" * (MAX_PARAM_VAL_LENGTH + 1)))
    store.set_tag(run_id, RunTag("long", "y" * (MAX_TAG_VAL_LENGTH + 5)))
    store.log_batch(run_id, [], [Param("long2", "z" * (MAX_PARAM_VAL_LENGTH + 9))], [])
    data = store.get_run(run_id).data
    assert data.params["long"] == "x" * MAX_PARAM_VAL_LENGTH
    assert data.params["long2"] == "z" * MAX_PARAM_VAL_LENGTH
    assert data.tags["long"] == "y" * MAX_TAG_VAL_LENGTH

    monkeypatch.setenv("MLFLOW_TRUNCATE_LONG_VALUES", "false")
    with pytest.raises(MlflowException, match="exceeds the maximum length") as err:
        store.log_param(run_id, Param("other", "x" * (MAX_PARAM_VAL_LENGTH + 1)))
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match=f"exceeds the maximum length of {MAX_TAG_VAL_LENGTH} characters"):
        store.set_tag(run_id, RunTag("other", "y" * (MAX_TAG_VAL_LENGTH + 1)))
    assert "other" not in store.get_run(run_id).data.params


def test_invalid_metrics_get_mlflows_messages(store, run_id):
    with pytest.raises(MlflowException, match=r"Missing value for required parameter 'value'"):
        store.log_metric(run_id, Metric("m", None, 0, 0))
    with pytest.raises(MlflowException, match=r"Missing value for required parameter 'metrics\[0\]\.value'"):
        store.log_batch(run_id, [Metric("m", None, 0, 0)], [], [])
    with pytest.raises(MlflowException, match=r"Invalid value \"text\" for parameter 'metrics\[1\]\.value'") as err:
        store.log_batch(run_id, [Metric("m", 1.0, 0, 0), Metric("m", "text", 0, 1)], [], [])
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_experiment_names_and_tags_get_mlflows_checks(store):
    with pytest.raises(MlflowException, match="Invalid experiment name: 'None'"):
        store.create_experiment(None)
    with pytest.raises(MlflowException, match="Invalid experiment name: ''"):
        store.create_experiment("")
    with pytest.raises(MlflowException, match="'name' exceeds the maximum length"):
        store.create_experiment("x" * (MAX_EXPERIMENT_NAME_LENGTH + 1))
    experiment_id = store.create_experiment("tagged")
    with pytest.raises(MlflowException, match="'name' exceeds the maximum length"):
        store.rename_experiment(experiment_id, "x" * (MAX_EXPERIMENT_NAME_LENGTH + 1))
    too_long = ExperimentTag("k", "v" * (MAX_EXPERIMENT_TAG_VAL_LENGTH + 1))
    with pytest.raises(MlflowException, match=f"exceeds the maximum length of {MAX_EXPERIMENT_TAG_VAL_LENGTH}"):
        store.set_experiment_tag(experiment_id, too_long)
    with pytest.raises(MlflowException, match="exceeds the maximum length"):
        store.create_experiment("tagged-too-long", tags=[too_long])
    assert store.get_experiment_by_name("tagged-too-long") is None
    assert "k" not in store.get_experiment(experiment_id).tags


def test_search_max_results_get_mlflows_messages(store, run_id):
    for bad in (None, 0):
        with pytest.raises(MlflowException, match=f"Invalid value {bad} for parameter 'max_results' supplied"):
            store.search_experiments(max_results=bad)
    with pytest.raises(MlflowException, match="Invalid value 50001 for parameter 'max_results' supplied"):
        store.search_experiments(max_results=50001)
    experiment_id = store.get_run(run_id).info.experiment_id
    with pytest.raises(MlflowException, match="Invalid value 50001 for parameter 'max_results' supplied") as err:
        store.search_runs([experiment_id], "", ViewType.ALL, max_results=50001)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_metric_history_refuses_a_foreign_page_token_without_max_results(store, run_id):
    for step in range(3):
        store.log_metric(run_id, Metric("m", float(step), 1000 + step, step))
    with pytest.raises(MlflowException, match="Invalid page token") as err:
        store.get_metric_history(run_id, "m", page_token="invalid_token")
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    first = store.get_metric_history(run_id, "m", max_results=2)
    rest = store.get_metric_history(run_id, "m", page_token=first.token)
    assert [m.step for m in first] + [m.step for m in rest] == [0, 1, 2]
    assert mlflow.MlflowClient().get_metric_history(run_id, "m")[-1].value == 2.0


def test_deleting_an_experiment_deletes_its_runs_and_restoring_restores_them(store):
    # As MLflow's SQL store: the runs go with the experiment, and all come back with it.
    experiment_id = store.create_experiment("cascade")
    other = store.create_experiment("bystander")
    first = store.create_run(experiment_id, "u", 0, [], "first").info.run_id
    second = store.create_run(experiment_id, "u", 0, [], "second").info.run_id
    kept = store.create_run(other, "u", 0, [], "kept").info.run_id
    store.delete_run(first)

    store.delete_experiment(experiment_id)
    deleted = store.search_runs([experiment_id], "", ViewType.DELETED_ONLY)
    assert sorted(r.info.run_id for r in deleted) == sorted([first, second])
    assert all(r.info.lifecycle_stage == "deleted" for r in deleted)
    assert store.search_runs([experiment_id], "", ViewType.ACTIVE_ONLY) == []
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        store.log_metric(second, Metric("m", 1.0, 0, 0))
    assert store.get_run(kept).info.lifecycle_stage == "active"

    store.restore_experiment(experiment_id)
    restored = store.search_runs([experiment_id], "", ViewType.ACTIVE_ONLY)
    assert sorted(r.info.run_id for r in restored) == sorted([first, second])
    store.log_metric(second, Metric("m", 1.0, 0, 0))
    assert store.get_run(second).data.metrics == {"m": 1.0}


def test_dataset_inputs_get_mlflows_checks(store, run_id):
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.validation import MAX_INPUT_TAG_KEY_SIZE

    dataset = Dataset(name="d", digest="abc", source_type="local", source="/tmp/d")
    with pytest.raises(MlflowException, match="InputTag key cannot be None"):
        store.log_inputs(run_id, [DatasetInput(dataset, [InputTag(None, "train")])])
    with pytest.raises(MlflowException, match="Dataset name cannot be None"):
        store.log_inputs(run_id, [DatasetInput(Dataset(None, "abc", "local", "/tmp/d"), [])])
    with pytest.raises(MlflowException, match=f"'key' exceeds the maximum length of {MAX_INPUT_TAG_KEY_SIZE}"):
        store.log_inputs(run_id, [DatasetInput(dataset, [InputTag("k" * (MAX_INPUT_TAG_KEY_SIZE + 1), "v")])])
    assert store.get_run(run_id).inputs.dataset_inputs == []
    store.log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "train")])])
    assert [d.dataset.name for d in store.get_run(run_id).inputs.dataset_inputs] == ["d"]


def test_logged_models_get_mlflows_checks_and_search(store, run_id):
    experiment_id = store.get_run(run_id).info.experiment_id
    for bad in ("my.model", "my%model", "my'model", 'my"model'):
        with pytest.raises(MlflowException, match="Invalid model name"):
            store.create_logged_model(experiment_id, name=bad)
    scored = store.create_logged_model(experiment_id, name="scored")
    time.sleep(0.002)  # newest first: distinct creation times (a tie is broken by the random model id)
    bare = store.create_logged_model(experiment_id, name="bare")
    store.log_batch(run_id, [Metric("acc", 0.9, 1, 0, model_id=scored.model_id, run_id=run_id)], [], [])

    # A model without metrics neither breaks a metric filter nor matches it (it was a TypeError).
    found = store.search_logged_models([experiment_id], filter_string="metrics.acc > 0.5")
    assert [m.name for m in found] == ["scored"]
    assert store.search_logged_models([experiment_id], filter_string="name = 'bare'")[0].metrics is None
    for bad in ("Foo", "name = 'a' OR name = 'b'"):
        with pytest.raises(MlflowException, match="Invalid filter string"):
            store.search_logged_models([experiment_id], filter_string=bad)
    with pytest.raises(MlflowException, match="Invalid entity type"):
        store.search_logged_models([experiment_id], filter_string="foo.bar = 'a'")

    first = store.search_logged_models([experiment_id], max_results=1)
    assert [m.name for m in first] == ["bare"] and first.token is not None
    rest = store.search_logged_models([experiment_id], max_results=1, page_token=first.token)
    assert [m.name for m in rest] == ["scored"] and rest.token is None
    other = store.create_experiment("other-models")
    with pytest.raises(MlflowException, match="Experiment IDs in the page token do not match"):
        store.search_logged_models([other], page_token=first.token)
    with pytest.raises(MlflowException, match="Filter string in the page token does not match"):
        store.search_logged_models([experiment_id], filter_string="name = 'bare'", page_token=first.token)

    store.delete_experiment(other)
    with pytest.raises(MlflowException, match="must be in the 'active' state") as err:
        store.create_logged_model(other)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert bare.model_id != scored.model_id


def test_search_runs_filters_on_datasets_as_mlflow_does(lake_uri):
    # The MLflow UI's dataset filter sends `dataset.name/digest/context` clauses.
    from mlflow.entities import Dataset, DatasetInput, InputTag

    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("datasets")
    train = [InputTag("mlflow.data.context", "train")]
    evaluation = [InputTag("mlflow.data.context", "eval")]
    first = client.create_run(experiment_id, start_time=1).info.run_id
    second = client.create_run(experiment_id, start_time=2).info.run_id
    plain = client.create_run(experiment_id, start_time=3).info.run_id
    wine = Dataset("wine", "d1", "local", "/data/wine")
    iris = Dataset("iris", "d2", "local", "/data/iris")
    client.log_inputs(first, [DatasetInput(wine, train), DatasetInput(iris, evaluation)])
    client.log_inputs(second, [DatasetInput(iris, train)])
    client.log_metric(first, "acc", 0.9)
    client.log_metric(second, "acc", 0.7)

    def ids(filter_string, **kwargs):
        return [r.info.run_id for r in client.search_runs([experiment_id], filter_string, **kwargs)]

    assert set(ids("dataset.name = 'iris'")) == {first, second}
    assert ids("dataset.digest = 'd1'") == [first]
    assert ids("dataset.context = 'eval' AND dataset.name = 'iris'") == [first]
    assert set(ids("dataset.context = 'train'")) == {first, second}
    assert set(ids("datasets.name IN ('wine', 'iris')")) == {first, second}
    assert ids("datasets.name LIKE 'Iri%'") == []
    assert set(ids("datasets.name ILIKE 'Iri%'")) == {first, second}
    assert ids("dataset.name = 'iris' AND metrics.acc > 0.8") == [first]
    assert ids("dataset.name = 'iris'", order_by=["metrics.acc ASC"]) == [second, first]
    page = client.search_runs([experiment_id], "dataset.name = 'iris'", max_results=1)
    assert len(page) == 1 and page.token
    rest = client.search_runs([experiment_id], "dataset.name = 'iris'", max_results=1, page_token=page.token)
    assert {page[0].info.run_id, rest[0].info.run_id} == {first, second}
    client.delete_run(second)
    assert ids("dataset.name = 'iris'") == [first]
    assert ids("dataset.name = 'iris'", run_view_type=ViewType.DELETED_ONLY) == [second]
    assert plain not in ids("dataset.name != 'nothing'")


def test_logged_models_order_by_a_metric_on_a_dataset_given_by_digest(store, run_id):
    # MLflow's SQL store takes a dataset digest without its name in order_by.
    experiment_id = store.get_run(run_id).info.experiment_id
    first = store.create_logged_model(experiment_id, name="first")
    time.sleep(0.002)
    second = store.create_logged_model(experiment_id, name="second")
    for model, on_one, on_two in ((first, 0.9, 0.1), (second, 0.2, 0.8)):
        store.log_batch(
            run_id,
            [
                Metric("acc", on_one, 1, 0, model_id=model.model_id, dataset_name="one", dataset_digest="d1"),
                Metric("acc", on_two, 2, 0, model_id=model.model_id, dataset_name="two", dataset_digest="d2"),
            ],
            [],
            [],
        )

    def names(**clause):
        order = [{"field_name": "metrics.acc", "ascending": False, **clause}]
        return [m.name for m in store.search_logged_models([experiment_id], order_by=order)]

    assert names(dataset_digest="d1") == ["first", "second"]
    assert names(dataset_digest="d2") == ["second", "first"]
    assert names(dataset_name="one", dataset_digest="d1") == ["first", "second"]


def test_a_search_page_reads_params_and_tags_from_the_index_as_from_the_tables(store, run_id):
    # A search page's records come from the search index's wide rows; the same runs read from
    # the runs, params and tags tables (run_records) must give the same Runs. A run gone
    # between the search and the read (another thread's refresh) is a row of nulls: left out.
    from runlake.lake import frames

    experiment_id = store.get_run(run_id).info.experiment_id
    store.log_batch(run_id, [Metric("loss", 0.5, 1, 3)], [Param("lr", "0.1")], [RunTag("team", "a")])
    other = store.create_run(experiment_id, "user", 1, [RunTag("only", "here")], "s").info.run_id
    store.log_batch(other, [], [Param("depth", "4"), Param("lr", "1")], [])
    db = store.lake.connection
    with db.fresh():
        selection = frames.index_selection(db.search_index(), None, prefixes=("params", "tags"))
        assert selection is not None
        wide = frames.index_rows(db, selection, [other, "0" * 32, run_id])
        records = store._records_of_wide_rows(wide, selection)
    from_tables = store.run_records([other, run_id])
    assert [r.info[0] for r in records] == [other, run_id]
    assert [r.to_run().to_dictionary() for r in records] == [r.to_run().to_dictionary() for r in from_tables]
    assert [r.info.run_id for r in store.search_runs([experiment_id], "params.lr = '0.1'", ViewType.ALL)] == [run_id]


def test_a_search_page_read_in_one_query_gives_the_runs_a_page_by_ids_gives(store, run_id, monkeypatch):
    # Pages up to FUSED_SEARCH_LIMIT runs find their ids first; larger ones read their wide
    # rows in the search query itself. Both must give the same runs, pages and tokens.
    import runlake.mlflow_store.store as store_module

    experiment_id = store.get_run(run_id).info.experiment_id
    for i in range(5):
        other = store.create_run(experiment_id, "user", i + 1, [RunTag("i", str(i))], f"r{i}").info.run_id
        store.log_batch(other, [Metric("loss", i / 10, 1, 0)], [Param("lr", str(i % 2))], [])

    def pages() -> list[list[dict]]:
        found, token = [], None
        while True:
            runs = store.search_runs(
                [experiment_id], "params.lr = '1' OR tags.i = '0'", ViewType.ALL, 2, ["metrics.loss DESC"], token
            )
            found.append([r.to_dictionary() for r in runs])
            token = runs.token
            if not token:
                return found

    by_ids = pages()
    monkeypatch.setattr(store_module, "FUSED_SEARCH_LIMIT", 0)
    assert pages() == by_ids
    assert [len(p) for p in by_ids] == [2, 1]


def test_outputs_logged_at_once_by_several_threads_all_enter_the_model_history(store, run_id):
    # log_outputs reads the run's model-history tag, adds the new models and writes it back: two
    # threads of one process (a server's request threads) must not each write back a list
    # without the other's model.
    import json
    import threading

    from mlflow.entities import LoggedModelOutput

    experiment_id = store.get_run(run_id).info.experiment_id
    models = [store.create_logged_model(experiment_id, name=f"m{i}", source_run_id=run_id) for i in range(8)]
    start = threading.Barrier(len(models))

    def log(model):
        start.wait()
        store.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])

    threads = [threading.Thread(target=log, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    history = json.loads(store.get_run(run_id).data.tags["mlflow.log-model.history"])
    assert sorted(h["model_id"] for h in history) == sorted(m.model_id for m in models)


def test_get_run_refreshes_once_more_before_it_says_not_found(store, monkeypatch):
    # A refresh that met writers merging faster than it listed leaves the state one refresh
    # behind (``snapshot.read_changes``): a run created just before must still be found.
    experiment_id = store.create_experiment("lagging")
    store.search_runs([experiment_id], "", ViewType.ALL)  # the state is folded before the run exists
    run_id = store.create_run(experiment_id, "user", 0, [], "r").info.run_id
    snapshot = store.lake.connection._snapshot
    real_refresh = snapshot.refresh
    calls = []

    def lagging(*args, **kwargs):
        calls.append(1)
        return False if len(calls) == 1 else real_refresh(*args, **kwargs)

    monkeypatch.setattr(snapshot, "refresh", lagging)
    assert store.get_run(run_id).info.run_name == "r"
    assert len(calls) == 2
    with pytest.raises(MlflowException, match="not found") as err:
        store.get_run("0" * 32)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_the_servers_plain_batches_are_checked_worded_and_written_as_log_batch(store, run_id):
    # ``runlake server``'s log-batch fast path calls log_plain_batch with the points as tuples.
    bad = [("ok", 1.0, 5, 0), ("../up", 2.0, 5, 1)]
    refusals = []
    for log in (
        lambda: store.log_batch(run_id, [Metric(*point) for point in bad], [], []),
        lambda: store.log_plain_batch(run_id, bad, [], []),
    ):
        with pytest.raises(MlflowException) as err:
            log()
        refusals.append((err.value.error_code, err.value.message))
    assert refusals[0] == refusals[1] and "../up" in refusals[0][1]

    points = [("loss", 1 / (s + 1), 7, s) for s in range(3)]
    store.log_plain_batch(run_id, points, [Param("lr", "0.1")], [RunTag("mlflow.runName", "renamed")])
    history = store.get_metric_history(run_id, "loss")
    assert [(m.key, m.value, m.timestamp, m.step) for m in history] == points
    run = store.get_run(run_id)
    assert run.data.params == {"lr": "0.1"} and run.info.run_name == "renamed"

    store.delete_run(run_id)
    refusals = []
    for log in (
        lambda: store.log_batch(run_id, [Metric(*points[0])], [], []),
        lambda: store.log_plain_batch(run_id, points[:1], [], []),
    ):
        with pytest.raises(MlflowException) as err:
            log()
        refusals.append((err.value.error_code, err.value.message))
    assert refusals[0] == refusals[1]


def test_the_stages_a_store_keeps_are_bounded_and_still_refuse_deleted_runs(store, monkeypatch):
    from runlake.mlflow_store import store as store_module

    monkeypatch.setattr(store_module, "STAGES_KEPT", 3)
    experiment_id = store.create_experiment("stages")
    run_ids = [store.create_run(experiment_id, "u", 0, [], f"r{i}").info.run_id for i in range(6)]
    store.delete_run(run_ids[0])
    for run_id in run_ids[1:]:
        store.log_metric(run_id, Metric("m", 1.0, 0, 0))
        assert len(store._stages) <= 3
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        store.log_metric(run_ids[0], Metric("m", 1.0, 0, 0))  # its stage was dropped: read again
    store.delete_experiment(experiment_id)  # drops what is kept of its runs' stages
    assert not set(run_ids) & set(store._stages)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        store.log_metric(run_ids[5], Metric("m", 1.0, 0, 0))


def test_a_run_deleted_by_another_process_refuses_this_stores_writes_soon_after(store, run_id, lake_uri, monkeypatch):
    import subprocess
    import sys

    from runlake.ingest.store import flush_all
    from runlake.mlflow_store import store as store_module

    # A store that only writes (a training process) never opens a reader to check a stage.
    monkeypatch.setattr(store_module, "STAGE_TRUSTED_S", 0.0)
    store.log_metric(run_id, Metric("m", 1.0, 0, 0))
    store.log_metric(run_id, Metric("m", 1.5, 0, 1))
    assert store._lake is None
    monkeypatch.undo()

    store.get_run(run_id)  # now it reads, as runlake server does
    flush_all()  # the run's rows, for the other process to find
    delete = "import sys; from runlake.ingest import LakeClient; c = LakeClient(sys.argv[1]); c.delete_run(sys.argv[2]); c.flush()"
    subprocess.run([sys.executable, "-c", delete, lake_uri[0], run_id], check=True)
    store.log_metric(run_id, Metric("m", 2.0, 0, 2))  # within STAGE_TRUSTED_S the kept stage is trusted
    monkeypatch.setattr(store_module, "STAGE_TRUSTED_S", 0.0)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        store.log_metric(run_id, Metric("m", 3.0, 0, 3))
    # A reader closed by its finalizer (as at interpreter exit, before MLflow's exit hook ends
    # the active run) is not asked: the kept stage stands, and the write goes through.
    other = store.create_run(store.get_run(run_id).info.experiment_id, "u", 0, [], "other").info.run_id
    store.lake.connection._finalizer()
    store.log_metric(other, Metric("m", 1.0, 0, 0))


def test_search_runs_with_no_max_results_answers_every_match_and_no_token(store):
    # MLflow's SQL store takes max_results=None as "all of them" (its store tests page with it).
    experiment_id = store.create_experiment("unbounded")
    run_ids = [store.create_run(experiment_id, "user", i, [], f"r{i}").info.run_id for i in range(7)]
    runs, token = store._search_runs([experiment_id], "", ViewType.ALL, None, ["attributes.start_time ASC"], None)
    assert [r.info.run_id for r in runs] == run_ids and token is None
    first = store.search_runs([experiment_id], "", ViewType.ALL, max_results=3, order_by=["attributes.start_time"])
    rest, token = store._search_runs(
        [experiment_id], "", ViewType.ALL, None, ["attributes.start_time ASC"], first.token
    )
    assert [r.info.run_id for r in rest] == run_ids[3:] and token is None
    # The dataset-filter path pages in memory: None is every match there too.
    runs, token = store._search_runs([experiment_id], "dataset.name = 'x'", ViewType.ALL, None, None, None)
    assert runs == [] and token is None
    for bad in (0, -1, 50001, "10", True):
        with pytest.raises(MlflowException, match="for parameter 'max_results'") as err:
            store._search_runs([experiment_id], "", ViewType.ALL, bad, None, None)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match="for parameter 'max_results'"):
        store.search_experiments(max_results=None)  # stays strict, as MLflow's


def test_experiment_ids_that_are_no_integer_are_refused_as_mlflow_refuses_them(store, lake_uri):
    from runlake.ingest import LakeClient

    experiment_id = store.create_experiment("numbered")
    run_id = store.create_run(experiment_id, "user", 0, [], "r").info.run_id
    for bad in ("invalid_id", "1.5", "abc123"):
        with pytest.raises(
            MlflowException, match=f"Invalid experiment ID '{bad}'. Experiment ID must be a valid integer"
        ):
            store.get_experiment(bad)
        with pytest.raises(MlflowException, match="must be a valid integer") as err:
            store.search_runs([experiment_id, bad], "", ViewType.ALL)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"
        with pytest.raises(MlflowException, match="must be a valid integer"):
            store.search_logged_models([bad])
    # An integer id the lake does not hold is "not found", and searches leave it out.
    with pytest.raises(MlflowException, match="No Experiment with id=424242 exists") as err:
        store.get_experiment("424242")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert [r.info.run_id for r in store.search_runs([experiment_id, "424242"], "", ViewType.ALL)] == [run_id]
    assert store.search_logged_models(["424242"]) == []
    assert store.get_experiment("").experiment_id == "0"  # no id is the Default, as in MLflow
    # An experiment runlake created with an id of its own choosing (LakeClient takes one) is
    # known, so it is read and searched like any other; in such a lake any text may be an id,
    # so a mistyped one is "not found" (not "must be an integer") and searches leave it out.
    client = LakeClient(lake_uri[0])
    own = client.create_experiment("own-id", experiment_id="team-a")
    own_run = client.create_run(own, run_name="mine")
    client.flush()
    assert store.get_experiment("team-a").name == "own-id"
    assert [r.info.run_id for r in store.search_runs(["team-a", "team-b"], "", ViewType.ALL)] == [own_run]
    with pytest.raises(MlflowException, match="No Experiment with id=team-b exists") as err:
        store.get_experiment("team-b")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
