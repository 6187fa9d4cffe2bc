"""SearchSyntaxError: what is wrong with a filter, where (a caret under it) and what would be right."""

from __future__ import annotations

import re
from collections.abc import Iterable

from runlake.core.errors import InvalidArgument

# How many characters of a long line are shown either side of the fault.
_WINDOW = 60

# Grammar terminal -> words for people. One table, so every message names tokens the same way.
# Order matters: `expected_words` lists alternatives in this order.
TOKEN_WORDS: dict[str, str] = {
    "NAME": "an identifier such as metrics.rmse, params.lr, tags.team or status",
    "BQ_NAME": "a `quoted` name",
    "MIN": "MIN(...), MAX(...) or LATEST(...) of a metric",
    "MAX": "MIN(...), MAX(...) or LATEST(...) of a metric",
    "LATEST": "MIN(...), MAX(...) or LATEST(...) of a metric",
    "NOT": "NOT",
    "LPAR": "'('",
    "EQ": "'='",
    "NE": "'!='",
    "LT": "'<'",
    "LE": "'<='",
    "GT": "'>'",
    "GE": "'>='",
    "LIKE": "LIKE",
    "ILIKE": "ILIKE",
    "IN": "IN",
    "IS": "IS",
    "NULL": "NULL",
    "SQ_STRING": "a quoted string",
    "DQ_STRING": "a quoted string",
    "NUMBER": "a number",
    "DOT": "'.'",
    "COMMA": "','",
    "RPAR": "')'",
    "AND": "AND",
    "OR": "OR",
    "ASC": "ASC",
    "DESC": "DESC",
    "$END": "the end of the text",
}


def expected_words(terminals: Iterable[str]) -> list[str]:
    """Turn a set of grammar terminal names into an ordered, de-duplicated list of words."""
    wanted = set(terminals)
    if len(wanted) > 2:
        wanted.discard("DOT")  # after a name '.' only starts a quoted key: noise in a long list
    words: list[str] = []
    for name, word in TOKEN_WORDS.items():
        if name in wanted and word not in words:
            words.append(word)
    return words


def token_text(name: str, value: str) -> str:
    """How an offending token is named in a message: 'abc', string 'x', number 1.5."""
    if name == "$END":
        return "end of text"
    shown = value if len(value) <= 40 else value[:37] + "..."
    if name in ("SQ_STRING", "DQ_STRING"):
        return f"string {shown}"
    if name == "NUMBER":
        return f"number {shown}"
    if name == "BQ_NAME":
        return f"name {shown}"
    return f"'{shown}'"


_VALUE_TERMINALS = {"SQ_STRING", "DQ_STRING", "NUMBER"}
_CONDITION_START = {"NAME", "BQ_NAME", "LPAR", "NOT"}
_COMPARATORS = {"EQ", "NE", "LT", "LE", "GT", "GE", "LIKE", "ILIKE", "IN", "IS"}


def unmatched_parens(text: str, upto: int | None = None) -> tuple[list[int], list[int]]:
    """Positions of '(' never closed and ')' never opened before ``upto``, skipping quotes."""
    opened: list[int] = []
    stray: list[int] = []
    quote = ""
    for i, ch in enumerate(text[:upto]):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            opened.append(i)
        elif ch == ")":
            if opened:
                opened.pop()
            else:
                stray.append(i)
    return opened, stray


def character_problem(text: str, position: int, accepts: set[str]) -> tuple[str, str | None]:
    """Problem and hint for a character no token can start with."""
    ch = text[position]
    before, after = text[:position], text[position + 1 :]
    if ch in "'\"":
        return "Unterminated string", (
            f"Close it with a matching {ch}. A string may contain the other quote character, "
            "never its own (there are no escapes)."
        )
    if ch == "`":
        return "Unterminated quoted name", "Close the name with a matching backtick (`)."
    problem = f"Unexpected character '{ch}'"
    if ch == ";":
        return problem, "A filter is one expression: remove the ';' and join conditions with AND or OR."
    if ch == "-" and before[-1:].isalnum() or ch == "-" and before[-1:] == "_":
        name = re.search(r"[\w.]*$", before).group(0)  # type: ignore[union-attr]
        rest = re.match(r"[\w.-]*", after).group(0)  # type: ignore[union-attr]
        prefix, dot, key = name.partition(".")
        quoted = f"{prefix}.`{key}-{rest}`" if dot else f"`{name}-{rest}`"
        return problem, f"Keys containing '-' must be quoted: {quoted}"
    if ch == "-":
        return problem, "Write a negative number with the minus sign touching it: -1"
    if ch == "+":
        return problem, "Numbers take no leading '+': write 1, not +1."
    if ch in "&|":
        return problem, "Join conditions with AND or OR."
    if ch == "!":
        return problem, "Write '!=' for 'not equal', or NOT before a condition."
    if ch in "[{":
        return problem, "IN lists use parentheses: IN ('a', 'b')."
    return problem, None


def token_hint(text: str, name: str, value: str, position: int, accepts: set[str], start: str) -> str | None:
    """A hint for a token the parser did not expect, or None."""
    upper = value.upper()
    wants_value = bool(accepts & _VALUE_TERMINALS)
    if start == "order_entry":
        if upper == "NULLS":
            return (
                "NULLS FIRST/LAST is not supported: runs with a value come first, then NaN, "
                "then runs missing the key, in either direction."
            )
        if name == "NAME" and "ASC" in accepts:
            return f"The direction is ASC or DESC, not '{value}'."
        if name in _COMPARATORS or name == "NE":
            return "An order_by entry is a key and an optional direction (ASC or DESC), not a condition."
        if name == "COMMA":
            return "Give one key per entry, e.g. ['metrics.rmse DESC', 'params.lr']."
    if name == "EQ" and text[position - 1 : position] == "=":
        return "Use a single '=' to test equality."
    if name == "GT" and text[position - 1 : position] == "<":
        return "Use '!=' for 'not equal'."
    if name == "$END":
        opened, _ = unmatched_parens(text)
        if opened:
            return f"Close the '(' at column {line_and_column(text, opened[-1])[1]} with ')'."
        if wants_value:
            return "Add a value after the operator, e.g. metrics.rmse < 0.3 or params.lr = '0.01'."
        if "EQ" in accepts:
            return "Compare the key with a value, e.g. metrics.rmse < 0.3 or params.lr = '0.01'."
        if accepts & _CONDITION_START:
            return "Add a condition after the last AND, OR or NOT."
        return None
    if name == "RPAR":
        if "SQ_STRING" in accepts and "NUMBER" not in accepts:
            if text[:position].rstrip().endswith(","):
                return "Remove the trailing ',' or add another quoted string after it."
            return "An IN list needs at least one quoted string: IN ('a', 'b')."
        if accepts & _CONDITION_START:
            return "Empty parentheses: put a condition inside them, or remove them."
        if unmatched_parens(text, position + 1)[1]:
            return "This ')' has no matching '('."
    if name in ("AND", "OR") and accepts & _CONDITION_START:
        return f"{upper} joins two conditions; one is missing here."
    if name in ("AND", "OR") and accepts & _COMPARATORS:
        return f"The condition before {upper} needs an operator and a value, e.g. = 'x' or > 0.5."
    if upper == "BETWEEN":
        return "BETWEEN is not supported: write x >= a AND x <= b."
    if wants_value:
        if name == "NULL":
            return "To test for a missing key write IS NULL (or IS NOT NULL)."
        if name == "NAME" and upper in ("TRUE", "FALSE"):
            return "There are no boolean values: compare with a quoted string, e.g. tags.flag = 'true'."
        if name == "NAME" and upper.lstrip("-") in ("NAN", "INF", "INFINITY"):
            return (
                "NaN and infinity cannot be written as values. A NaN metric satisfies only '!=' "
                "(e.g. metrics.loss != 0); IS NULL finds runs missing the key."
            )
        if name == "NAME":
            return f"Quote string values: '{value}'."
        if name == "NUMBER" and "NUMBER" not in accepts:
            return f"IN lists hold quoted strings: IN ('{value}')."
        if name not in _VALUE_TERMINALS and "NUMBER" in accepts:
            return "Add a value after the operator, e.g. metrics.rmse < 0.3 or params.lr = '0.01'."
    if name in _VALUE_TERMINALS and accepts & {"NAME", "BQ_NAME"}:
        return "Put the identifier on the left, e.g. metrics.accuracy > 0.9."
    if name in _VALUE_TERMINALS and "COMMA" in accepts:
        return "Separate list items with commas: IN ('a', 'b')."
    if accepts and accepts <= {"NULL", "NOT"}:
        return "After IS write NULL or NOT NULL; to compare with a value use '='."
    if accepts and accepts <= {"LIKE", "ILIKE", "IN"}:
        return (
            "NOT here must be followed by LIKE, ILIKE or IN; for 'not equal' use '!=' or put NOT before the condition."
        )
    if accepts & {"AND", "OR"} and name in ("NAME", "BQ_NAME", "NOT", "LPAR", "MIN", "MAX", "LATEST"):
        return "Join conditions with AND or OR."
    if "RPAR" in accepts and unmatched_parens(text, position)[0]:
        opened = unmatched_parens(text, position)[0]
        return f"Close the '(' at column {line_and_column(text, opened[-1])[1]} with ')'."
    if name == "LPAR" and accepts & _COMPARATORS:
        return "Only MIN(...), MAX(...) and LATEST(...) take parentheses after a name; there are no other functions."
    if name == "DOT":
        return "Write the key right after the prefix (metrics.rmse); quote keys with spaces or dots: tags.`a b`."
    return None


def line_and_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of a 0-based character position."""
    position = max(0, min(position, len(text)))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return line, column


def caret_excerpt(text: str, position: int, end: int | None = None) -> str:
    """The line holding ``position``, with ``^`` under ``[position, end)`` (cut to a window)."""
    position = max(0, min(position, len(text)))
    start = text.rfind("\n", 0, position) + 1
    stop = text.find("\n", position)
    stop = len(text) if stop < 0 else stop
    lo, hi = max(start, position - _WINDOW), min(stop, position + _WINDOW)
    prefix = "..." if lo > start else ""
    suffix = "..." if hi < stop else ""
    # Tabs and other control characters would shift the caret: show them as one space each.
    shown = "".join(" " if ch < " " or ch == "\x7f" else ch for ch in text[lo:hi])
    width = 1 if end is None else max(1, min(end, hi) - position)
    caret = " " * (len(prefix) + position - lo) + "^" * width
    return f"  {prefix}{shown}{suffix}\n  {caret}"


class SearchSyntaxError(InvalidArgument):
    """A filter or order_by entry that cannot be parsed or breaks a search rule.

    ``to_dict()`` gives ``error``, ``message`` (with the caret excerpt), ``problem`` (one line),
    ``text``, ``position`` (0-based), ``line`` and ``column`` (1-based), ``expected`` (words)
    and ``hint`` (or None).
    """

    def __init__(
        self,
        problem: str,
        *,
        text: str,
        position: int,
        end: int | None = None,
        expected: Iterable[str] = (),
        hint: str | None = None,
    ) -> None:
        position = max(0, min(position, len(text)))
        line, column = line_and_column(text, position)
        expected = list(expected)
        where = f"line {line}, column {column}" if "\n" in text else f"column {column}"
        parts = [f"{problem} (at {where}):", caret_excerpt(text, position, end)]
        if expected:
            lead = "Expected" if len(expected) == 1 else "Expected one of"
            parts.append(f"{lead}: {', '.join(expected)}.")
        if hint:
            parts.append(f"Hint: {hint}")
        super().__init__(
            "\n".join(parts),
            problem=problem,
            text=text,
            position=position,
            line=line,
            column=column,
            expected=expected,
            hint=hint,
        )
        self.problem = problem
        self.text = text
        self.position = position
        self.line = line
        self.column = column
        self.expected = expected
        self.hint = hint
