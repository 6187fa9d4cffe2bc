"""Tests for model directories (save, load, errors) and figure rendering."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from runlake.ingest.models import figure_to_bytes, load_model, save_model


@dataclass
class Thresholder:
    """A model defined in this test module: its module belongs to no installed distribution."""

    cutoff: float

    def predict(self, values: list[float]) -> list[bool]:
        return [value > self.cutoff for value in values]


def _read_mlmodel(path: Path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text())


def _write_mlmodel(path: Path, meta: dict) -> None:
    (path / "MLmodel").write_text(yaml.safe_dump(meta))


def test_sklearn_model_round_trip(tmp_path: Path) -> None:
    linear_model = pytest.importorskip("sklearn.linear_model")
    features = [[0.0], [1.0], [2.0], [3.0]]
    model = linear_model.LogisticRegression().fit(features, [0, 0, 1, 1])
    target = tmp_path / "model"

    meta = save_model(model, str(target))

    sklearn_version = importlib.metadata.version("scikit-learn")
    assert sorted(p.name for p in target.iterdir()) == [
        "MLmodel",
        "conda.yaml",
        "model.pkl",
        "python_env.yaml",
        "requirements.txt",
    ]
    assert _read_mlmodel(target) == meta
    assert meta["flavors"]["sklearn"] == {
        "code": None,
        "pickled_model": "model.pkl",
        "serialization_format": "cloudpickle",
        "sklearn_version": sklearn_version,
    }
    pyfunc = meta["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.sklearn" and pyfunc["model_path"] == "model.pkl"
    assert pyfunc["env"] == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    assert pyfunc["python_version"].count(".") == 2
    extra = meta["runlake"]
    assert extra["model_class"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert extra["libraries"]["scikit-learn"] == sklearn_version
    assert extra["libraries"]["numpy"] == importlib.metadata.version("numpy")
    assert extra["pickle_protocol"] == 5 and extra["format_version"] == 2
    assert len(meta["model_uuid"]) == 32
    assert datetime.strptime(meta["utc_time_created"], "%Y-%m-%d %H:%M:%S.%f")
    requirements = (target / "requirements.txt").read_text().splitlines()
    assert requirements[0] == f"mlflow=={importlib.metadata.version('mlflow')}"
    assert f"scikit-learn=={sklearn_version}" in requirements
    assert f"cloudpickle=={importlib.metadata.version('cloudpickle')}" in requirements
    conda = yaml.safe_load((target / "conda.yaml").read_text())
    assert conda["dependencies"][-1] == {"pip": requirements} and conda["name"] == "mlflow-env"
    python_env = yaml.safe_load((target / "python_env.yaml").read_text())
    assert python_env["python"] == pyfunc["python_version"]
    assert python_env["dependencies"] == ["-r requirements.txt"]

    loaded = load_model(target)

    assert type(loaded) is type(model)
    assert loaded.predict(features).tolist() == model.predict(features).tolist()


def test_plain_object_round_trip_pins_nothing(tmp_path: Path) -> None:
    model = {"weights": [0.5, -1.25], "bias": 3.0, "labels": ("cat", "dog")}

    meta = save_model(model, tmp_path / "model")

    # Nothing to predict with: no python_function flavor, as MLflow leaves it out too.
    assert list(meta["flavors"]) == ["python_pickle"]
    assert meta["runlake"]["model_class"] == "builtins.dict"
    assert meta["runlake"]["libraries"] == {} and meta["runlake"]["unresolved_modules"] == []
    assert (tmp_path / "model" / "requirements.txt").read_text() == ""
    assert load_model(tmp_path / "model") == model


def test_own_classes_are_listed_as_unresolved_modules(tmp_path: Path) -> None:
    meta = save_model(Thresholder(cutoff=0.5), tmp_path / "model")

    assert meta["runlake"]["model_class"].endswith("Thresholder")
    assert Thresholder.__module__.split(".")[0] in meta["runlake"]["unresolved_modules"]
    assert meta["flavors"]["python_function"]["loader_module"] == "runlake.ingest.models"
    assert load_model(tmp_path / "model").predict([0.2, 0.7]) == [False, True]


def test_lambda_is_stored_by_value_with_cloudpickle(tmp_path: Path) -> None:
    pytest.importorskip("cloudpickle")
    offset = 10

    save_model(lambda x: x + offset, tmp_path / "model")

    meta = _read_mlmodel(tmp_path / "model")
    assert meta["flavors"]["python_pickle"]["serialization_format"] == "cloudpickle"
    assert meta["runlake"]["libraries"]["cloudpickle"] == importlib.metadata.version("cloudpickle")
    assert load_model(tmp_path / "model")(1) == 11


def test_save_into_empty_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()

    save_model([1, 2, 3], tmp_path / "model")

    assert load_model(tmp_path / "model") == [1, 2, 3]


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    save_model([1], tmp_path / "model")
    (tmp_path / "file").write_text("x")

    with pytest.raises(FileExistsError, match="already exists"):
        save_model([2], tmp_path / "model")
    with pytest.raises(FileExistsError, match="already exists"):
        save_model([2], tmp_path / "file")
    assert load_model(tmp_path / "model") == [1]


def test_save_through_a_pyarrow_filesystem(tmp_path: Path) -> None:
    pafs = pytest.importorskip("pyarrow.fs")
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())

    save_model({"a": 1}, "models/m1", fs=fs)

    assert load_model(tmp_path / "models" / "m1") == {"a": 1}
    with pytest.raises(FileExistsError):
        save_model({"a": 2}, "models/m1", fs=fs)


@pytest.mark.parametrize(
    ("setup", "error", "message"),
    [
        ("missing", FileNotFoundError, "does not exist"),
        ("file", ValueError, "is a file"),
        ("no_mlmodel", FileNotFoundError, "has no MLmodel file"),
        ("bad_yaml", ValueError, "not a valid MLmodel YAML file"),
        ("bad_json", ValueError, "neither YAML nor JSON"),
        ("not_a_mapping", ValueError, "does not hold a mapping"),
        ("no_flavors", ValueError, "no 'flavors' section"),
        ("unknown_flavor", ValueError, r"no flavor runlake can load \(found: pytorch"),
        ("other_loader", ValueError, "loaded by mlflow.pytorch: use mlflow.pyfunc.load_model"),
        ("escaping_file", ValueError, "invalid model file"),
        ("absolute_file", ValueError, "invalid model file"),
        ("unknown_format", ValueError, "unknown serialization format 'joblib'"),
        ("missing_pickle", FileNotFoundError, "model.pkl is missing"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_load_errors_say_what_is_wrong(tmp_path: Path, setup: str, error: type[Exception], message: str) -> None:
    target = tmp_path / "model"
    if setup == "file":
        target.write_text("not a directory")
    elif setup != "missing":
        save_model([1], target)
        mlmodel = target / "MLmodel"
        meta = _read_mlmodel(target)
        if setup == "no_mlmodel":
            mlmodel.unlink()
        elif setup == "bad_yaml":
            mlmodel.write_text("flavors:\n  sklearn: 'unterminated\n")
        elif setup == "bad_json":
            mlmodel.write_text('{"flavors": ')
        elif setup == "not_a_mapping":
            mlmodel.write_text("- a list\n")
        elif setup == "no_flavors":
            _write_mlmodel(target, {"model_uuid": "x"})
        elif setup == "unknown_flavor":
            _write_mlmodel(target, {**meta, "flavors": {"pytorch": {}}})
        elif setup == "other_loader":
            _write_mlmodel(target, {**meta, "flavors": {"python_function": {"loader_module": "mlflow.pytorch"}}})
        elif setup == "escaping_file":
            _write_mlmodel(target, {**meta, "flavors": {"python_pickle": {"pickled_model": "../x.pkl"}}})
        elif setup == "absolute_file":
            _write_mlmodel(target, {**meta, "flavors": {"sklearn": {"pickled_model": str(tmp_path / "x.pkl")}}})
        elif setup == "unknown_format":
            _write_mlmodel(target, {**meta, "flavors": {"sklearn": {"serialization_format": "joblib"}}})
        elif setup == "missing_pickle":
            (target / "model.pkl").unlink()

    with pytest.raises(error, match=message):
        load_model(target)


def test_load_warns_when_library_versions_differ(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from sklearn.dummy import DummyClassifier

    save_model(DummyClassifier().fit([[0], [1]], [0, 1]), tmp_path / "model")
    meta = _read_mlmodel(tmp_path / "model")
    meta["runlake"]["libraries"]["scikit-learn"] = "0.0.1"
    _write_mlmodel(tmp_path / "model", meta)

    with pytest.warns(UserWarning, match=r"scikit-learn 0\.0\.1 \(installed: "):
        load_model(tmp_path / "model")


def test_plotly_figure_as_html_and_json() -> None:
    go = pytest.importorskip("plotly.graph_objects")
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], name="loss"))

    html = figure_to_bytes(fig, "plots/loss.html").decode()
    data = json.loads(figure_to_bytes(fig, "loss.JSON"))

    assert "<html>" in html and html.rstrip().endswith("</html>")
    assert "cdn.plot.ly" in html
    assert data["data"][0]["y"] == [3, 1, 2]


def test_plotly_png_needs_kaleido() -> None:
    go = pytest.importorskip("plotly.graph_objects")
    fig = go.Figure(go.Bar(x=["a"], y=[1]))

    if importlib.util.find_spec("kaleido") is None:
        with pytest.raises(ValueError, match="kaleido"):
            figure_to_bytes(fig, "bar.png")
    else:
        assert figure_to_bytes(fig, "bar.png").startswith(b"\x89PNG")


def test_plotly_unsupported_suffix() -> None:
    go = pytest.importorskip("plotly.graph_objects")

    with pytest.raises(ValueError, match=r"must end in one of \.html, \.json"):
        figure_to_bytes(go.Figure(), "fig.txt")


@pytest.mark.parametrize(
    ("artifact_file", "magic"),
    [("f.png", b"\x89PNG"), ("f.svg", b"<?xml"), ("f.pdf", b"%PDF"), ("f.jpg", b"\xff\xd8")],
    ids=["png", "svg", "pdf", "jpg"],
)
def test_matplotlib_figure_formats(artifact_file: str, magic: bytes) -> None:
    figure = pytest.importorskip("matplotlib.figure")
    fig = figure.Figure()
    fig.add_subplot().plot([1, 2, 3], [3, 1, 2])

    assert figure_to_bytes(fig, artifact_file).startswith(magic)


def test_matplotlib_unsupported_suffix() -> None:
    figure = pytest.importorskip("matplotlib.figure")

    with pytest.raises(ValueError, match=r"matplotlib figure as 'f\.html'"):
        figure_to_bytes(figure.Figure(), "f.html")


def test_figure_rejects_other_objects() -> None:
    with pytest.raises(ValueError, match=r"expected a matplotlib\.figure\.Figure or a plotly"):
        figure_to_bytes({"not": "a figure"}, "f.png")
