"""What the crash and lost-writes campaign scripts share: the test fixtures on
``sys.path`` (the trials live in ``tests/fixtures``), the ``--ops`` option and the table
of outcome counts per operation."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))


def add_ops_option(ap: argparse.ArgumentParser, known: Sequence[str]) -> None:
    ap.add_argument("--ops", default=",".join(known),
                    help=f"comma-separated, of {','.join(known)}")


def parse_ops(ap: argparse.ArgumentParser, value: str, known: Sequence[str]) -> tuple[str, ...]:
    """The operations of ``--ops``; an unknown name ends the script with a usage error."""
    ops = tuple(o for o in value.split(",") if o)
    unknown = sorted(set(ops) - set(known))
    if unknown:
        ap.error(f"--ops: expected names of {tuple(known)}, got {unknown}")
    return ops


def print_counts(counts: dict[str, Counter[str]], kinds: Sequence[str], total_name: str,
                 total: Callable[[Counter[str]], int] = lambda c: sum(c.values()),
                 width: int = 9) -> None:
    """One row per operation: the count of each outcome kind, then ``total_name``."""
    print(f"\n{'operation':<10}" + "".join(f"{k:>{width}}" for k in kinds) + f"{total_name:>9}")
    for op, c in counts.items():
        print(f"{op:<10}" + "".join(f"{c[k]:>{width}}" for k in kinds) + f"{total(c):>9}")
