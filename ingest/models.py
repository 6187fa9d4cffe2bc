"""Save and load models in MLflow's model format, and render figures as artifact bytes.

A model directory is what ``mlflow.<flavor>.save_model`` writes: an ``MLmodel`` YAML file with
the ``python_function`` flavor (so ``mlflow.pyfunc.load_model`` and MLflow's serving tools load
it) and the framework's own flavor, the pickled model, ``requirements.txt``, ``conda.yaml`` and
``python_env.yaml``. scikit-learn models get MLflow's ``sklearn`` flavor with ``mlflow.sklearn``
as their pyfunc loader, so MLflow loads them without runlake installed; any other picklable
object gets runlake's ``python_pickle`` flavor, and - when it has a ``predict`` method or is
callable - a pyfunc flavor whose loader is this module (``_load_pyfunc``, the function MLflow's
loader-module contract asks for), so those need runlake where they are loaded.

``load_model`` reads these directories, the ones MLflow writes (``sklearn`` in pickle,
cloudpickle or skops format; pyfunc ``python_model`` pickles) and the JSON ``MLmodel`` files of
runlake's earlier format.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import os
import pickle
import platform
import posixpath
import sys
import uuid
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runlake.core import vocab
from runlake.ingest import mlmodel

if TYPE_CHECKING:
    import pyarrow.fs

MLMODEL_FILE = vocab.MLMODEL_FILE
MODEL_FILE = "model.pkl"
REQUIREMENTS_FILE = "requirements.txt"
CONDA_FILE = "conda.yaml"
PYTHON_ENV_FILE = "python_env.yaml"
# 1 was runlake's own JSON MLmodel (still loaded); 2 is MLflow's YAML format.
FORMAT_VERSION = 2
PYFUNC_FLAVOR = "python_function"
SKLEARN_FLAVOR = "sklearn"
PICKLE_FLAVOR = "python_pickle"
SKLEARN_LOADER = "mlflow.sklearn"
PYTHON_MODEL_LOADER = "mlflow.pyfunc.model"
# MLflow imports the pyfunc flavor's loader module and calls its _load_pyfunc(path).
RUNLAKE_LOADER = "runlake.ingest.models"
# Fixed rather than HIGHEST_PROTOCOL, so a newer interpreter never writes a model that older
# ones cannot read; 5 (Python 3.8+) copies large buffers such as arrays less.
PICKLE_PROTOCOL = 5
# MLflow's switch for loaders that unpickle; runlake's pyfunc loader honours it as MLflow's do.
ALLOW_PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
SERIALIZATION_FORMATS: tuple[str, ...] = ("pickle", "cloudpickle", "skops")

MATPLOTLIB_FORMATS: tuple[str, ...] = ("png", "svg", "pdf", "jpg", "jpeg")
PLOTLY_STATIC_FORMATS: tuple[str, ...] = ("png", "jpg", "jpeg", "svg", "pdf", "webp")


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    fs: pyarrow.fs.FileSystem | None = None,
    artifact_path: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Write ``model`` as an MLflow model directory.

    The directory holds ``MLmodel``, ``model.pkl``, ``requirements.txt``, ``conda.yaml`` and
    ``python_env.yaml``, as ``mlflow.sklearn.save_model`` writes them. The model is pickled with
    cloudpickle when it is installed (it stores functions and classes defined in ``__main__``
    or a notebook by value, which plain pickle cannot load elsewhere), else with pickle. The
    libraries pinned are those whose modules the pickle actually references, so loading needs
    exactly them; MLflow (and runlake, for runlake's own pyfunc loader) are added when the
    model has a ``python_function`` flavor, for MLflow's serving tools.

    Args:
        model: Any picklable object. Objects whose class comes from ``sklearn`` get MLflow's
            ``sklearn`` flavor, everything else runlake's ``python_pickle``. Either gets the
            ``python_function`` flavor when it has a ``predict`` method (or, for other
            objects, is callable).
        path: Directory to create. It must not exist yet, or be empty.
        fs: A ``pyarrow.fs.FileSystem`` to write through; the local filesystem by default.
        artifact_path: The model's path in its run's artifacts (``MLmodel``'s ``artifact_path``).
        run_id: The run the model belongs to (``MLmodel``'s ``run_id``).

    Returns:
        The metadata written to ``MLmodel``.

    Raises:
        FileExistsError: ``path`` exists and is a file or a non-empty directory.
        pickle.PicklingError: the model cannot be pickled (other pickling errors, such as
            ``TypeError``, propagate unchanged).
    """
    data, serializer = _dumps(model)
    libraries, unresolved = _libraries_for(_pickled_modules(data))
    cls = type(model)
    python_version = platform.python_version()
    flavor_conf: dict[str, Any]
    if cls.__module__.split(".", 1)[0] == "sklearn":
        flavor, loader = SKLEARN_FLAVOR, SKLEARN_LOADER
        flavor_conf = {
            "code": None,
            "pickled_model": MODEL_FILE,
            "serialization_format": serializer,
            "sklearn_version": _version("scikit-learn"),
        }
        servable = callable(getattr(model, "predict", None))
    else:
        flavor, loader = PICKLE_FLAVOR, RUNLAKE_LOADER
        flavor_conf = {"pickled_model": MODEL_FILE, "serialization_format": serializer}
        servable = callable(getattr(model, "predict", None)) or callable(model)
    flavors: dict[str, Any] = {}
    if servable:
        flavors[PYFUNC_FLAVOR] = {
            "env": {"conda": CONDA_FILE, "virtualenv": PYTHON_ENV_FILE},
            "loader_module": loader,
            "model_path": MODEL_FILE,
            "predict_fn": "predict",
            "python_version": python_version,
        }
    flavors[flavor] = flavor_conf
    needed = dict(libraries)
    if serializer == "cloudpickle" and servable:
        # MLflow's loaders unpickle cloudpickle-format models with cloudpickle itself.
        needed.setdefault("cloudpickle", _version("cloudpickle") or "")
    requirements = _requirements(needed, servable=servable, runlake_loader=loader == RUNLAKE_LOADER)
    meta: dict[str, Any] = {}
    if artifact_path is not None:
        meta["artifact_path"] = artifact_path
    meta["flavors"] = flavors
    meta["model_uuid"] = uuid.uuid4().hex
    if run_id is not None:
        meta["run_id"] = run_id
    # MLflow's own spelling of the time (str() of a naive UTC datetime).
    meta["utc_time_created"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    # MLflow keeps unknown top-level keys of MLmodel as they are; runlake's go in one section.
    meta["runlake"] = {
        "format_version": FORMAT_VERSION,
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "pickle_protocol": PICKLE_PROTOCOL,
        "libraries": libraries,
        # Modules the pickle needs that no installed distribution provides: the caller's own
        # code, which must be importable wherever the model is loaded.
        "unresolved_modules": unresolved,
    }
    files = [
        (MODEL_FILE, data),
        (REQUIREMENTS_FILE, "".join(f"{line}\n" for line in requirements).encode("utf-8")),
        (CONDA_FILE, mlmodel.dump(_conda_env(python_version, requirements)).encode("utf-8")),
        (PYTHON_ENV_FILE, mlmodel.dump(_python_env(python_version)).encode("utf-8")),
        # Written last: a save that dies half-way leaves no MLmodel, so load_model refuses it.
        (MLMODEL_FILE, mlmodel.dump(meta).encode("utf-8")),
    ]
    if fs is None:
        _write_local(Path(path), files)
    else:
        _write_fs(fs, os.fspath(path), files)
    return meta


def history_entry(meta: dict[str, Any]) -> dict[str, Any]:
    """A model's entry in its run's ``mlflow.log-model.history`` tag, shaped as MLflow's."""
    keys = ("run_id", "artifact_path", "utc_time_created", "model_uuid", "flavors")
    return {key: meta[key] for key in keys if key in meta}


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a model from a model directory written by runlake or by MLflow.

    Reads the ``sklearn`` flavor (pickle, cloudpickle, or skops when skops is installed),
    runlake's ``python_pickle`` flavor, MLflow's pyfunc ``python_model`` pickles (needs
    cloudpickle; returns the ``PythonModel`` after its ``load_context``, what MLflow's
    ``unwrap_python_model()`` gives) and runlake's earlier JSON ``MLmodel`` files.

    Unpickling runs code chosen by whoever wrote the file: load only models you trust.

    Args:
        path: The model directory.

    Returns:
        The model object.

    Raises:
        FileNotFoundError: ``path``, its ``MLmodel`` file or the model file is missing.
        ValueError: ``path`` is not a directory, ``MLmodel`` is unreadable, or no flavor in
            it is one runlake loads (the message names the flavors found).
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"No model at {root}: the directory does not exist")
    if not root.is_dir():
        raise ValueError(f"{root} is a file; load_model expects a model directory")
    mlmodel_path = root / MLMODEL_FILE
    if not mlmodel_path.is_file():
        raise FileNotFoundError(f"{root} is not a model directory: it has no {MLMODEL_FILE} file")
    meta = read_mlmodel(mlmodel_path)
    flavors = meta.get("flavors")
    if not isinstance(flavors, dict):
        raise ValueError(f"{mlmodel_path} has no 'flavors' section; it is not a model's MLmodel file")
    sklearn_conf, pickle_conf, pyfunc_conf = (
        flavors.get(name) for name in (SKLEARN_FLAVOR, PICKLE_FLAVOR, PYFUNC_FLAVOR)
    )
    if isinstance(sklearn_conf, dict):
        version = sklearn_conf.get("sklearn_version")
        pinned = {"scikit-learn": version} if isinstance(version, str) else {}
        return _load_pickled(root, mlmodel_path, sklearn_conf, _libraries_of(meta) or pinned)
    if isinstance(pickle_conf, dict):
        return _load_pickled(root, mlmodel_path, pickle_conf, _libraries_of(meta))
    if isinstance(pyfunc_conf, dict) and pyfunc_conf.get("loader_module") == PYTHON_MODEL_LOADER:
        return _load_python_model(root, mlmodel_path, pyfunc_conf)
    found = ", ".join(sorted(str(name) for name in flavors)) or "none"
    hint = ""
    if isinstance(pyfunc_conf, dict) and isinstance(pyfunc_conf.get("loader_module"), str):
        hint = f"; its python_function flavor is loaded by {pyfunc_conf['loader_module']}: use mlflow.pyfunc.load_model"
    raise ValueError(
        f"{mlmodel_path} has no flavor runlake can load (found: {found}; expected "
        f"{SKLEARN_FLAVOR}, {PICKLE_FLAVOR} or a python_function python_model){hint}"
    )


def read_mlmodel(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An ``MLmodel`` file's content: MLflow's YAML, or the JSON of runlake's format 1.

    Raises:
        ValueError: the file is neither, or does not hold a mapping.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a text file ({exc})") from exc
    meta: Any
    if text.lstrip().startswith("{"):
        try:
            meta = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is neither YAML nor JSON ({exc})") from exc
    else:
        try:
            meta = mlmodel.load(text)
        except ValueError as exc:
            raise ValueError(f"{path} is not a valid MLmodel YAML file ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path} does not hold a mapping; it is not a model's MLmodel file")
    return meta


def _libraries_of(meta: dict[str, Any]) -> dict[str, Any]:
    section = meta.get("runlake") if "runlake" in meta else meta  # format 1 kept them at the top
    libraries = section.get("libraries") if isinstance(section, dict) else None
    return libraries if isinstance(libraries, dict) else {}


def _inside(root: Path, rel: Any, mlmodel_path: Path) -> Path:
    """``root / rel`` for a relative path read from ``MLmodel``, which must stay inside ``root``."""
    parts = rel.split("/") if isinstance(rel, str) else []
    if not parts or "\\" in rel or rel.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{mlmodel_path} names an invalid model file {rel!r}")
    return root.joinpath(*parts)


def _load_pickled(root: Path, mlmodel_path: Path, conf: dict[str, Any], libraries: dict[str, Any]) -> Any:
    file_name = conf.get("pickled_model", MODEL_FILE)
    model_file = _inside(root, file_name, mlmodel_path)
    if not model_file.is_file():
        raise FileNotFoundError(f"{root} is an incomplete model directory: {file_name} is missing")
    serialization = conf.get("serialization_format", "pickle")
    if serialization not in SERIALIZATION_FORMATS:
        raise ValueError(f"{mlmodel_path} names an unknown serialization format {serialization!r}")
    _warn_on_version_drift(libraries, root)
    _add_code_path(root, conf.get("code"), mlmodel_path)
    if serialization == "skops":
        try:
            import skops.io  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError as exc:
            raise ValueError(
                f"{root} was saved in the skops format: loading it needs skops (pip install skops)"
            ) from exc
        return skops.io.load(model_file, trusted=conf.get("skops_trusted_types"))
    with model_file.open("rb") as handle:
        # cloudpickle output loads with plain pickle as long as cloudpickle is importable.
        return pickle.load(handle)


class ModelContext:
    """What MLflow's ``PythonModelContext`` offers a ``PythonModel.load_context``: artifact paths
    and the model config."""

    def __init__(self, artifacts: dict[str, str], model_config: dict[str, Any] | None) -> None:
        self._artifacts = artifacts
        self._model_config = model_config

    @property
    def artifacts(self) -> dict[str, str]:
        return self._artifacts

    @property
    def model_config(self) -> dict[str, Any] | None:
        return self._model_config


def _load_python_model(root: Path, mlmodel_path: Path, conf: dict[str, Any]) -> Any:
    if conf.get("model_code_path"):
        raise ValueError(f"{root} is an MLflow models-from-code model: load it with mlflow.pyfunc.load_model")
    file_name = conf.get("python_model")
    model_file = _inside(root, file_name, mlmodel_path)
    if not model_file.is_file():
        raise FileNotFoundError(f"{root} is an incomplete model directory: {file_name} is missing")
    try:
        import cloudpickle  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise ValueError(f"{root} holds an MLflow python_model: loading it needs cloudpickle") from exc
    import bz2
    import gzip
    import lzma

    openers: dict[str, Any] = {"gzip": gzip.open, "bzip2": bz2.open, "lzma": lzma.open}
    _add_code_path(root, conf.get("code"), mlmodel_path)
    with openers.get(str(conf.get("python_model_compression")), open)(model_file, "rb") as handle:
        python_model = cloudpickle.load(handle)
    artifacts = conf.get("artifacts") or {}
    paths = {
        str(name): str(_inside(root, info.get("path") if isinstance(info, dict) else None, mlmodel_path))
        for name, info in (artifacts.items() if isinstance(artifacts, dict) else ())
    }
    config = conf.get("model_config")
    load_context = getattr(python_model, "load_context", None)
    if callable(load_context):
        load_context(ModelContext(paths, config if isinstance(config, dict) else None))
    return python_model


def _add_code_path(root: Path, code: Any, mlmodel_path: Path) -> None:
    # As MLflow does: a model saved with code_paths imports modules from its code directory.
    if not code:
        return
    directory = str(_inside(root, code, mlmodel_path))
    if directory not in sys.path:
        sys.path.insert(0, directory)


class PyfuncModel:
    """runlake's object behind ``mlflow.pyfunc.load_model`` for ``python_pickle`` models."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def get_raw_model(self) -> Any:
        """The unpickled object (MLflow's ``PyFuncModel.get_raw_model()`` returns it)."""
        return self.model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """The model's ``predict(data)``, or ``model(data)`` for a callable."""
        predict = getattr(self.model, "predict", None)
        if callable(predict):
            return predict(data)
        return self.model(data)


def _load_pyfunc(path: str) -> PyfuncModel:
    """MLflow's loader-module entry point (``mlflow.pyfunc.load_model`` calls it by this name).

    Args:
        path: The model directory (or its model file).

    Raises:
        PermissionError: ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is set to false.
    """
    if os.environ.get(ALLOW_PICKLE_ENV, "true").strip().lower() in ("false", "0"):
        raise PermissionError(
            f"Deserializing this model is disallowed because '{ALLOW_PICKLE_ENV}' is set to false: "
            "loading a pickled model can execute arbitrary code. Only load models from trusted sources."
        )
    root = Path(path)
    return PyfuncModel(load_model(root.parent if root.is_file() else root))


def _requirements(libraries: dict[str, str], *, servable: bool, runlake_loader: bool) -> list[str]:
    lines: list[str] = []
    if servable:
        # MLflow's serving tools build the model's environment from this file.
        lines.append(_pin("mlflow"))
        if runlake_loader:
            lines.append(_pin("runlake"))
    named = {line.split("=", 1)[0] for line in lines}
    rest = sorted(((n, v) for n, v in libraries.items() if n not in named), key=lambda item: item[0].lower())
    return lines + [f"{name}=={version}" if version else name for name, version in rest]


def _pin(distribution: str, operator: str = "==") -> str:
    version = _version(distribution)
    return f"{distribution}{operator}{version}" if version else distribution


def _conda_env(python_version: str, requirements: list[str]) -> dict[str, Any]:
    return {
        "channels": ["conda-forge"],
        "dependencies": [f"python={python_version}", _pin("pip", "<="), {"pip": requirements}],
        "name": "mlflow-env",
    }


def _python_env(python_version: str) -> dict[str, Any]:
    return {
        "python": python_version,
        "build_dependencies": [_pin("pip"), _pin("setuptools"), _pin("wheel")],
        "dependencies": [f"-r {REQUIREMENTS_FILE}"],
    }


def figure_to_bytes(fig: Any, artifact_file: str) -> bytes:
    """Render a matplotlib or plotly figure in the format named by ``artifact_file``'s suffix.

    matplotlib figures support ``.png``, ``.svg``, ``.pdf`` and ``.jpg``. plotly figures
    support ``.html`` (plotly.js loaded from its CDN), ``.json``, and static images (``.png``
    and others) only when kaleido is installed.

    Args:
        fig: A ``matplotlib.figure.Figure`` or a ``plotly.graph_objects.Figure``.
        artifact_file: The artifact's file name; only its suffix matters here.

    Returns:
        The encoded figure.

    Raises:
        ValueError: ``fig`` is neither kind of figure, or the suffix is not supported for it.
    """
    suffix = posixpath.splitext(artifact_file.replace("\\", "/"))[1].lower().lstrip(".")
    module = type(fig).__module__ or ""
    if module.startswith("matplotlib") and hasattr(fig, "savefig"):
        if suffix not in MATPLOTLIB_FORMATS:
            raise ValueError(_format_error(artifact_file, "a matplotlib figure", MATPLOTLIB_FORMATS))
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix)
        return buffer.getvalue()
    if module.startswith("plotly") and hasattr(fig, "to_json"):
        if suffix == "html":
            html: str = fig.to_html(include_plotlyjs="cdn", full_html=True)
            return html.encode("utf-8")
        if suffix == "json":
            text: str = fig.to_json()
            return text.encode("utf-8")
        if suffix in PLOTLY_STATIC_FORMATS:
            if importlib.util.find_spec("kaleido") is None:
                raise ValueError(
                    f"Cannot write plotly figure as {artifact_file!r}: static images need the kaleido "
                    "package (pip install kaleido); .html and .json work without it"
                )
            image: bytes = fig.to_image(format=suffix)
            return image
        raise ValueError(_format_error(artifact_file, "a plotly figure", ("html", "json", *PLOTLY_STATIC_FORMATS)))
    raise ValueError(
        f"Cannot log {type(fig).__module__}.{type(fig).__qualname__} as a figure: "
        "expected a matplotlib.figure.Figure or a plotly.graph_objects.Figure"
    )


def _format_error(artifact_file: str, kind: str, formats: tuple[str, ...]) -> str:
    listed = ", ".join(f".{name}" for name in formats)
    return f"Cannot write {kind} as {artifact_file!r}: the file name must end in one of {listed}"


def _dumps(model: Any) -> tuple[bytes, str]:
    if importlib.util.find_spec("cloudpickle") is not None:
        import cloudpickle  # type: ignore[import-untyped, unused-ignore]

        return cloudpickle.dumps(model, protocol=PICKLE_PROTOCOL), "cloudpickle"
    return pickle.dumps(model, protocol=PICKLE_PROTOCOL), "pickle"


_PUSHES_NOTHING = frozenset({"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})
_MEMO_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})


def _pickled_modules(data: bytes) -> set[str]:
    """Top-level modules that unpickling ``data`` imports."""
    import pickletools

    modules: set[str] = set()
    memo: dict[int, Any] = {}
    # Just enough of the pickle machine's stack to name STACK_GLOBAL's module: what each
    # opcode pushed, with None for anything that is not a string.
    pushed: list[Any] = []
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            modules.add(str(arg).split(" ", 1)[0])
        elif name == "STACK_GLOBAL" and len(pushed) >= 2 and isinstance(pushed[-2], str):
            modules.add(pushed[-2])
        if name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT") and isinstance(arg, int):
            memo[arg] = pushed[-1] if pushed else None
        elif name in _MEMO_GETS and isinstance(arg, int):
            pushed.append(memo.get(arg))
        elif name not in _PUSHES_NOTHING:
            pushed.append(arg if isinstance(arg, str) else None)
        del pushed[:-2]
    return {module.split(".", 1)[0] for module in modules if module}


def _libraries_for(modules: set[str]) -> tuple[dict[str, str], list[str]]:
    from runlake.ingest.context import site_packages_stamps

    stamps = site_packages_stamps()
    owners = _module_owners(stamps)
    libraries: dict[str, str] = {}
    unresolved: list[str] = []
    for module in sorted(modules):
        if module in sys.stdlib_module_names or module in sys.builtin_module_names or module == "__main__":
            continue
        dists = owners.get(module)
        if not dists:
            unresolved.append(module)
            continue
        for dist in dists:
            version = _version(dist)
            if version is not None:
                libraries[dist] = version
    return dict(sorted(libraries.items(), key=lambda item: item[0].lower())), unresolved


# Listing which distribution owns which module reads every installed package's file list
# (about a second in a large environment): done once per installed set, not per model.
@functools.lru_cache(maxsize=1)
def _module_owners(stamps: tuple[tuple[str, int], ...]) -> Mapping[str, list[str]]:
    """Top-level module -> distributions; ``stamps`` is only the cache key."""
    import importlib.metadata

    return importlib.metadata.packages_distributions()


def _version(distribution: str) -> str | None:
    from runlake.ingest.context import site_packages_stamps

    return _installed_version(distribution, site_packages_stamps())


@functools.lru_cache(maxsize=256)
def _installed_version(distribution: str, stamps: tuple[tuple[str, int], ...]) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _warn_on_version_drift(libraries: dict[str, Any], model_dir: Path) -> None:
    drift = [
        f"{name} {saved} (installed: {installed or 'missing'})"
        for name, saved in libraries.items()
        if (installed := _version(str(name))) != saved
    ]
    if drift:
        warnings.warn(
            f"Model {model_dir} was saved with different library versions: {'; '.join(drift)}",
            stacklevel=4,
        )


def _write_local(root: Path, files: list[tuple[str, bytes]]) -> None:
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"Cannot save a model to {root}: it already exists and is not an empty directory")
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files:
        (root / name).write_bytes(data)


def _write_fs(fs: pyarrow.fs.FileSystem, root: str, files: list[tuple[str, bytes]]) -> None:
    import pyarrow.fs as pafs

    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File or (
        info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(root))
    ):
        raise FileExistsError(f"Cannot save a model to {root}: it already exists and is not an empty directory")
    fs.create_dir(root, recursive=True)
    for name, data in files:
        with fs.open_output_stream(f"{root.rstrip('/')}/{name}") as out:
            out.write(data)
