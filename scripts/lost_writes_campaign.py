"""Lost-writes campaign: run a build, an add, a delete and a compact with ``os.fsync``
recorded, and at EVERY fsync point materialise what a power cut would leave (folders as
last synced, files with the bytes of their last fsync, unsynced data dropped); each image
must open as the index before or after the operation (a first build: as incomplete),
never corrupt, never a different answer. Prints counts per operation; exits 1 on a
failure.

    .venv/bin/python scripts/lost_writes_campaign.py
    .venv/bin/python scripts/lost_writes_campaign.py --ops add,compact --every 3

The images are those of ``tests/indexing/test_lost_writes.py``
(tests/fixtures/lost_writes_lib.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _campaign import add_ops_option, parse_ops, print_counts

# isort: split
import lost_writes_lib as lw  # tests/fixtures, on the path through _campaign


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_ops_option(ap, lw.OPERATIONS)
    ap.add_argument("--every", type=int, default=1, help="check every n-th fsync point")
    args = ap.parse_args()
    ops = parse_ops(ap, args.ops, lw.OPERATIONS)
    counts: dict[str, Counter[str]] = {}
    failed = 0
    with tempfile.TemporaryDirectory(prefix="mvr-lost-") as tmp:
        setup = lw.prepare(Path(tmp) / "setup")
        for op in ops:
            images, subdir = lw.run_operation(setup, op, Path(tmp))
            counts[op] = Counter()
            points = sorted({*range(0, len(images), args.every), len(images) - 1})
            print(f"{op}: {len(images)} fsync points, checking {len(points)}", flush=True)
            for i in points:
                c = lw.check_image(setup, op, i, *images[i], Path(tmp), subdir)
                counts[op][c.outcome] += 1
                if c.outcome == "FAILED":
                    failed += 1
                    print(f"  FAILED at fsync {i} ({c.synced}): {c.detail}", flush=True)
    print_counts(counts, ("before", "after", "incomplete", "FAILED"), "images", width=11)
    print(f"\n{failed} failed image(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
