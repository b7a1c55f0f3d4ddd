"""Warnings of a long stage, held back while its progress bar runs and summarised once.

An encoder logs one warning per ``encode_documents`` call ("164 of 256 documents
exceeded 256 tokens and were truncated"); an index build makes one call per batch,
so a plain log would print dozens of such lines between redraws of the bar.
:func:`summarised_warnings` collects them for the length of a stage and logs one
line per kind when it ends::

    with summarised_warnings("encoders"):
        build_index(...)              # its bar closes before the summary is logged
    # -> "1,234 of 5,432 documents exceeded 256 tokens and were truncated"

A record whose ``extra`` holds :data:`SUMMABLE` (the positions of its count
arguments, which must be its first ``%d`` placeholders) is added up with the
records of the same message and other arguments;
any other repeated message is logged once, with "(N times)".
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SUMMABLE", "WarningCollector", "stage_messages", "summarised_warnings"]

SUMMABLE = "mvr_summable"  # extra={SUMMABLE: (0, 1)}: args 0 and 1 are counts to add up


@dataclass
class _Group:
    name: str
    level: int
    msg: str
    args: list[Any]
    summable: tuple[int, ...]
    times: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class WarningCollector(logging.Filter):
    """A logger filter that takes WARNING-and-above records out of the stream, grouped.

    Records below WARNING pass through untouched.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._groups: dict[tuple[Any, ...], _Group] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        summable = tuple(getattr(record, SUMMABLE, None) or ())
        args = list(record.args) if isinstance(record.args, tuple) else []
        if summable and args and all(i < len(args) for i in summable):
            fixed = tuple(repr(a) for i, a in enumerate(args) if i not in summable)
            key: tuple[Any, ...] = (record.name, record.levelno, str(record.msg), fixed)
        else:
            summable = ()
            key = (record.name, record.levelno, record.getMessage())
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                self._groups[key] = _Group(record.name, record.levelno, str(record.msg), args,
                                           summable)
            else:
                group.times += 1
                for i in summable:
                    group.args[i] += args[i]
        return False

    @property
    def count(self) -> int:
        """Records collected so far."""
        with self._lock:
            return sum(g.times for g in self._groups.values())

    def summary(self) -> list[tuple[str, int, str]]:
        """``(logger name, level, message)`` per group, in first-seen order; counts are
        added up (``1,234``), other repeats marked ``(N times)``."""
        out = []
        with self._lock:
            for g in self._groups.values():
                if g.summable:
                    args = [f"{a:,}" if i in g.summable else a for i, a in enumerate(g.args)]
                    text = _format(g.msg.replace("%d", "%s", len(g.summable)), args)
                else:
                    text = _format(g.msg, g.args)
                    if g.times > 1:
                        text += f" ({g.times} times)"
                out.append((g.name, g.level, text))
        return out


def _format(msg: str, args: list[Any]) -> str:
    try:
        return msg % tuple(args) if args else msg
    except (TypeError, ValueError):
        return f"{msg} {args}"


@contextlib.contextmanager
def summarised_warnings(*loggers: str) -> Iterator[WarningCollector]:
    """Hold back the warnings of ``loggers`` (default ``"encoders"``) during the block and
    log one summary line per kind when it ends (also when the block raises).

    Parameters
    ----------
    *loggers : str
        Names of the loggers whose WARNING-and-above records are collected (records
        of their child loggers are not).

    Yields
    ------
    WarningCollector
        ``summary()`` lists what will be logged.
    """
    names = loggers or ("encoders",)
    collector = WarningCollector()
    held = [logging.getLogger(n) for n in names]
    for lg in held:
        lg.addFilter(collector)
    try:
        yield collector
    finally:
        for lg in held:
            lg.removeFilter(collector)
        for name, level, text in collector.summary():
            logging.getLogger(name).log(level, "%s", text)


@contextlib.contextmanager
def stage_messages(encoder: Any = None, *loggers: str) -> Iterator[WarningCollector]:
    """For one long stage with its own bar (a build, an ``add``): the encoder's per-call
    bars off (``encoder.progress`` set False for the block when it has one) and its
    warnings summarised once at the end (:func:`summarised_warnings`).

    Enter it before the stage's bar, so that the summary is logged after the bar closes.
    """
    had = isinstance(getattr(encoder, "progress", None), bool)
    before = encoder.progress if had else None
    if had:
        encoder.progress = False
    try:
        with summarised_warnings(*(loggers or ("encoders",))) as collector:
            yield collector
    finally:
        if had:
            encoder.progress = before
