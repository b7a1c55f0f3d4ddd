"""A power cut that drops every write not yet fsynced, at every fsync point of a build,
an add, a delete and a compact (a seeded sample of the points here; every point in
``scripts/lost_writes_campaign.py``): the index left on disk opens as before or as after
the operation (a first build: refused as incomplete, for ``--resume``), never corrupt,
never a different answer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
import lost_writes_lib as lw  # noqa: E402

POINTS = 4  # crash images checked per operation, always including the last two


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return lw.prepare(tmp_path_factory.mktemp("lost"))


@pytest.mark.slow
@pytest.mark.parametrize("op", lw.OPERATIONS)
def test_only_synced_state_survives_and_it_is_consistent(setup, tmp_path: Path, op: str) -> None:  # type: ignore[no-untyped-def]
    images, subdir = lw.run_operation(setup, op, tmp_path)
    assert len(images) >= 3, "an operation that fsyncs almost nothing"
    rng = np.random.default_rng(lw.OPERATIONS.index(op))
    n = len(images)
    picks = sorted({n - 1, n - 2, *rng.choice(n, size=min(POINTS - 2, n), replace=False)})
    checks = [lw.check_image(setup, op, i, *images[i], tmp_path, subdir) for i in picks]
    failed = [c for c in checks if c.outcome == "FAILED"]
    assert not failed, failed
    assert checks[-1].outcome == "after"  # the last fsync (the manifest's folder) commits
