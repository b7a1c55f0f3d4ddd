"""``summarised_warnings``: per-batch warnings held back during a stage, summed once."""

from __future__ import annotations

import logging

import pytest

from mvr._progress import SUMMABLE, summarised_warnings


def _truncation(log: logging.Logger, truncated: int, total: int) -> None:
    log.warning("%d of %d %s exceeded %d tokens and were truncated", truncated, total,
                "documents", 256, extra={SUMMABLE: (0, 1)})


def test_counts_are_summed_and_logged_once_after_the_block(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("mvr-test-enc")
    caplog.set_level(logging.INFO)
    with summarised_warnings("mvr-test-enc") as collector:
        for truncated in (164, 200, 900):
            _truncation(log, truncated, 1000 if truncated == 900 else 256)
        log.warning("disk is slow")
        log.warning("disk is slow")
        log.info("a note passes through")
        assert [r.getMessage() for r in caplog.records] == ["a note passes through"]
        assert collector.count == 5
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "a note passes through",
        "1,264 of 1,512 documents exceeded 256 tokens and were truncated",
        "disk is slow (2 times)",
    ]
    # after the block the logger is as before
    log.warning("after")
    assert caplog.records[-1].getMessage() == "after"


def test_other_arguments_are_kept_apart_and_summary_survives_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("mvr-test-enc2")
    with pytest.raises(RuntimeError), summarised_warnings("mvr-test-enc2"):
        _truncation(log, 3, 10)
        log.warning("%d of %d %s exceeded %d tokens and were truncated", 1, 4, "queries", 64,
                    extra={SUMMABLE: (0, 1)})
        raise RuntimeError("stage failed")
    assert [r.getMessage() for r in caplog.records] == [
        "3 of 10 documents exceeded 256 tokens and were truncated",
        "1 of 4 queries exceeded 64 tokens and were truncated",
    ]
