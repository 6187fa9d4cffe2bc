"""The error families every runlake entry point raises and renders (stdlib only)."""

from __future__ import annotations

from typing import Any


class RunlakeError(Exception):
    """Base of every error runlake raises on purpose.

    Each error has one ``to_dict()`` shape that the CLI, the API and the dashboard render:
    ``{"error": <class name>, "message": <text for people>, ...details}``.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": self.message, **self.details}


class InvalidArgument(RunlakeError, ValueError):
    """An argument has the wrong type, range or form."""


class NotFound(RunlakeError, LookupError):
    """Something named does not exist in the lake."""


class RunNotFound(NotFound):
    """No run has the given id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"Run '{run_id}' not found", run_id=run_id)


class ExperimentNotFound(NotFound):
    """No experiment has the given id or name."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"Experiment '{ref}' not found", experiment=ref)


class LakeFormatError(RunlakeError):
    """A lake, file or export is in a format this version cannot read."""
