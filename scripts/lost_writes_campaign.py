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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
import lost_writes_lib as lw  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", default=",".join(lw.OPERATIONS))
    ap.add_argument("--every", type=int, default=1, help="check every n-th fsync point")
    args = ap.parse_args()
    ops = [o for o in args.ops.split(",") if o]
    bad = sorted(set(ops) - set(lw.OPERATIONS))
    if bad:
        ap.error(f"--ops: expected names of {lw.OPERATIONS}, got {bad}")
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
    kinds = ("before", "after", "incomplete", "FAILED")
    print(f"\n{'operation':<10}" + "".join(f"{k:>11}" for k in kinds) + f"{'images':>9}")
    for op, c in counts.items():
        print(f"{op:<10}" + "".join(f"{c[k]:>11}" for k in kinds) + f"{sum(c.values()):>9}")
    print(f"\n{failed} failed image(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
