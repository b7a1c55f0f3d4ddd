"""Concurrency campaign: reader threads (long-lived searchers, reopened every 10 rounds)
and reader processes (a fresh open per round, memory / mmap / ssd in turn) search while a
writer process deletes, compacts and adds in a loop. Every search (plain, filtered and
BM25) must succeed and answer exactly what its snapshot's generation answered when it
was committed. Prints the counts; exits 1 on a failure.

    .venv/bin/python scripts/race_campaign.py --seconds 60 --processes 2 --threads 4
    .venv/bin/python scripts/race_campaign.py --seconds 5

The race is that of ``tests/serving/test_searcher_race.py`` (tests/fixtures/race_lib.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
import race_lib  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mvr-race-") as tmp:
        r = race_lib.run(Path(tmp), args.seconds, args.processes, args.threads)
    print(f"{args.seconds:.0f} s: {r['searches']} searches ({r['by_reader']['thread']} in "
          f"{args.threads} threads, {r['by_reader']['process']} in {args.processes} processes), "
          f"{r['commits']} commits, {r['generations_seen']} generations seen by readers, "
          f"{r['late_first_use']} first filtered/BM25 uses after a compaction retired the "
          f"snapshot's segments, {len(r['failures'])} failed")
    for f in r["failures"][:20]:
        print(f"  FAILED {f}")
    return 1 if r["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
