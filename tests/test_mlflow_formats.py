"""runlake's formats meet MLflow's, checked with the real ``mlflow`` package.

Models runlake logs load with ``mlflow.pyfunc.load_model`` and ``mlflow.sklearn.load_model``;
models MLflow saved load with ``runlake.ingest.load_model``; the ``MLmodel`` YAML reader agrees
with PyYAML on what MLflow writes; every run carries ``mlflow.runName``; ``start_run`` resumes
runs and picks experiments by id as MLflow's does.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

import mlflow
import mlflow.models
import mlflow.pyfunc
import mlflow.sklearn
import pytest
import yaml

from runlake.core.errors import ExperimentNotFound, InvalidArgument, RunNotFound
from runlake.ingest import LakeClient, mlmodel
from runlake.ingest.models import load_model
from runlake.lake import Lake

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

FEATURES = [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 3.0], [4.0, 0.5], [5.0, 2.0]]
LABELS = [0, 0, 0, 1, 1, 1]


class Cutoff:
    """A model that is not scikit-learn: gets runlake's python_pickle flavor and pyfunc loader."""

    def __init__(self, cutoff: float) -> None:
        self.cutoff = cutoff

    def predict(self, rows: list[list[float]]) -> list[bool]:
        return [row[0] > self.cutoff for row in rows]


class Scaler(mlflow.pyfunc.PythonModel):
    """An MLflow python_model whose load_context reads an artifact."""

    def load_context(self, context):
        self.factor = float(Path(context.artifacts["factor"]).read_text())

    def predict(self, context, model_input, params=None):
        return [value * self.factor for value in model_input]


def _sklearn_model():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(FEATURES, LABELS)


def _model_dir(lake_dir: str, run_id: str, name: str = "model") -> str:
    return f"{LakeClient(lake_dir).artifact_dir(run_id)}/{name}"


@pytest.fixture(autouse=True)
def _no_mlflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "RUNLAKE_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)


# -- models runlake logs, loaded by MLflow --------------------------------------------------
def test_mf01_sklearn_model_loads_with_mlflow_pyfunc_and_sklearn(rl, lake_dir):
    model = _sklearn_model()
    with rl.start_run(run_name="trained") as run:
        uri = rl.log_model(model, name="model")
    path = _model_dir(lake_dir, run.run_id)
    expected = model.predict(FEATURES).tolist()

    assert uri == f"runs:/{run.run_id}/model"
    assert mlflow.pyfunc.load_model(path).predict(FEATURES).tolist() == expected
    assert mlflow.sklearn.load_model(path).predict(FEATURES).tolist() == expected
    assert rl.load_model(uri).predict(FEATURES).tolist() == expected
    meta = mlflow.models.Model.load(path)
    assert meta.run_id == run.run_id and meta.artifact_path == "model"
    assert set(meta.flavors) == {"python_function", "sklearn"}
    # MLflow's own reader of the environment files the model carries.
    from mlflow.utils.environment import _PythonEnv

    python_env = _PythonEnv.from_yaml(os.path.join(path, "python_env.yaml"))
    assert python_env.python == meta.flavors["python_function"]["python_version"]
    assert python_env.dependencies == ["-r requirements.txt"]


def test_mf02_generic_model_loads_through_runlakes_pyfunc_loader(rl, lake_dir):
    with rl.start_run() as run:
        rl.log_model(Cutoff(2.5), artifact_path="cutoff")
    path = _model_dir(lake_dir, run.run_id, "cutoff")

    pyfunc = mlflow.pyfunc.load_model(path)

    assert pyfunc.metadata.flavors["python_function"]["loader_module"] == "runlake.ingest.models"
    assert pyfunc.predict(FEATURES) == [False, False, False, True, True, True]
    assert isinstance(pyfunc.get_raw_model(), Cutoff)
    requirements = Path(path, "requirements.txt").read_text().splitlines()
    assert requirements[:2] == [f"mlflow=={mlflow.__version__}", "runlake==" + _version("runlake")]


def test_mf03_a_callable_is_served_by_calling_it(tmp_path):
    from runlake.ingest.models import save_model

    offset = 3
    save_model(lambda rows: [row[0] + offset for row in rows], tmp_path / "fn")

    assert mlflow.pyfunc.load_model(str(tmp_path / "fn")).predict([[1.0], [2.0]]) == [4.0, 5.0]


def test_mf04_runlakes_pyfunc_loader_honours_mlflows_pickle_switch(tmp_path, monkeypatch):
    from runlake.ingest.models import save_model

    save_model(Cutoff(1.0), tmp_path / "m")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")

    with pytest.raises(PermissionError, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.pyfunc.load_model(str(tmp_path / "m"))


def test_mf05_model_history_tag_has_mlflows_shape(rl, lake_dir):
    with rl.start_run() as run:
        rl.log_model(_sklearn_model(), "first")
        rl.log_model(Cutoff(1.0), "second")
    history = json.loads(Lake(lake_dir).get_run(run.run_id).tags["mlflow.log-model.history"])

    assert [entry["artifact_path"] for entry in history] == ["first", "second"]
    assert all(entry["run_id"] == run.run_id and len(entry["model_uuid"]) == 32 for entry in history)
    assert history[0]["flavors"]["sklearn"]["pickled_model"] == "model.pkl"
    assert history[1]["flavors"]["python_function"]["loader_module"] == "runlake.ingest.models"


def test_mf06_log_model_refuses_two_different_names(rl):
    with rl.start_run(), pytest.raises(InvalidArgument, match="give one"):
        rl.log_model(Cutoff(1.0), "a", artifact_path="b")


def test_mf25_mlflows_serving_tool_predicts_with_runlake_models(rl, lake_dir, tmp_path):
    import functools
    import operator

    model = _sklearn_model()
    with rl.start_run() as run:
        rl.log_model(model, "sk")
        rl.log_model(functools.partial(operator.mul, 2), "doubler")  # served by runlake's loader
    outputs = {}
    for name in ("sk", "doubler"):
        out = tmp_path / f"{name}.json"
        # What `mlflow models predict -m <model> --env-manager local` runs.
        mlflow.models.predict(
            model_uri=_model_dir(lake_dir, run.run_id, name),
            input_data=FEATURES[:2] + FEATURES[-2:],
            env_manager="local",
            output_path=str(out),
        )
        outputs[name] = json.loads(out.read_text())["predictions"]

    assert outputs["sk"] == model.predict(FEATURES[:2] + FEATURES[-2:]).tolist()
    assert outputs["doubler"] == [[0.0, 2.0], [2.0, 0.0], [8.0, 1.0], [10.0, 4.0]]


# -- models MLflow saved, loaded by runlake --------------------------------------------------
@pytest.mark.parametrize("serialization_format", ["cloudpickle", "pickle", "skops"])
def test_mf07_runlake_loads_mlflow_sklearn_models(tmp_path, serialization_format):
    if serialization_format == "skops":
        pytest.importorskip("skops")
    model = _sklearn_model()
    path = tmp_path / "sk"
    mlflow.sklearn.save_model(model, str(path), serialization_format=serialization_format, input_example=[FEATURES[0]])

    loaded = load_model(path)

    assert type(loaded) is type(model)
    assert loaded.predict(FEATURES).tolist() == model.predict(FEATURES).tolist()


def test_mf08_runlake_loads_an_mlflow_python_model_with_its_artifacts(tmp_path):
    pytest.importorskip("cloudpickle")
    factor = tmp_path / "factor.txt"
    factor.write_text("2.5")
    mlflow.pyfunc.save_model(str(tmp_path / "py"), python_model=Scaler(), artifacts={"factor": str(factor)})
    factor.unlink()  # the model reads its own copy

    loaded = load_model(tmp_path / "py")

    # What MLflow's unwrap_python_model() gives: the PythonModel after load_context.
    assert isinstance(loaded, Scaler) and loaded.factor == 2.5
    assert loaded.predict(None, [1.0, 2.0]) == [2.5, 5.0]


def test_mf09_mlflow_models_load_without_pyyaml(tmp_path, monkeypatch):
    model = _sklearn_model()
    mlflow.sklearn.save_model(model, str(tmp_path / "sk"), serialization_format="cloudpickle")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now fails

    assert load_model(tmp_path / "sk").predict(FEATURES).tolist() == model.predict(FEATURES).tolist()


def test_mf10_models_in_runlakes_earlier_json_format_still_load(rl, lake_dir):
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier(strategy="constant", constant=1).fit(FEATURES, LABELS)
    with rl.start_run() as run:
        pass
    old = Path(_model_dir(lake_dir, run.run_id, "legacy"))
    old.mkdir(parents=True)
    (old / "model.pkl").write_bytes(pickle.dumps(model, protocol=5))
    (old / "requirements.txt").write_text("")
    # The MLmodel runlake wrote before it used MLflow's format (format_version 1).
    legacy = {
        "format_version": 1,
        "utc_time_created": "2026-01-01T00:00:00+00:00",
        "model_class": "sklearn.dummy.DummyClassifier",
        "python_version": "3.11.7",
        "pickle_protocol": 5,
        "serializer": "pickle",
        "serializer_version": None,
        "libraries": {},
        "unresolved_modules": [],
        "flavors": {"sklearn": {"pickled_model": "model.pkl", "serialization_format": "pickle"}},
    }
    (old / "MLmodel").write_text(json.dumps(legacy, indent=2))
    plain = old.parent / "plain"
    plain.mkdir()
    (plain / "model.pkl").write_bytes(pickle.dumps({"w": [1, 2]}))
    legacy_plain = {**legacy, "flavors": {"python_pickle": {"pickled_model": "model.pkl"}}}
    (plain / "MLmodel").write_text(json.dumps(legacy_plain))

    assert rl.load_model(f"runs:/{run.run_id}/legacy").predict(FEATURES).tolist() == [1] * 6
    assert rl.load_model(str(plain)) == {"w": [1, 2]}


# -- the MLmodel YAML reader and writer ------------------------------------------------------
def test_mf11_reader_agrees_with_pyyaml_on_files_mlflow_wrote(tmp_path):
    from sklearn.linear_model import LinearRegression

    wide = [[float(i) for i in range(30)]] * 3
    mlflow.sklearn.save_model(
        LinearRegression().fit(wide, [1.0, 2.0, 3.0]),
        str(tmp_path / "sk"),
        serialization_format="cloudpickle",
        input_example=wide[:1],  # a long signature string, folded over lines by PyYAML
        metadata={"owner": "team: vision", "note": 'it\'s "quoted"\nand two lines', "n": 3, "ok": True},
    )
    factor = tmp_path / "factor.txt"
    factor.write_text("1")
    mlflow.pyfunc.save_model(str(tmp_path / "py"), python_model=Scaler(), artifacts={"factor": str(factor)})
    files = [path for path in tmp_path.rglob("*") if path.name in ("MLmodel", "conda.yaml", "python_env.yaml")]
    assert len(files) == 6
    folded = 0
    for path in files:
        text = path.read_text()
        folded += any(line.startswith("    ") and ":" not in line for line in text.splitlines())
        assert mlmodel.parse(text) == yaml.safe_load(text), path
    assert folded  # the case the reader must fold was really there


YAML_CASES = {
    "folded single quotes": "k: 'a long\n  text'' with\n\n  a blank line'\n",
    "double-quote escapes": 'k: "tab\\there \\u00e9 \\x41 \\\\ \\"q\\""\n',
    "escaped line break": 'k: "joined\\\n  together and\n  folded"\n',
    "plain continued": "k: first\n  second\n  third\nm: 1\n",
    "literal block": "k: |\n  line one\n    indented\n  line three\nm: x\n",
    "folded block strip": "k: >-\n  a\n  b\n\n  c\n",
    "comments and document start": "---\n# a comment\nk: v  # trailing\nl:\n- 1  # one\n- x\n",
    "scalars": "a: null\nb: ~\nc: true\nd: off\ne: 0x1f\nf: 1_000\ng: 1.5e+3\nh: .inf\ni: -.INF\nj: '3.10'\nk: 3.10\n",
    "nested lists of mappings": "deps:\n- python=3.11\n- pip:\n  - a==1\n  - b\n- k: 1\n  l:\n    m: []\n    n: {}\nname: x\n",
    "indented sequence": "a:\n  - 1\n  - - nested\n",
    "empty value then key": "a:\nb: 2\n",
    "quoted keys": "'a b': 1\n\"c: d\": 2\n",
    "plain scalar with a dash line": "k: v\n  - x\n",
    "quoted key in a list": "l:\n- \"0\": null\n  'b': [ ]\n",
}


@pytest.mark.parametrize("text", YAML_CASES.values(), ids=YAML_CASES.keys())
def test_mf12_reader_matches_pyyaml_or_refuses(text):
    expected = yaml.safe_load(text)
    try:
        got = mlmodel.parse(text)
    except ValueError as exc:
        # Outside the subset: a clear error, never a wrong value.
        assert "YAML line" in str(exc) or "not supported" in str(exc)
        assert text == YAML_CASES["indented sequence"]
        return
    assert got == expected or (got != got and expected != expected)


@pytest.mark.parametrize(
    "text",
    ["k: &anchor 1\n", "k: *alias\n", "k: !!str 1\n", "k: [1, 2]\n", "k: 'open\n", "k: v\nm: x\n  n: y\n"],
    ids=["anchor", "alias", "tag", "flow list", "unterminated", "mapping after scalar"],
)
def test_mf13_reader_refuses_what_it_does_not_read(text):
    with pytest.raises(ValueError):
        mlmodel.parse(text)


def test_mf14_writer_output_reads_back_the_same_with_pyyaml():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    keys = st.text(min_size=1, max_size=12)
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=40)
        | st.sampled_from(["yes", "No", "null", "~", "3.10", "1e3", "0x10", "-r x", "a: b", "#c", "'q'", " pad "])
    )
    values = st.recursive(
        scalars,
        lambda inner: (
            st.lists(scalars | st.dictionaries(keys, inner, min_size=1, max_size=3), max_size=3)
            | st.dictionaries(keys, inner, max_size=3)
        ),
        max_leaves=12,
    )

    @settings(max_examples=300, deadline=None)
    @given(st.dictionaries(keys, values, max_size=5))
    def round_trip(data):
        text = mlmodel.dump(data)
        assert yaml.safe_load(text) == (data or None) or data == {}
        assert mlmodel.parse(text) == (data or None) or data == {}

    round_trip()


# -- mlflow.runName ---------------------------------------------------------------------------
def test_mf15_every_run_carries_its_name_as_mlflow_run_name(rl, lake_dir):
    with rl.start_run(run_name="baseline") as named:
        pass
    with rl.start_run() as generated:
        pass
    lake = Lake(lake_dir)

    assert lake.search_run_ids(filter_string="tags.mlflow.runName = 'baseline'") == [named.run_id]
    record = lake.get_run(generated.run_id)
    assert record.tags["mlflow.runName"] == record.info["run_name"] == generated.run_name


def test_mf16_run_name_from_the_tag_and_conflicts(lake_dir):
    client = LakeClient(lake_dir)
    exp = client.create_experiment("names")
    from_tag = client.create_run(exp, tags={"mlflow.runName": "tagged"})

    assert Lake(lake_dir).get_run(from_tag).info["run_name"] == "tagged"
    with pytest.raises(InvalidArgument, match="Both 'run_name' argument and 'mlflow.runName' tag"):
        client.create_run(exp, run_name="a", tags={"mlflow.runName": "b"})


@pytest.mark.parametrize("how", ["Lake.rename_run", "LakeClient.rename_run", "update_run", "set_tag", "Lake.set_tag"])
def test_mf17_renaming_keeps_name_and_tag_in_step(lake_dir, how):
    client = LakeClient(lake_dir)
    run_id = client.create_run(client.create_experiment("rename"), run_name="old")
    if how == "Lake.rename_run":
        Lake(lake_dir).rename_run(run_id, "new")
    elif how == "LakeClient.rename_run":
        client.rename_run(run_id, "new")
    elif how == "update_run":
        client.update_run(run_id, run_name="new")
    elif how == "set_tag":
        client.set_tag(run_id, "mlflow.runName", "new")
    else:
        Lake(lake_dir).set_tag(run_id, "mlflow.runName", "new")
    lake = Lake(lake_dir)

    record = lake.get_run(run_id)
    assert (record.info["run_name"], record.tags["mlflow.runName"]) == ("new", "new")
    assert lake.search_run_ids(filter_string="tags.mlflow.runName = 'new'") == [run_id]
    assert lake.search_run_ids(filter_string="tags.mlflow.runName = 'old'") == []


def test_mf26_setting_the_tag_on_a_run_renames_it(rl, lake_dir):
    with rl.start_run(run_name="first") as run:
        rl.set_tag("mlflow.runName", "second")
        assert run.run_name == "second"
    record = Lake(lake_dir).get_run(run.run_id)

    assert record.info["run_name"] == record.tags["mlflow.runName"] == "second"


def test_mf18_export_carries_run_names_even_for_runs_logged_without_the_tag(lake_dir, tmp_path):
    from runlake.lake import transfer

    client = LakeClient(lake_dir)
    exp = client.create_experiment("exported")
    tagged = client.create_run(exp, run_name="tagged")
    untagged = client.create_run(exp, run_name="untagged")
    client.delete_tag(untagged, "mlflow.runName")  # as runs logged before runlake wrote the tag
    client.flush()
    out = tmp_path / "export"

    transfer.export_runs(Lake(lake_dir), "exported", out)

    for run_id, name in ((tagged, "tagged"), (untagged, "untagged")):
        document = json.loads((out / run_id / "run.json").read_text())
        assert document["mlflow"]["tags"]["mlflow.runName"] == name == document["mlflow"]["info"]["run_name"]
    # An import of an export without the tag (made by an older runlake) writes it.
    run_file = out / untagged / "run.json"
    document = json.loads(run_file.read_text())
    del document["mlflow"]["tags"]["mlflow.runName"]
    run_file.write_text(json.dumps(document))
    target = Lake(str(tmp_path / "other"))
    transfer.import_runs(target, out)
    assert target.get_run(untagged).tags["mlflow.runName"] == "untagged"


# -- start_run(run_id=...) and start_run(experiment_id=...) ----------------------------------
def test_mf19_resume_appends_to_the_run(rl, lake_dir):
    with rl.start_run(run_name="long job", tags={"phase": "1"}) as first:
        rl.log_param("lr", 0.1)
        rl.log_metric("loss", 1.0, step=0)
        rl.log_model(Cutoff(1.0), "m1")
    with rl.start_run(run_id=first.run_id, tags={"phase": "2"}) as again:
        assert again.run_id == first.run_id and again.run_name == "long job"
        assert Lake(lake_dir).get_run(first.run_id).info["status"] == "RUNNING"
        rl.log_param("lr", 0.1)  # the same value again is fine
        rl.log_param("epochs", 5)
        rl.log_metric("loss", 0.5, step=1)
        rl.log_model(Cutoff(2.0), "m2")
        with pytest.raises(InvalidArgument, match="Changing param values is not allowed"):
            rl.log_param("lr", 0.2)
    lake = Lake(lake_dir)
    record = lake.get_run(first.run_id)

    assert record.info["status"] == "FINISHED" and record.info["run_name"] == "long job"
    assert record.params == {"lr": "0.1", "epochs": "5"}
    assert record.tags["phase"] == "2"
    assert lake.metric_history(first.run_id, "loss")["value"].tolist() == [1.0, 0.5]
    history = json.loads(record.tags["mlflow.log-model.history"])
    assert [entry["artifact_path"] for entry in history] == ["m1", "m2"]
    assert lake.search_run_ids(experiment_ids=[first.experiment_id]) == [first.run_id]


def test_mf20_resume_renames_and_takes_the_run_id_from_mlflow_run_id(rl, lake_dir, monkeypatch):
    with rl.start_run(run_name="before") as first:
        pass
    monkeypatch.setenv("MLFLOW_RUN_ID", first.run_id)

    with rl.start_run(run_name="after") as again:
        assert again.run_id == first.run_id
        # Used once, as MLflow does: a nested run started now is a new run.
        assert "MLFLOW_RUN_ID" not in os.environ
        with rl.start_run(nested=True) as child:
            assert child.run_id != first.run_id
    record = Lake(lake_dir).get_run(first.run_id)
    assert record.info["run_name"] == record.tags["mlflow.runName"] == "after"


def test_mf21_resume_errors(rl, lake_dir):
    with rl.start_run() as done:
        pass
    with rl.start_run() as deleted:
        pass
    Lake(lake_dir).delete_run(deleted.run_id)
    other = rl.set_experiment("elsewhere")

    with pytest.raises(RunNotFound):
        rl.start_run(run_id="0123456789abcdef")
    with pytest.raises(InvalidArgument, match="because it is in the deleted state"):
        rl.start_run(run_id=deleted.run_id)
    with pytest.raises(InvalidArgument, match="belongs to experiment .* \\(experiment_id\\)"):
        rl.start_run(run_id=done.run_id, experiment_id=other)
    with pytest.raises(InvalidArgument, match=r"not to 'elsewhere' \(set_experiment\)"):
        rl.start_run(run_id=done.run_id)
    with pytest.raises(InvalidArgument, match=r"not to 'elsewhere' \(experiment\)"):
        rl.start_run(run_id=done.run_id, experiment="elsewhere")
    rl.set_experiment(experiment_id=done.experiment_id)
    with pytest.raises(InvalidArgument, match="Both 'run_name' argument"):
        rl.start_run(run_id=done.run_id, run_name="a", tags={"mlflow.runName": "b"})
    assert Lake(lake_dir).get_run(done.run_id).info["status"] == "FINISHED"  # nothing written
    with rl.start_run(run_id=done.run_id, experiment="Default"):  # its experiment, by name
        pass
    with rl.start_run(run_id=done.run_id) as resumed:
        with pytest.raises(InvalidArgument, match="already active"):
            rl.start_run(run_id=done.run_id, nested=True)
    assert resumed.ended and rl.active_run() is None


def test_mf22_experiment_id_picks_the_experiment(rl, lake_dir):
    chosen = rl.set_experiment("chosen")
    rl.set_experiment("the active one")

    with rl.start_run(experiment_id=chosen) as run:
        pass

    assert run.experiment_id == chosen == Lake(lake_dir).get_run(run.run_id).info["experiment_id"]
    with pytest.raises(ExperimentNotFound):
        rl.start_run(experiment_id="no-such-experiment")
    with pytest.raises(InvalidArgument, match="give one"):
        rl.start_run(experiment="chosen", experiment_id=chosen)
    _mark_experiment_deleted(lake_dir, chosen)
    with pytest.raises(InvalidArgument, match="is deleted"):
        rl.start_run(experiment_id=chosen)
    assert rl.active_run() is None


def test_mf23_set_experiment_by_id(rl):
    chosen = LakeClient(rl.get_lake()).create_experiment("by id")

    assert rl.set_experiment(experiment_id=chosen) == chosen
    with rl.start_run() as run:
        pass
    assert run.experiment_id == chosen
    with pytest.raises(ExperimentNotFound):
        rl.set_experiment(experiment_id="missing")
    with pytest.raises(InvalidArgument, match="exactly one"):
        rl.set_experiment()


def test_mf24_mlflow_experiment_environment_variables(rl, lake_dir, monkeypatch):
    client = LakeClient(lake_dir)
    existing = client.create_experiment("from env id")

    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", existing)
    with rl.start_run() as by_id:
        pass
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "missing")
    with pytest.raises(InvalidArgument, match="does not exist in this lake"):
        rl.start_run()
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from env name")
    with rl.start_run() as by_name:
        pass
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", existing)
    with pytest.raises(InvalidArgument, match="does not match the experiment id"):
        rl.start_run()
    # Explicit choices win over the environment.
    with rl.start_run(experiment_id=existing) as explicit:
        pass

    assert by_id.experiment_id == existing == explicit.experiment_id
    assert client.get_experiment_by_name("from env name").experiment_id == by_name.experiment_id


def _mark_experiment_deleted(lake_dir: str, experiment_id: str) -> None:
    # runlake has no experiment deletion yet: write the row MLflow's import would bring.
    from runlake.core import layout, rows, writer

    store = LakeClient(lake_dir).store
    row = {**rows.experiment_row(experiment_id, "chosen", ""), "lifecycle_stage": layout.LIFECYCLE_DELETED}
    writer.write_part(store.fs, store.root, layout.EXPERIMENTS, writer.to_table(layout.EXPERIMENTS, [row]))


def _version(distribution: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(distribution)
