"""What every ``mvr`` command shares: ``--verbose`` / ``--quiet`` and how messages print.

Messages go to stderr as ``warning: ...`` (results go to stdout). ``-q`` keeps errors
only and turns progress bars off; ``-v`` adds informational messages, ``-vv`` debug
ones. Only typer and the standard library are imported here (``mvr --help`` stays fast).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Annotated

import typer

__all__ = ["Quiet", "Verbose", "console_logging", "LOGGERS"]

# the loggers of the stage packages (third-party loggers keep Python's defaults)
LOGGERS = ("mvr", "encoders", "indexing", "serving")

Quiet = Annotated[bool, typer.Option(
    "--quiet", "-q", help="Errors only: no progress bars, no warnings.")]
Verbose = Annotated[int, typer.Option(
    "--verbose", "-v", count=True, help="More messages (-v: info, -vv: debug).")]


class _Lowercase(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


@contextlib.contextmanager
def console_logging(verbose: int = 0, quiet: bool = False) -> Iterator[int]:
    """During a command: send the stage packages' messages to stderr at the level the
    flags ask for; restore the loggers afterwards (so that one process can run many
    commands, as tests do). Yields the level set.
    """
    level = (logging.ERROR if quiet else logging.WARNING if verbose <= 0
             else logging.INFO if verbose == 1 else logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lowercase())
    saved = []
    for name in LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level, lg.propagate))
        lg.addHandler(handler)
        lg.setLevel(level)
        lg.propagate = False
    try:
        yield level
    finally:
        for lg, old_level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(old_level)
            lg.propagate = propagate
