"""Searches in threads and processes while a writer process deletes, compacts and adds:
zero failed searches, and every answer is the one its snapshot's generation gave when it
was committed. A few seconds here; ``scripts/race_campaign.py --seconds 60`` for long."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
import race_lib  # noqa: E402


@pytest.mark.slow
def test_readers_see_only_committed_snapshots(tmp_path: Path) -> None:
    r = race_lib.run(tmp_path, seconds=6, processes=1, threads=2)
    assert r["failures"] == [], r["failures"][:5]
    assert r["commits"] >= 2 and r["generations_seen"] >= 2, r
    assert r["by_reader"]["thread"] > 0 and r["by_reader"]["process"] > 0, r
