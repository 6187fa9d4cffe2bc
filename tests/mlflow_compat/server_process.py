"""Start ``runlake server`` as a real process on a free port, and stop it."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tests.conftest import RUNLAKE


@dataclass
class Server:
    url: str
    startup: str
    process: subprocess.Popen


@contextlib.contextmanager
def running_server(lake: str, *extra: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``runlake server --lake LAKE --port 0 ...``, yielded once it prints where it listens."""
    environment = {**os.environ, "RUNLAKE_FLUSH_INTERVAL": "0.2", **(env or {})}
    environment.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [RUNLAKE, "server", "--lake", lake, "--port", "0", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        deadline = time.monotonic() + 120
        lines = []
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                raise AssertionError(f"runlake server exited: {''.join(lines)}")
            lines.append(line)
            found = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
            if found:
                break
        else:
            raise AssertionError("runlake server did not start")
        yield Server(found.group(1), line, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
