"""Starting a ``mvr serve`` child process, waiting for it to listen (the one readiness
loop) and stopping it.

Used by the tests and scripts that start a real server (``scripts/load_test.py``,
``tests/serving/test_http_*.py``); it lives in ``serving`` because scripts must not
import tests and ``serving`` is the top floor both may import.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["start_serve", "stop_serve", "wait_for_port"]


def start_serve(
    args: Sequence[str], *, prefix: Sequence[str] = (), host: str = "127.0.0.1",
    timeout: float = 120, cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
    new_session: bool = False,
) -> tuple[subprocess.Popen[str], int, list[str]]:
    """Run ``python -m mvr.cli serve *args --host host --port 0`` and wait until it listens.

    Parameters
    ----------
    args : sequence of str
        The index folder and options of ``mvr serve``.
    prefix : sequence of str
        A command that runs the server (``strace ...``); with it, pass ``new_session`` so
        that :func:`stop_serve` signals the server too, not only the prefix.
    timeout : float
        Seconds to wait for the port.

    Returns
    -------
    (Popen, int, list of str)
        The process (stdout and stderr merged, text), its port, the lines read so far.

    Raises
    ------
    RuntimeError
        The server exited or did not listen within ``timeout`` (it is killed); the message
        holds its output.
    """
    cmd = [*prefix, sys.executable, "-m", "mvr.cli", "serve", *args, "--host", host,
           "--port", "0"]
    proc = subprocess.Popen(cmd, cwd=cwd, env=None if env is None else dict(env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=new_session)
    port, lines = wait_for_port(proc, timeout=timeout, host=host)
    if port is not None:
        return proc, port, lines
    _signal(proc, signal.SIGKILL, new_session)
    out, _ = proc.communicate(timeout=30)
    raise RuntimeError(f"mvr serve did not start within {timeout} s (exit status "
                       f"{proc.returncode}):\n" + "".join(lines) + (out or ""))


def stop_serve(proc: subprocess.Popen[str], timeout: float = 60, new_session: bool = False
               ) -> str:
    """SIGTERM the server (its whole session with ``new_session``) and return the rest of
    its output; SIGKILL it if it has not exited after ``timeout`` seconds."""
    _signal(proc, signal.SIGTERM, new_session)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal(proc, signal.SIGKILL, new_session)
        out, _ = proc.communicate(timeout=30)
    return out or ""


def _signal(proc: subprocess.Popen[str], sig: int, new_session: bool) -> None:
    try:
        if new_session:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:  # already gone
        pass


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
