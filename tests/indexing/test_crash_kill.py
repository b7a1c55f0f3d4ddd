"""SIGKILL at random moments (seeded) of a real ``mvr index`` and of ``IndexWriter.add``,
``delete`` and ``compact`` subprocesses: the index then answers exactly as before the
operation or as after it, or ``mvr index --resume`` completes the build; never an error.
The moment is a random time, or (with strace) a random one of the operation's writing
system calls. ``scripts/crash_campaign.py`` runs the same trials by the dozen."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
import crash_lib  # noqa: E402

TRIALS = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> crash_lib.Setup:
    at = "syscall" if crash_lib.STRACE is not None else "time"  # counts the calls too
    return crash_lib.prepare(tmp_path_factory.mktemp("crash"), at=at)


@pytest.mark.slow
@pytest.mark.parametrize("op", crash_lib.OPERATIONS)
def test_sigkill_leaves_before_after_or_resumable(setup: crash_lib.Setup, op: str) -> None:
    if op != "compact":  # compacting keeps the answers; the others change them
        assert setup.before[op] != setup.after[op]
    rng = np.random.default_rng(["build", "add", "delete", "compact"].index(op))
    results = [crash_lib.trial(setup, op, rng, n) for n in range(TRIALS)]
    failed = [d for outcome, d in results if outcome == "FAILED"]
    assert not failed, failed


@pytest.mark.slow
@pytest.mark.parametrize("op", crash_lib.OPERATIONS)
def test_sigkill_at_a_writing_syscall(setup: crash_lib.Setup, op: str) -> None:
    if crash_lib.STRACE is None:
        pytest.skip("strace not installed (make test installs it)")
    assert setup.calls[op], f"{op}: expected writing system calls, strace saw none"
    rng = np.random.default_rng(10 + crash_lib.OPERATIONS.index(op))
    results = [crash_lib.trial(setup, op, rng, n, at="syscall") for n in range(2)]
    failed = [d for outcome, d in results if outcome == "FAILED"]
    assert not failed, failed
    assert all(d.startswith("killed") for _, d in results), results  # strace killed each
