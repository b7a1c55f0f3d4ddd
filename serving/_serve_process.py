"""Waiting for a ``mvr serve`` child process to listen: the one readiness loop.

Used by the tests and scripts that start a real server (``scripts/load_test.py``,
``tests/serving/test_http_*.py``); it lives in ``serving`` because scripts must not
import tests and ``serving`` is the top floor both may import.
"""

from __future__ import annotations

import re
import subprocess
import time

__all__ = ["wait_for_port"]


def wait_for_port(
    proc: subprocess.Popen[str], timeout: float = 120, host: str = "127.0.0.1"
) -> tuple[int | None, list[str]]:
    """Read the server's output until uvicorn reports its port on ``host``.

    Parameters
    ----------
    proc : subprocess.Popen
        Started with ``stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True``.
    timeout : float
        Seconds before giving up (checked after each line).
    host : str
        The address uvicorn was told to bind.

    Returns
    -------
    (int or None, list of str)
        The port (``None`` when the output ended or ``timeout`` passed first) and the
        lines read, for the error message.
    """
    if proc.stdout is None:
        raise ValueError("wait_for_port needs proc started with stdout=subprocess.PIPE")
    ready = re.compile(rf"Uvicorn running on http://{re.escape(host)}:(\d+)")
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = ready.search(line)
        if m:
            return int(m.group(1)), lines
    return None, lines
