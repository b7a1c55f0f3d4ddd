"""Corruption campaign: mutate one file of a small index per trial (truncate, zero,
bit-flip, delete, swap, garbage; every kind of file: manifest, codec, tombstones, tokens,
approximate codes, centroid ids, first stages, ids, lengths, texts, metadata, BM25,
checksums), open the copy with default settings in memory, mmap and ssd modes and search
it. Every trial must be refused with an MVRError naming the file, or answer exactly as the
intact index; prints the counts per file kind and mutation, exits 1 if a trial failed.

    .venv/bin/python scripts/corrupt_campaign.py --trials 240 --regime default,large
    .venv/bin/python scripts/corrupt_campaign.py --trials 12 --regime large --seed 3

``large`` treats every file as a large one (the default open then hashes only what it
reads whole; tables and texts are checked record by record as they are read). Trials run
in a worker process; one that dies (a segfault in a library reading a damaged file)
counts as FAILED and the worker is restarted at the next trial. The trials are those of
tests/fixtures/corrupt_lib.py (``plan``: every kind x mutation, round robin);
``tests/indexing/test_corruption.py`` runs one trial per kind of file (``cover``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "fixtures"), str(REPO)]


def _worker(args: argparse.Namespace) -> int:
    """Run trials ``args.start``.. of the plan, one JSON line each (``start`` first, so that
    the parent knows which one killed the worker)."""
    import corrupt_lib as cl
    import numpy as np

    intact, ref = Path(args.intact), {}
    files = cl.index_files(intact)
    pairs = cl.plan(files, args.trials, args.seed)
    for regime in args.regimes.split(","):
        with cl.regime(regime):
            ref[regime] = cl.reference(intact)
    jobs = [(r, p) for r in args.regimes.split(",") for p in pairs]
    for n in range(args.start, len(jobs)):
        regime, (rel, mutation) = jobs[n]
        print(json.dumps({"start": n}), flush=True)
        rng = np.random.default_rng([args.seed, n])
        with cl.regime(regime):
            t = cl.run_trial(intact, Path(args.work) / f"t{n}", ref[regime], rel, mutation, rng)
        print(json.dumps({"n": n, "regime": regime, "rel": t.rel, "kind": t.kind,
                          "mutation": t.mutation, "outcome": t.outcome, "detail": t.detail}),
              flush=True)
    print(json.dumps({"done": len(jobs)}), flush=True)
    return 0


def _run(args: argparse.Namespace, intact: Path, work: Path) -> list[dict]:
    results: list[dict] = []
    start = 0
    while True:
        cmd = [sys.executable, __file__, "--worker", "--intact", str(intact), "--work", str(work),
               "--trials", str(args.trials), "--seed", str(args.seed), "--regime", args.regimes,
               "--start", str(start)]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        current, done = None, False
        for line in proc.stdout:
            msg = json.loads(line)
            if "start" in msg:
                current = msg["start"]
            elif "done" in msg:
                done = True
            else:
                results.append(msg)
                current = None
                if msg["outcome"] == "FAILED":
                    print(f"  FAILED {msg['regime']} {msg['rel']} {msg['mutation']}: "
                          f"{msg['detail']}", flush=True)
                if len(results) % 25 == 0:
                    print(f"  {len(results)} trials", flush=True)
        rc = proc.wait()
        if done:
            return results
        if current is None:
            raise RuntimeError(f"campaign worker exited {rc} before its first trial")
        results.append({"n": current, "regime": "?", "rel": "?", "kind": "?", "mutation": "?",
                        "outcome": "FAILED", "detail": f"the worker died (exit {rc})"})
        print(f"  FAILED trial {current}: the worker died (exit {rc})", flush=True)
        start = current + 1


def _table(results: list[dict], key: str) -> None:
    outcomes = ("refused", "identical", "noop", "FAILED")
    rows: dict[str, Counter[str]] = {}
    for r in results:
        rows.setdefault(r[key], Counter())[r["outcome"]] += 1
    print(f"\n{key:<14}" + "".join(f"{o:>10}" for o in outcomes) + f"{'trials':>9}")
    for name in sorted(rows):
        c = rows[name]
        print(f"{name:<14}" + "".join(f"{c[o]:>10}" for o in outcomes) + f"{sum(c.values()):>9}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=240, help="mutated copies per regime")
    ap.add_argument("--regime", dest="regimes", default="default,large",
                    help="comma-separated, of default,large")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--intact", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return _worker(args)
    import corrupt_lib as cl

    bad = sorted(set(args.regimes.split(",")) - set(cl.REGIMES))
    if bad:
        ap.error(f"--regime: expected names of {cl.REGIMES}, got {bad}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mvr-corrupt-") as tmp:
        intact = cl.build(Path(tmp) / "intact")
        kinds = sorted({cl.file_kind(f) for f in cl.index_files(intact)})
        print(f"index: {len(cl.index_files(intact))} files of {len(kinds)} kinds ({', '.join(kinds)})",
              flush=True)
        results = _run(args, intact, Path(tmp) / "work")
    for regime in args.regimes.split(","):
        sub = [r for r in results if r["regime"] == regime]
        print(f"\n== regime {regime}: {len(sub)} trials")
        _table(sub, "kind")
        _table(sub, "mutation")
    failed = [r for r in results if r["outcome"] == "FAILED"]
    print(f"\n{len(results)} trials in {time.perf_counter() - t0:.0f} s, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
