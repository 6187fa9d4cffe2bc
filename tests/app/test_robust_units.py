"""Small pieces that keep odd data harmless: display text, figure escaping, ids, hosts, changes."""

from __future__ import annotations

import errno

import pytest

from runlake.app.settings import Settings
from runlake.app.web import hosts, ids
from runlake.app.web.formatting import display_text, escape_figure, format_time, neutralise, plot_text
from runlake.app.web.grid import page_request
from runlake.app.web.services import LakeReadOnly, Services
from runlake.core.errors import InvalidArgument, RunlakeError


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("normal\u202egnp.exe", "normal<U+202E>gnp.exe"),
        ("a\u2066b\u2069c", "a<U+2066>b<U+2069>c"),
        ("zero\u200bwidth", "zero<U+200B>width"),
        ("nul\x00here", "nul\u2400here"),
        ("tab\tand\nline", "tab\tand\nline"),
        ("équipe café 日本", "équipe café 日本"),
    ],
    ids=["rlo", "isolates", "zero-width", "nul", "whitespace-kept", "non-ascii-kept"],
)
def test_rl_u01_neutralise_makes_hidden_characters_visible(raw, shown):
    assert neutralise(raw) == shown


def test_rl_u02_display_text_cuts_long_values():
    assert display_text("x" * 300, 120) == "x" * 119 + "…"
    assert display_text(None) == ""
    assert display_text("short", 120) == "short"


def test_rl_u03_plot_text_leaves_no_markup():
    assert plot_text('<a href="x">y</a>') == '&lt;a href="x"&gt;y&lt;/a&gt;'
    assert len(plot_text("z" * 500)) == 60


def test_rl_u04_escape_figure_escapes_every_string_but_its_own_simple_tags():
    figure = {
        "data": [
            {
                "type": "scatter",
                "name": "<span style='font-size:200px'>BIG</span>",
                "text": ["<a href='https://evil.example'>x</a>"],
                "hovertemplate": "%{text}<br>lr=%{x}<extra></extra>",
            },
            {"type": "parcoords", "dimensions": [{"label": "<b>ok</b><a href='x'>k</a>", "ticktext": ["<i>"]}]},
        ],
        "layout": {"title": {"text": "<a href='https://evil.example'>t</a>"}, "xaxis": {"ticktext": ["c" * 500]}},
    }
    out = escape_figure(figure)
    scatter, parcoords = out["data"]
    assert scatter["name"].startswith("&lt;span style=")
    assert scatter["text"] == ["&lt;a href='https://evil.example'&gt;x&lt;/a&gt;"]
    assert scatter["hovertemplate"] == "%{text}<br>lr=%{x}<extra></extra>"
    assert parcoords["dimensions"][0]["label"] == "<b>ok</b>\u2039a href='x'\u203ak\u2039/a\u203a"
    assert out["layout"]["title"]["text"].startswith("&lt;a href")
    assert len(out["layout"]["xaxis"]["ticktext"][0]) == 60
    assert "<a" not in str(out) and "<span" not in str(out)
    assert escape_figure("not a figure") == {"data": [], "layout": {}}


def test_rl_u05_format_time_reads_numpy_integers_as_milliseconds():
    import numpy as np

    assert format_time(np.int64(1_767_225_600_000)) == "2026-01-01 00:00:00"
    assert format_time(1_767_225_600_000.0) == "2026-01-01 00:00:00"


@pytest.mark.parametrize("text", ["équipe", "café.txt", "a.b", "x'\"y", "{}[]", "日本/語.txt", "", "\x00"])
def test_rl_u06_pattern_id_keys_round_trip(text):
    token = ids.encode_key(text)
    assert token.isascii() and all(c.isalnum() or c in "-_" for c in token)
    assert ids.decode_key(token) == text


@pytest.mark.parametrize("token", [None, 5, "plain", "k!!!", "k\u00e9", ["k"]])
def test_rl_u07_forged_pattern_ids_decode_to_none(token):
    assert ids.decode_key(token) is None


@pytest.mark.parametrize(
    "header, ok",
    [
        ("localhost", True),
        ("localhost:8050", True),
        ("127.0.0.1:1", True),
        ("127.255.0.3", True),
        ("[::1]:8050", True),
        ("app.localhost", True),
        ("evil.example.com", False),
        ("localhost.evil.example.com", False),
        ("127.0.0.1.evil", False),
        ("", False),
        (None, False),
    ],
)
def test_rl_u08_host_check(header, ok):
    assert hosts.allowed(header) is ok


@pytest.mark.parametrize(
    "request_value",
    [
        "x",
        {"startRow": "abc"},
        {"startRow": True},
        {"endRow": 1.5},
        {"startRow": -1},
        {"startRow": 2**60},
        {"sortModel": "x"},
        {"sortModel": [{"colId": 5, "sort": "asc"}]},
        {"sortModel": [{"colId": "run_name", "sort": "up"}]},
    ],
)
def test_rl_u09_grid_requests_are_typed(request_value):
    with pytest.raises(InvalidArgument):
        page_request(request_value)


def test_rl_u10_grid_request_defaults_and_floats():
    assert page_request(None).offset == 0
    block = page_request({"startRow": 100.0, "endRow": 200.0, "sortModel": None})
    assert (block.offset, block.size) == (100, 100)


class _Lake:
    root = "/x"

    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc
        self.calls = 0

    def rename_run(self, run_id: str, name: str) -> None:
        self.calls += 1
        if self.exc is not None:
            raise self.exc


@pytest.mark.parametrize(
    "exc, kind, text",
    [
        (PermissionError(errno.EACCES, "Permission denied"), LakeReadOnly, "read-only"),
        (OSError(errno.EROFS, "Read-only file system"), LakeReadOnly, "read-only"),
        (OSError(errno.ENOSPC, "No space left on device"), RunlakeError, "Could not write"),
    ],
)
def test_rl_u11_write_failures_become_messages(exc, kind, text):
    lake = _Lake(exc)
    services = Services(lake, Settings(lake="/x"))  # type: ignore[arg-type]
    with pytest.raises(kind) as raised:
        services.change(lake.rename_run, "r", "n")
    assert text in raised.value.message


def test_rl_u12_read_only_dashboard_refuses_before_touching_the_lake():
    lake = _Lake(None)
    services = Services(lake, Settings(lake="/x", read_only=True))  # type: ignore[arg-type]
    with pytest.raises(LakeReadOnly, match="--read-only"):
        services.change(lake.rename_run, "r", "n")
    assert lake.calls == 0
