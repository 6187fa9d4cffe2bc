"""Save and load models as self-describing directories, and render figures as artifact bytes."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import platform
import posixpath
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runlake.core import vocab

if TYPE_CHECKING:
    import pyarrow.fs

MLMODEL_FILE = vocab.MLMODEL_FILE
MODEL_FILE = "model.pkl"
REQUIREMENTS_FILE = "requirements.txt"
FORMAT_VERSION = 1
SKLEARN_FLAVOR = "sklearn"
PICKLE_FLAVOR = "python_pickle"
# Fixed rather than HIGHEST_PROTOCOL, so a newer interpreter never writes a model that older
# ones cannot read; 5 (Python 3.8+) copies large buffers such as arrays less.
PICKLE_PROTOCOL = 5

MATPLOTLIB_FORMATS: tuple[str, ...] = ("png", "svg", "pdf", "jpg", "jpeg")
PLOTLY_STATIC_FORMATS: tuple[str, ...] = ("png", "jpg", "jpeg", "svg", "pdf", "webp")


def save_model(model: Any, path: str | os.PathLike[str], *, fs: pyarrow.fs.FileSystem | None = None) -> dict[str, Any]:
    """Write ``model`` as a model directory: ``MLmodel``, ``model.pkl`` and ``requirements.txt``.

    The model is pickled with cloudpickle when it is installed (it stores functions and
    classes defined in ``__main__`` or a notebook by value, which plain pickle cannot load
    elsewhere), else with pickle. The libraries pinned are those whose modules the pickle
    actually references, so loading needs exactly them.

    Args:
        model: Any picklable object. Objects whose class comes from ``sklearn`` get the
            ``sklearn`` flavor, everything else ``python_pickle``.
        path: Directory to create. It must not exist yet, or be empty.
        fs: A ``pyarrow.fs.FileSystem`` to write through; the local filesystem by default.

    Returns:
        The metadata written to ``MLmodel``.

    Raises:
        FileExistsError: ``path`` exists and is a file or a non-empty directory.
        pickle.PicklingError: the model cannot be pickled (other pickling errors, such as
            ``TypeError``, propagate unchanged).
    """
    data, serializer = _dumps(model)
    modules = _pickled_modules(data)
    libraries, unresolved = _libraries_for(modules)
    cls = type(model)
    flavor_conf: dict[str, Any] = {"pickled_model": MODEL_FILE, "serialization_format": serializer}
    if cls.__module__.split(".", 1)[0] == "sklearn":
        flavor = SKLEARN_FLAVOR
        flavor_conf["sklearn_version"] = _version("scikit-learn")
    else:
        flavor = PICKLE_FLAVOR
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "utc_time_created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "python_version": platform.python_version(),
        "pickle_protocol": PICKLE_PROTOCOL,
        "serializer": serializer,
        "serializer_version": _version(serializer) if serializer != "pickle" else None,
        "libraries": libraries,
        # Modules the pickle needs that no installed distribution provides: the caller's own
        # code, which must be importable wherever the model is loaded.
        "unresolved_modules": unresolved,
        "flavors": {flavor: flavor_conf},
    }
    requirements = "".join(f"{name}=={version}\n" for name, version in libraries.items())
    files = [
        (MODEL_FILE, data),
        (REQUIREMENTS_FILE, requirements.encode("utf-8")),
        # Written last: a save that dies half-way leaves no MLmodel, so load_model refuses it.
        (MLMODEL_FILE, (json.dumps(meta, indent=2) + "\n").encode("utf-8")),
    ]
    if fs is None:
        _write_local(Path(path), files)
    else:
        _write_fs(fs, os.fspath(path), files)
    return meta


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a model written by ``save_model``.

    Unpickling runs code chosen by whoever wrote the file: load only models you trust.

    Args:
        path: The model directory.

    Returns:
        The unpickled model.

    Raises:
        FileNotFoundError: ``path``, its ``MLmodel`` file or the pickled model is missing.
        ValueError: ``path`` is not a directory, or ``MLmodel`` is not one ``save_model`` wrote.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"No model at {root}: the directory does not exist")
    if not root.is_dir():
        raise ValueError(f"{root} is a file; load_model expects the directory save_model wrote")
    mlmodel = root / MLMODEL_FILE
    if not mlmodel.is_file():
        raise FileNotFoundError(f"{root} is not a model directory: it has no {MLMODEL_FILE} file")
    try:
        meta = json.loads(mlmodel.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{mlmodel} is not JSON written by runlake's save_model ({exc}); "
            "MLflow's YAML MLmodel files are not supported"
        ) from exc
    flavors = meta.get("flavors") if isinstance(meta, dict) else None
    if not isinstance(flavors, dict):
        raise ValueError(f"{mlmodel} has no 'flavors' section; it was not written by save_model")
    loadable = [flavors[name] for name in (SKLEARN_FLAVOR, PICKLE_FLAVOR) if isinstance(flavors.get(name), dict)]
    if not loadable:
        found = ", ".join(sorted(flavors)) or "none"
        raise ValueError(
            f"{mlmodel} has no flavor runlake can load (found: {found}; expected {SKLEARN_FLAVOR} or {PICKLE_FLAVOR})"
        )
    conf = loadable[0]
    file_name = conf.get("pickled_model", MODEL_FILE)
    # The name comes from the file, so it must not point outside the model directory.
    if not isinstance(file_name, str) or file_name in ("", ".", "..") or "/" in file_name or "\\" in file_name:
        raise ValueError(f"{mlmodel} names an invalid model file {file_name!r}")
    model_file = root / file_name
    if not model_file.is_file():
        raise FileNotFoundError(f"{root} is an incomplete model directory: {file_name} is missing")
    _warn_on_version_drift(meta, mlmodel)
    with model_file.open("rb") as handle:
        # cloudpickle output loads with plain pickle as long as cloudpickle is importable.
        return pickle.load(handle)


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
        import cloudpickle  # type: ignore[import-untyped]

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
    import importlib.metadata

    owners = importlib.metadata.packages_distributions()
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


def _version(distribution: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _warn_on_version_drift(meta: dict[str, Any], mlmodel: Path) -> None:
    libraries = meta.get("libraries")
    if not isinstance(libraries, dict):
        return
    drift = [
        f"{name} {saved} (installed: {installed or 'missing'})"
        for name, saved in libraries.items()
        if (installed := _version(name)) != saved
    ]
    if drift:
        warnings.warn(
            f"Model {mlmodel.parent} was saved with different library versions: {'; '.join(drift)}",
            stacklevel=3,
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
