"""runlake's errors as MLflow's: the codes MLflow's client and REST layer expect."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    FEATURE_DISABLED,
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
)

from runlake.core.errors import InvalidArgument, NotFound, RunlakeError

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise runlake's errors inside as ``MlflowException`` with the matching code."""
    try:
        yield
    except MlflowException:
        raise
    except NotFound as exc:
        raise MlflowException(exc.message, RESOURCE_DOES_NOT_EXIST) from exc
    except (InvalidArgument, ValueError) as exc:
        raise MlflowException(getattr(exc, "message", None) or str(exc), INVALID_PARAMETER_VALUE) from exc
    except RunlakeError as exc:
        raise MlflowException(exc.message) from exc


def mlflow_errors(method: F) -> F:
    """Decorate a store method: runlake's errors leave it as ``MlflowException``."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with translated():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def not_supported(what: str) -> MlflowException:
    """MLflow's own "feature disabled" error for what a lake does not hold."""
    return MlflowException(
        f"{what} is not supported by the runlake tracking store (a lake holds runs, experiments, "
        "datasets and logged models); use an MLflow SQL store for it",
        FEATURE_DISABLED,
    )


def unsupported_as_mlflow(cls: type) -> type:
    """Make every inherited store method that raises ``NotImplementedError`` raise MLflow's
    FEATURE_DISABLED error instead (traces, evaluation datasets, scorers, prompts, ...): a caller
    gets an error MLflow's client and server know how to report, never a crash."""
    from mlflow.store.tracking.abstract_store import AbstractStore

    for name in dir(AbstractStore):
        if name.startswith("_") or name in cls.__dict__:
            continue
        original = getattr(AbstractStore, name)
        if not callable(original) or isinstance(original, property) or getattr(original, "__isabstractmethod__", False):
            continue

        def make(original: Callable[..., Any], name: str) -> Callable[..., Any]:
            @functools.wraps(original)
            def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return original(self, *args, **kwargs)
                except NotImplementedError:
                    raise not_supported(f"'{name}'") from None

            return wrapper

        setattr(cls, name, make(original, name))
    return cls


def no_model_registry(store_uri: str, *args: Any, **kwargs: Any) -> Any:
    """MLflow's model-registry store factory for ``runlake:`` URIs: a lake has no registry.

    The error is the one MLflow's own server answers when its backend has no registry store
    (``runlake server`` included): INVALID_PARAMETER_VALUE, "Model registry functionality is
    unavailable; got unsupported URI ...". Without this factory MLflow's client, in process,
    would say FEATURE_DISABLED for the same call, so the plugin and the server would disagree.
    It is a plain ``MlflowException``, not MLflow's ``UnsupportedModelRegistryStoreURIException``,
    which the client turns into FEATURE_DISABLED. A registry URI of its own
    (``MLFLOW_REGISTRY_URI=sqlite:///...``) still gives a working registry beside the lake.
    """
    from mlflow.tracking._model_registry.utils import _get_store_registry
    from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException

    schemes = [s for s in _get_store_registry()._registry if s != "runlake"]
    message = UnsupportedModelRegistryStoreURIException(store_uri, schemes).message
    raise MlflowException(message, INVALID_PARAMETER_VALUE)


def register_no_model_registry() -> None:
    """Answer model-registry calls on ``runlake:`` URIs with :func:`no_model_registry` (MLflow's
    registry looks stores up by URI scheme, as it does tracking stores)."""
    from mlflow.tracking._model_registry.utils import _get_store_registry

    registry = _get_store_registry()
    if "runlake" not in registry._registry:
        registry.register("runlake", no_model_registry)
