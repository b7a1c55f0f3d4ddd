"""SIGKILL campaign: kill real ``mvr index`` / ``IndexWriter.add`` / ``delete`` /
``compact`` subprocesses at random (seeded) moments and check every time that the index
answers exactly as before the operation or as after it, or that ``mvr index --resume``
completes the interrupted build. Prints the outcome counts per operation; exits 1 if a
trial failed (each failure is printed with its kill time and error).

``--at time`` draws a delay over the operation's duration; ``--at syscall`` (needs
strace) kills at one of the operation's writing system calls (write, fsync, rename,
unlink, truncate, mkdir, ...), drawn from those a traced run made.

    .venv/bin/python scripts/crash_campaign.py --trials 30
    .venv/bin/python scripts/crash_campaign.py --trials 5 --ops add,compact --seed 7
    .venv/bin/python scripts/crash_campaign.py --trials 30 --ops add,delete,compact --at syscall

The trials are those of ``tests/indexing/test_crash_kill.py`` (tests/fixtures/crash_lib.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from _campaign import add_ops_option, parse_ops, print_counts

# isort: split
import crash_lib  # tests/fixtures, on the path through _campaign


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=30, help="kill trials per operation")
    add_ops_option(ap, crash_lib.OPERATIONS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--at", choices=crash_lib.KILL_AT, default="time",
                    help="kill at a random time, or at a random writing system call")
    args = ap.parse_args()
    ops = parse_ops(ap, args.ops, crash_lib.OPERATIONS)
    rng = np.random.default_rng(args.seed)
    counts: dict[str, Counter[str]] = {}
    failures = []
    with tempfile.TemporaryDirectory(prefix="mvr-crash-") as tmp:
        setup = crash_lib.prepare(Path(tmp), ops, args.at)
        for op in ops:
            calls = (f", {len(setup.calls[op])} writing system calls" if args.at == "syscall"
                     else "")
            print(f"{op}: {args.trials} trials, the operation takes {setup.seconds[op]:.2f} s"
                  f"{calls}", flush=True)
            counts[op] = Counter()
            for n in range(args.trials):
                outcome, detail = crash_lib.trial(setup, op, rng, n, args.at)
                counts[op][outcome] += 1
                counts[op]["killed"] += detail.startswith("killed")
                if outcome == "FAILED":
                    failures.append(f"{op} trial {n}: {detail}")
                    print(f"  FAILED trial {n}: {detail}", flush=True)
    print_counts(counts, ("killed", "before", "after", "resumed", "FAILED"), "trials",
                 total=lambda c: sum(c.values()) - c["killed"])
    print(f"\n{len(failures)} failed trial(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
