"""The YAML of MLflow's model files (``MLmodel``, ``conda.yaml``, ``python_env.yaml``), stdlib only.

runlake writes these files itself with ``dump`` (block mappings and sequences, plain scalars
where YAML reads them back as the same string, double quotes otherwise), so logging a model
needs no YAML library. Reading uses PyYAML's ``safe_load`` when PyYAML is importable (it comes
with MLflow, so a machine that has MLflow's models usually has it) and otherwise ``parse``: a
reader for the subset PyYAML's ``safe_dump`` writes - block mappings and sequences, plain,
single- and double-quoted scalars folded over several lines, ``|``/``>`` block scalars, empty
``{}``/``[]`` and comments. What it does not read (anchors, tags, non-empty flow collections)
is a ``ValueError`` naming the line, never a wrong value. The tests check ``parse`` against
PyYAML on files the real MLflow wrote.
"""

from __future__ import annotations

import math
import re
from typing import Any

# YAML 1.1's implicit types as PyYAML resolves them (the resolver MLflow's files are read with).
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {
    **dict.fromkeys(("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$")
_INT_OTHER = re.compile(r"^[-+]?(?:0b[0-1_]+|0[0-7_]+|0x[0-9a-fA-F_]+|[1-9][0-9_]*(?::[0-5]?[0-9])+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?"
    r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}")
# A string written unquoted: starts with a letter, holds no character YAML gives a meaning to.
_PLAIN_SAFE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-/=<>]*$")
# PyYAML refuses to read these characters unescaped.
_PRINTABLE = re.compile("[\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# -- writing -------------------------------------------------------------------------------
def dump(data: dict[str, Any]) -> str:
    """YAML text for a mapping of mappings, lists and scalars (str, int, float, bool, None).

    Raises:
        TypeError: a value of another type.
    """
    lines: list[str] = []
    _dump_mapping(data, 0, lines)
    return "".join(f"{line}\n" for line in lines)


def _dump_mapping(data: dict[str, Any], indent: int, lines: list[str], first_prefix: str | None = None) -> None:
    pad = " " * indent
    for number, (key, value) in enumerate(data.items()):
        prefix = first_prefix if number == 0 and first_prefix is not None else pad
        head = f"{prefix}{scalar(str(key))}:"
        if isinstance(value, dict) and value:
            lines.append(head)
            _dump_mapping(value, indent + 2, lines)
        elif isinstance(value, list) and value:
            lines.append(head)
            _dump_sequence(value, indent, lines)  # PyYAML's style: items at the key's indent
        else:
            lines.append(f"{head} {scalar(value)}")


def _dump_sequence(items: list[Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for item in items:
        if isinstance(item, dict) and item:
            _dump_mapping(item, indent + 2, lines, first_prefix=f"{pad}- ")
        elif isinstance(item, list) and item:
            raise TypeError("Nested lists are not written in model files")
        else:
            lines.append(f"{pad}- {scalar(item)}")


def scalar(value: Any) -> str:
    """One scalar as YAML text that reads back as the same value."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        if "e" in text and "." not in text:
            # YAML 1.1 reads "1e+16" as a string: its floats need a dot.
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, list) and not value:
        return "[]"
    if not isinstance(value, str):
        raise TypeError(f"Cannot write a {type(value).__name__} in a model file")
    if _PLAIN_SAFE.fullmatch(value) and _resolve_plain(value) == value:
        return value
    return _double_quoted(value)


def _double_quoted(text: str) -> str:
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif _PRINTABLE.match(char) and char not in "\x85\u2028\u2029\ufeff":
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


# -- reading -------------------------------------------------------------------------------
def load(text: str) -> Any:
    """Parse YAML text: with PyYAML's ``safe_load`` when it is importable, else with ``parse``.

    Raises:
        ValueError: text that is not valid YAML (or, without PyYAML, outside ``parse``'s subset).
    """
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return parse(text)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {exc}") from exc


def parse(text: str) -> Any:
    """Parse the YAML subset that PyYAML's ``safe_dump`` writes (see the module docstring).

    Raises:
        ValueError: text outside that subset, with its line number.
    """
    lines = _Lines(text)
    lines.skip_blank()
    if lines.done():
        return None
    value = _parse_node(lines, lines.indent())
    lines.skip_blank()
    if not lines.done():
        raise lines.error("unexpected text after the document")
    return value


class _Lines:
    """The document's lines with a cursor; comment-only lines and a leading ``---`` are skipped."""

    def __init__(self, text: str) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.pos = 0
        self.skip_blank()
        if not self.done() and self.lines[self.pos].rstrip() == "---":
            self.pos += 1

    def done(self) -> bool:
        return self.pos >= len(self.lines)

    def current(self) -> str:
        return self.lines[self.pos]

    def indent(self) -> int:
        line = self.current()
        return len(line) - len(line.lstrip(" "))

    def skip_blank(self) -> None:
        while not self.done():
            stripped = self.current().strip()
            if stripped and not stripped.startswith("#"):
                return
            if stripped == "...":
                return
            self.pos += 1

    def error(self, message: str) -> ValueError:
        return ValueError(f"YAML line {min(self.pos, len(self.lines) - 1) + 1}: {message}")


def _parse_node(lines: _Lines, indent: int) -> Any:
    line = lines.current()
    body = line[indent:]
    if "\t" in line[:indent]:
        raise lines.error("tabs are not allowed for indentation")
    if body.startswith("- ") or body.rstrip() == "-":
        return _parse_sequence(lines, indent)
    if _split_key(body) is not None:
        return _parse_mapping(lines, indent)
    raise lines.error(f"expected a mapping or a list, found {body.strip()!r}")


def _parse_mapping(lines: _Lines, indent: int, first_body: str | None = None) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    body = first_body
    while True:
        if body is None:
            lines.skip_blank()
            if lines.done() or lines.indent() != indent:
                break
            body = lines.current()[indent:]
            if body.startswith("- ") or body.rstrip() == "-":
                break
        split = _split_key(body)
        if split is None:
            raise lines.error(f"expected 'key: value', found {body.strip()!r}")
        key_text, rest = split
        key = _scalar_text(key_text, lines)
        if key in result:
            raise lines.error(f"duplicate key {key!r}")
        result[key] = _parse_value(lines, indent, rest, sequence_at_indent=True)
        body = None
    return result


def _parse_sequence(lines: _Lines, indent: int) -> list[Any]:
    result: list[Any] = []
    while True:
        lines.skip_blank()
        if lines.done() or lines.indent() != indent:
            break
        body = lines.current()[indent:]
        if not (body.startswith("- ") or body.rstrip() == "-"):
            break
        rest = body[1:].lstrip(" ")
        if rest.startswith("- ") or rest.rstrip() == "-":
            raise lines.error("nested lists on one line are not supported")
        item_indent = indent + (len(body) - len(rest)) if rest else indent + 2
        if rest and not rest.startswith("#") and _split_key(rest) is not None:
            # "- key: value" opens a mapping whose keys align with "key".
            result.append(_parse_mapping(lines, item_indent, first_body=rest))
        else:
            result.append(_parse_value(lines, indent, rest, sequence_at_indent=False))
    return result


def _parse_value(lines: _Lines, indent: int, rest: str, *, sequence_at_indent: bool) -> Any:
    """The value after ``key:`` or ``-`` on the current line (``rest``), and any lines it spans."""
    text = _strip_comment(rest).strip()
    if text.startswith(("&", "*", "!")):
        raise lines.error("anchors, aliases and tags are not supported")
    if text in ("|", "|-", "|+", ">", ">-", ">+"):
        lines.pos += 1
        return _block_scalar(lines, indent, text)
    if text:
        start = lines.pos
        lines.pos += 1
        return _multiline_scalar(lines, indent, rest.strip(), start)
    lines.pos += 1
    lines.skip_blank()
    if lines.done():
        return None
    child = lines.indent()
    body = lines.current()[child:]
    if child > indent:
        return _parse_node(lines, child)
    if sequence_at_indent and child == indent and (body.startswith("- ") or body.rstrip() == "-"):
        return _parse_sequence(lines, indent)
    return None


def _multiline_scalar(lines: _Lines, indent: int, first: str, start: int) -> Any:
    """A scalar starting on line ``start``: quoted ones run to their closing quote, plain ones
    continue on more-indented lines (both fold line breaks into spaces)."""
    if first[0] in "\"'":
        quote = first[0]
        parts = [first]
        while not _closed("\n".join(parts), quote):
            if lines.done():
                lines.pos = start
                raise lines.error(f"unterminated {quote}-quoted string")
            parts.append(lines.current())
            lines.pos += 1
        raw = "\n".join(parts)
        end = _quote_end(raw, quote)
        tail = raw[end + 1 :].strip()
        if tail and not tail.startswith("#"):
            lines.pos = start
            raise lines.error(f"unexpected text after a quoted string: {tail!r}")
        return _unquote(raw[: end + 1], quote, lines)
    parts = [_strip_comment(first).strip()]
    while not lines.done():
        line = lines.current()
        stripped = line.strip()
        if stripped and (lines.indent() <= indent or stripped.startswith("#")):
            break
        if not stripped:
            # A blank line inside a plain scalar is a line break, if the scalar goes on.
            ahead = lines.pos + 1
            while ahead < len(lines.lines) and not lines.lines[ahead].strip():
                ahead += 1
            nxt = lines.lines[ahead] if ahead < len(lines.lines) else ""
            if not nxt.strip() or len(nxt) - len(nxt.lstrip(" ")) <= indent:
                break
            parts.append("\n")
            lines.pos += 1
            continue
        if _split_key(stripped) is not None:
            raise lines.error("a mapping cannot follow a scalar value")
        parts.append(_strip_comment(stripped).strip())
        lines.pos += 1
    text = ""
    for part in parts:
        if part == "\n":
            text += "\n"
        elif text and not text.endswith("\n"):
            text += " " + part
        else:
            text += part
    return _resolve_plain(text) if len(parts) == 1 else text


def _closed(raw: str, quote: str) -> bool:
    return _quote_end(raw, quote) >= 0


def _quote_end(raw: str, quote: str) -> int:
    """Index of the closing quote of a quoted scalar starting at raw[0], or -1."""
    i = 1
    while i < len(raw):
        char = raw[i]
        if quote == '"' and char == "\\":
            i += 2
            continue
        if char == quote:
            if quote == "'" and raw[i + 1 : i + 2] == "'":
                i += 2
                continue
            return i
        i += 1
    return -1


def _fold(body: str) -> str:
    """YAML line folding of a quoted scalar's body: a single break becomes a space, n+1
    breaks become n newlines; the indentation around breaks is dropped."""
    pieces = body.split("\n")
    if len(pieces) == 1:
        return body
    out = pieces[0].rstrip(" \t")
    empties = 0
    for piece in pieces[1:-1]:
        if piece.strip(" \t"):
            out += ("\n" * empties if empties else " ") + piece.strip(" \t")
            empties = 0
        else:
            empties += 1
    last = pieces[-1].lstrip(" \t")
    return out + ("\n" * empties if empties else " ") + last


_ESCAPES = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\v",
    "f": "\f",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
    "N": "\x85",
    "_": "\xa0",
    "L": "\u2028",
    "P": "\u2029",
}
_HEX_LENGTHS = {"x": 2, "u": 4, "U": 8}


def _unquote(raw: str, quote: str, lines: _Lines) -> str:
    body = raw[1:-1]
    if quote == "'":
        return _fold(body).replace("''", "'")
    # Double quotes: fold the raw line breaks first (a break escaped by a trailing backslash
    # joins the lines without a space), then decode the escapes in one pass.
    pieces = body.split("\n")
    joined = [pieces[0]]
    for piece in pieces[1:]:
        previous = joined[-1]
        trailing = len(previous) - len(previous.rstrip("\\"))
        if trailing % 2:
            joined[-1] = previous[:-1] + "\x00JOIN" + piece.lstrip(" \t")
        else:
            joined.append(piece)
    folded = _fold("\n".join(joined)).replace("\x00JOIN", "")
    out: list[str] = []
    i = 0
    while i < len(folded):
        char = folded[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        nxt = folded[i + 1 : i + 2]
        if nxt in _HEX_LENGTHS:
            width = _HEX_LENGTHS[nxt]
            digits = folded[i + 2 : i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise lines.error(f"invalid escape \\{nxt}{digits}")
            out.append(chr(int(digits, 16)))
            i += 2 + width
            continue
        if nxt not in _ESCAPES:
            raise lines.error(f"invalid escape \\{nxt}")
        out.append(_ESCAPES[nxt])
        i += 2
    return "".join(out)


def _block_scalar(lines: _Lines, indent: int, header: str) -> str:
    block: list[str] = []
    block_indent: int | None = None
    while not lines.done():
        line = lines.current()
        if line.strip():
            width = len(line) - len(line.lstrip(" "))
            if width <= indent:
                break
            if block_indent is None:
                block_indent = width
            if width < block_indent:
                break
            block.append(line[block_indent:])
        else:
            block.append("")
        lines.pos += 1
    while block and not block[-1]:
        block.pop()
        if header.endswith("+"):
            break
    if header[0] == "|":
        text = "\n".join(block)
    else:
        # Folding: a break between two text lines becomes a space, each empty line a "\n";
        # breaks next to more-indented lines are kept.
        text = block[0] if block else ""
        last_text = text
        for number in range(1, len(block)):
            line, prev = block[number], block[number - 1]
            indented = line.startswith(" ") or last_text.startswith(" ")
            if not line:
                text += "\n"
            elif not prev:
                text += ("\n" if indented else "") + line
            elif indented:
                text += "\n" + line
            else:
                text += " " + line
            if line:
                last_text = line
    if header.endswith("-") or not text:
        return text
    return text + "\n"


def _split_key(body: str) -> tuple[str, str] | None:
    """``(key text, rest)`` when the line is ``key: ...``; quoted keys included."""
    if body.startswith(("'", '"')):
        end = _quote_end(body, body[0])
        if end < 0 or body[end + 1 : end + 2] != ":":
            return None
        rest = body[end + 2 :]
        if rest and not rest.startswith(" "):
            return None
        return body[: end + 1], rest
    match = re.match(r"^([^#'\"{}\[\],&*!|>%@`][^#]*?):(?:\s|$)", body)
    if match is None:
        return None
    return match.group(1).strip(), body[match.end(1) + 1 :]


def _strip_comment(text: str) -> str:
    if text.lstrip().startswith(("'", '"')):
        return text
    match = re.search(r"(^|\s)#", text)
    return text[: match.start()] if match else text


def _scalar_text(text: str, lines: _Lines) -> Any:
    text = text.strip()
    if text and text[0] in "\"'":
        return _unquote(text, text[0], lines)
    return _resolve_plain(text)


def _resolve_plain(text: str) -> Any:
    """A plain scalar's value under PyYAML's YAML 1.1 resolver."""
    if re.fullmatch(r"\{\s*\}|\[\s*\]", text):
        return {} if text.startswith("{") else []
    if text.startswith(("{", "[")):
        raise ValueError(f"flow collections are not supported: {text!r}")
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        return int(text.replace("_", ""))
    if _INT_OTHER.match(text):
        return _int_other(text)
    if _FLOAT.match(text):
        return _float(text)
    if _TIMESTAMP.match(text):
        # PyYAML makes a datetime of these; MLflow never writes one unquoted. Keep the text.
        return text
    return text


def _int_other(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-").replace("_", "")
    if body.startswith("0b"):
        return sign * int(body[2:], 2)
    if body.startswith("0x"):
        return sign * int(body[2:], 16)
    if ":" in body:
        value = 0
        for part in body.split(":"):
            value = value * 60 + int(part)
        return sign * value
    return sign * int(body, 8)


def _float(text: str) -> float:
    lowered = text.lower().replace("_", "")
    if lowered.endswith(".inf"):
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered.endswith(".nan"):
        return math.nan
    if ":" in lowered:
        sign = -1.0 if lowered.startswith("-") else 1.0
        value = 0.0
        for part in lowered.lstrip("+-").split(":"):
            value = value * 60 + float(part)
        return sign * value
    return float(lowered)
