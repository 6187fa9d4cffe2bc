"""MLflow's validation rules for keys, values and names, with clear errors (stdlib only).

Every rule raises ``InvalidArgument`` (a ``ValueError``), whichever side calls it.

Shared by the training side (ingest) and the lake's own changes (mutations, import), so a
run renamed in the dashboard obeys the same rules as one named by training code.
"""

from __future__ import annotations

import math
import numbers
import operator
import posixpath
import re
from typing import Any

from runlake.core.errors import InvalidArgument

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_RUN_NAME_LENGTH = 250

# As MLflow: letters, digits, underscores, dashes, periods, spaces, slashes and colons.
_KEY_RE = re.compile(r"[\w./\- :]+")

# Keys already checked: validation must not cost a regex match per logged point.
_valid_keys: set[str] = set()


def _encodable(what: str, text: str) -> str:
    # Lone surrogates (what os.fsdecode gives for non-UTF-8 file names) cannot be written to
    # Parquet: refuse them here, at the call, not at a flush that would then fail forever.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} {text!r} is not valid Unicode text (it has unpaired surrogates)") from None
    return text


def check_name(what: str, name: Any, max_length: int) -> str:
    """A display name (run or experiment): text, one line, no control characters.

    Names end up in file headers, CSV cells and shell-script comments; a newline or control
    character in one is never what a person meant, and is how injection starts.
    """
    if not isinstance(name, str):
        raise InvalidArgument(f"A {what} must be a string, got {type(name).__name__}")
    if len(name) > max_length:
        raise InvalidArgument(f"A {what} may have at most {max_length} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgument(f"A {what} may not contain line breaks or control characters: {name!r}")
    return _encodable(f"The {what}", name)


def validate_key(kind: str, key: Any) -> str:
    """Check a metric, param or tag key and return it.

    Raises:
        InvalidArgument: the key is not a string, is empty or too long, has characters outside
            MLflow's set, or is a path that is not unique (``a/../b``, ``/abs``).
    """
    if key in _valid_keys:
        return key  # type: ignore[no-any-return]
    if not isinstance(key, str):
        raise InvalidArgument(f"Invalid {kind} key {key!r}: keys must be strings, got {type(key).__name__}")
    if not key:
        raise InvalidArgument(f"Invalid {kind} key: the key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(
            f"Invalid {kind} key '{key[:40]}...': {len(key)} characters, the limit is {MAX_KEY_LENGTH}"
        )
    if not _KEY_RE.fullmatch(key):
        raise InvalidArgument(
            f"Invalid {kind} key '{key}': keys may contain only letters, digits, underscores (_), "
            "dashes (-), periods (.), spaces ( ), colons (:) and slashes (/)"
        )
    if posixpath.normpath(key) != key or key.startswith("/") or key.startswith(".."):
        raise InvalidArgument(f"Invalid {kind} key '{key}': a key that is a path must be a plain relative path")
    _encodable(f"The {kind} key", key)
    if len(_valid_keys) < 100_000:
        _valid_keys.add(key)
    return key


def param_value(key: str, value: Any) -> str:
    """A param value as the string stored (MLflow keeps params as strings)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidArgument(
            f"Param '{key}' has a value of {len(text)} characters; the limit is {MAX_PARAM_VALUE_LENGTH}"
        )
    return _encodable(f"The value of param '{key}'", text)


def tag_value(key: str, value: Any) -> str:
    """A tag value as the string stored."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TAG_VALUE_LENGTH:
        raise InvalidArgument(f"Tag '{key}' has a value of {len(text)} characters; the limit is {MAX_TAG_VALUE_LENGTH}")
    return _encodable(f"The value of tag '{key}'", text)


def metric_value(key: str, value: Any) -> float:
    """A metric value as a float; NaN and +/-inf are kept, as MLflow does."""
    if type(value) is float:
        return value
    if isinstance(value, (str, bytes)) or not (isinstance(value, numbers.Number) or hasattr(value, "__float__")):
        raise InvalidArgument(
            f"Got invalid value {value!r} for metric '{key}': metric values must be numbers "
            "(int, float, or a numpy/torch scalar)"
        )
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"Got invalid value {value!r} for metric '{key}': {exc}") from None


# Steps and timestamps are stored as signed 64-bit integers. A larger value accepted at
# log time would fail at the flush instead - and keep failing, holding the buffer hostage.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int64(value: int, message: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidArgument(f"{message}: out of the 64-bit integer range (at most 2^63 - 1)")
    return value


def metric_step(key: str, step: Any) -> int:
    """A metric step as an int (None means step 0, as in MLflow)."""
    if step is None:
        return 0
    if type(step) is int:
        return _int64(step, f"Invalid step {_short(step)} for metric '{key}'")
    if isinstance(step, bool) or isinstance(step, float):
        raise InvalidArgument(f"Invalid step {step!r} for metric '{key}': steps must be integers")
    try:
        return _int64(operator.index(step), f"Invalid step {_short(step)} for metric '{key}'")
    except TypeError:
        raise InvalidArgument(f"Invalid step {step!r} for metric '{key}': steps must be integers") from None


def timestamp_ms(what: str, value: Any) -> int:
    """An epoch-milliseconds timestamp as an int."""
    if type(value) is int:
        return _int64(value, f"Invalid {what} {_short(value)}")
    if isinstance(value, float) and math.isfinite(value):
        return _int64(int(value), f"Invalid {what} {_short(value)}")
    try:
        return _int64(operator.index(value), f"Invalid {what} {_short(value)}")
    except TypeError:
        raise InvalidArgument(f"Invalid {what} {value!r}: expected epoch milliseconds as an integer") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
