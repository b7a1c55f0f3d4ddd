"""SIGKILL at random moments (seeded) of a real ``mvr index`` and of ``IndexWriter.add``,
``delete`` and ``compact`` subprocesses: the index then answers exactly as before the
operation or as after it, or ``mvr index --resume`` completes the build; never an error.
``scripts/crash_campaign.py`` runs the same trials by the dozen."""

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
    return crash_lib.prepare(tmp_path_factory.mktemp("crash"))


@pytest.mark.slow
@pytest.mark.parametrize("op", crash_lib.OPERATIONS)
def test_sigkill_leaves_before_after_or_resumable(setup: crash_lib.Setup, op: str) -> None:
    if op != "compact":  # compacting keeps the answers; the others change them
        assert setup.before[op] != setup.after[op]
    rng = np.random.default_rng(["build", "add", "delete", "compact"].index(op))
    results = [crash_lib.trial(setup, op, rng, n) for n in range(TRIALS)]
    failed = [d for outcome, d in results if outcome == "FAILED"]
    assert not failed, failed
