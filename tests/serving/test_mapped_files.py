"""A searcher that maps index files keeps serving its snapshot while a writer deletes,
compacts and adds: writers never truncate or rewrite a committed file in place (they
write new segments and temporary names, then unlink), so no page a reader has mapped
can vanish under it (a SIGBUS). Real processes: a reader in ``mode="mmap"`` with the
metadata and BM25 loaded, and a writer process that compacts twice, retiring every
file the reader opened.

The reader also reports which index files it has mapped (``/proc/self/maps``): only
the token table (``mmap`` mode, by choice) and the BM25 arrays (bm25s maps them) may
be; everything else is read into RAM. README "Crashes, faults and concurrency" says
what is guaranteed and what remains exposed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import clustered_docs, small_config  # noqa: E402

REPO = Path(__file__).parents[2]
N_BASE, N_ADD = 120, 40

_READER = r"""
import json, os, sys
sys.path.insert(0, sys.argv[2])
import numpy as np
from index_testlib import clustered_docs, queries_like
from serving import Searcher
from serving._bm25 import index_bm25

root = os.path.realpath(sys.argv[1])
q = queries_like(clustered_docs(200, seed=5), 4, seed=9)

def answers(s):
    ex = s.exhaustive(q, k=len(s._id_to_row))  # every record of the snapshot is read
    flt = s.search(q, k=5, candidates=60, filter={"field": "odd", "eq": True})
    bm = index_bm25(s).scores("word3 shared text")
    return [ex.ids, np.round(ex.scores, 5).tolist(), flt.ids,
            np.round(bm, 5).tolist(), s.get_texts(sorted(s._id_to_row)[:8])]

def mapped():
    out = {}
    for line in open("/proc/self/maps"):
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].strip().startswith(root + "/"):
            out[parts[5].strip()] = int(parts[4])
    return out

with Searcher.open(sys.argv[1], mode="mmap") as s:
    first = answers(s)
    maps = mapped()
    fds = {p: os.open(p, os.O_RDONLY) for p in maps}  # the mapped inodes, to fstat later
    sizes = {p: os.fstat(fd).st_size for p, fd in fds.items()}
    print(json.dumps({"generation": s.manifest["generation"],
                      "mapped": sorted(os.path.relpath(p, root) for p in maps)}), flush=True)
    sys.stdin.readline()  # the writer has run
    again = answers(s)
    after = {p: os.fstat(fd).st_size for p, fd in fds.items()}
    print(json.dumps({"same_answers": again == first,
                      "resized": {os.path.relpath(p, root): [sizes[p], after[p]]
                                  for p in sizes if after[p] != sizes[p]},
                      "unlinked": sum(os.fstat(fd).st_nlink == 0 for fd in fds.values())}),
          flush=True)
"""

_WRITER = r"""
import sys
sys.path.insert(0, sys.argv[2])
from index_testlib import clustered_docs
from indexing import IndexWriter
with IndexWriter(sys.argv[1]) as w:
    w.delete([f"doc-{i}" for i in range(0, 40, 3)])
    w.compact()
    w.add([{"id": f"new-{i}", "text": f"word{i % 5} shared text new", "vectors": v,
            "metadata": {"odd": bool(i % 2)}}
           for i, (_, v) in enumerate(clustered_docs(30, seed=77))])
    w.compact()
"""


def _docs(lo: int, hi: int) -> list[dict[str, object]]:
    return [{"id": d, "text": f"word{i % 7} shared text {i}", "vectors": v,
             "metadata": {"odd": bool(i % 2)}}
            for i, (d, v) in enumerate(clustered_docs(N_BASE + N_ADD, seed=5)) if lo <= i < hi]


@pytest.mark.slow
def test_compaction_never_truncates_what_a_reader_maps(tmp_path: Path) -> None:
    from indexing import IndexWriter, build_index

    idx = tmp_path / "idx"
    build_index(idx, _docs(0, N_BASE), None, small_config(batch_size=32), progress=False)
    with IndexWriter(idx) as w:  # two segments and tombstones before the reader opens
        w.add(_docs(N_BASE, N_BASE + N_ADD))
        w.delete(["doc-1", "doc-2"])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    fixtures = str(REPO / "tests" / "fixtures")
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(idx), fixtures], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert reader.stdin is not None and reader.stdout is not None
    line = reader.stdout.readline()
    if not line:
        raise AssertionError(f"reader failed to open: {reader.communicate()[1][-3000:]}")
    opened = json.loads(line)
    writer = subprocess.run([sys.executable, "-c", _WRITER, str(idx), fixtures], env=env,
                            capture_output=True, text=True, timeout=300)
    assert writer.returncode == 0, writer.stderr[-3000:]
    out, err = reader.communicate("go\n", timeout=300)
    assert reader.returncode == 0, f"reader died with {reader.returncode} (-7: SIGBUS): {err[-3000:]}"
    got = json.loads(out)

    assert opened["mapped"], "mode='mmap' maps the token table: nothing mapped means no test"
    allowed = {"tokens.bin", "data.csc.index.npy", "indices.csc.index.npy",
               "indptr.csc.index.npy"}
    assert {Path(p).name for p in opened["mapped"]} <= allowed, opened["mapped"]
    assert got["resized"] == {}, f"mapped files changed size under the reader: {got['resized']}"
    assert got["unlinked"] == len(opened["mapped"])  # every mapped file was retired...
    assert got["same_answers"]  # ...and the reader still answers from its snapshot
    from mvr._manifest import read_manifest

    assert read_manifest(idx)["generation"] == opened["generation"] + 4
