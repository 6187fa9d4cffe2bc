"""The real server: `python -m runlake.app.web.server` in a subprocess answers, then stops."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from runlake.app.web.server import assets_folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status, response.read().decode("utf-8", errors="replace")


@pytest.mark.slow
def test_server_starts_answers_and_stops(demo_lake):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runlake.app.web.server", "--lake", demo_lake, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        status, body = 0, ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                time.sleep(0.2)  # polling a subprocess, not waiting on browser state
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert status == 200 and "runlake" in body
        assert _get(f"http://127.0.0.1:{port}/assets/runlake.css")[0] == 200
        assert 'rel="icon"' in body and "/assets/favicon.ico" in body  # ours, not Dash's default
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/assets/favicon.ico", timeout=2) as response:
            assert response.read() == (Path(assets_folder()) / "favicon.ico").read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode is not None
