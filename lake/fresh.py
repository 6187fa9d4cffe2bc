"""Refreshing a ``Lake``'s state once per public call, not once per inner query."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def fresh(method: F) -> F:
    """Refresh the lake's state once at the start of a public call (not per inner query)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        local = self._local
        depth = getattr(local, "depth", 0)
        if not depth:
            self.refresh()
        local.depth = depth + 1
        try:
            return method(self, *args, **kwargs)
        finally:
            local.depth = depth

    return wrapper  # type: ignore[return-value]
