"""Readers never see a writer's commits half-way: ``Searcher.open`` + search in a loop
while another process deletes, compacts and adds in a loop (each commit unlinks the
files of the previous snapshot). Zero failures; searchers opened before keep serving
their snapshot."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import clustered_docs, queries_like, small_config  # noqa: E402

from indexing import build_index  # noqa: E402
from mvr._manifest import read_manifest  # noqa: E402
from serving import Searcher  # noqa: E402

_WRITER = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import numpy as np
from index_testlib import clustered_docs
from indexing import IndexWriter

path, stop = Path(sys.argv[1]), Path(sys.argv[2])
docs = dict(clustered_docs(120, seed=4))
rng = np.random.default_rng(0)
commits = 0
while not stop.exists():
    with IndexWriter(path, timeout=30) as w:
        gone = [f"doc-{i}" for i in rng.choice(120, size=20, replace=False)]
        w.delete(gone)
        w.compact()
        w.add([(g, docs[g]) for g in gone])
        commits += 3
print(commits, flush=True)
"""


def test_open_and_search_while_another_process_compacts(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    docs = clustered_docs(120, seed=4)
    build_index(path, docs, None, small_config(batch_size=32), progress=False)
    q = queries_like(docs, 3)
    modes = ("memory", "mmap", "ssd")
    old = {m: Searcher.open(path, mode=m) for m in modes}
    before = {m: s.search(q, k=5).ids for m, s in old.items()}
    stop = tmp_path / "stop"
    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(stop), str(root / "tests" / "fixtures")],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    failures: list[str] = []
    rounds = 0
    generations = set()
    try:
        start_gen = read_manifest(path)["generation"]
        t_end = time.monotonic() + 60
        while read_manifest(path)["generation"] == start_gen:  # the writer has started
            assert writer.poll() is None and time.monotonic() < t_end, writer.communicate()
            time.sleep(0.05)
        t0 = time.monotonic()
        # >= 10 s and >= 6 commits of the writer (a loaded machine commits slowly), <= 60 s
        while time.monotonic() - t0 < 60 and (
            time.monotonic() - t0 < 10 or read_manifest(path)["generation"] - start_gen < 6
        ):
            mode = modes[rounds % 3]
            try:
                with Searcher.open(path, mode=mode, verify=rounds % 2 == 0) as s:
                    generations.add(s.manifest["generation"])
                    res = s.search(q, k=5)
                    assert all(len(ids) == 5 for ids in res.ids)
                    assert s.get_texts(res.ids[0]) == [None] * 5
            except Exception as e:  # counted: the assertion below lists them
                failures.append(f"{mode}: {type(e).__name__}: {e}")
            rounds += 1
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert failures == [], f"{len(failures)} of {rounds} rounds failed: {failures[:5]}"
    assert rounds >= 5 and len(generations) >= 2, (rounds, generations)
    assert int(out.split()[-1]) >= 3
    for m, s in old.items():  # their files were unlinked long ago; handles and maps hold
        assert s.search(q, k=5).ids == before[m]
        assert s.store.get(np.arange(3)).total_tokens > 0
        s.close()
