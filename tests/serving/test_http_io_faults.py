"""EIO on the re-ranking table's reads while a real ``mvr serve --mode ssd`` is serving
(``strace -e inject=preadv:error=EIO`` on the running server's syscalls, for a window of
reads): the requests whose reads failed get 503 with a message naming the file and the
error; every other request, before and after, answers exactly as an unfaulted searcher.

``make test`` installs strace; without it (or where ptrace is not allowed) this skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import clustered_docs, queries_like, small_config  # noqa: E402

from serving._serve_process import start_serve, stop_serve  # noqa: E402

REPO = Path(__file__).parents[2]
STRACE = shutil.which("strace")
N_DOCS, CANDIDATES = 120, 40


def _serve(index: Path, fault_reads: str) -> tuple[subprocess.Popen[str], int]:
    assert STRACE is not None
    target = index / "segments" / "seg-000001" / "tokens.bin"
    calls = "preadv,pread64,preadv2"
    strace = [STRACE, "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", "-e", "signal=none",
              "-P", str(target), "-e", f"trace={calls}",
              "-e", f"inject={calls}:error=EIO:when={fault_reads}"]
    opts = [str(index), "--mode", "ssd", "--batch-window-ms", "1",
            "--store-options", json.dumps({"cache_bytes": 0, "prefetch": False,
                                           "read_threads": 2})]
    # strace and the server in one session: strace alone would detach and leave the server
    proc, port, _ = start_serve(opts, prefix=strace, cwd=REPO, new_session=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc, port


@pytest.mark.slow
def test_eio_on_reads_is_503_for_that_request_and_the_server_goes_on(tmp_path: Path) -> None:
    if STRACE is None:
        pytest.skip("strace not installed (make test installs it)")
    from indexing import build_index
    from serving import Searcher

    docs = clustered_docs(N_DOCS, seed=9)
    index = tmp_path / "idx"
    build_index(index, docs, None, small_config(batch_size=32, default_candidates=CANDIDATES),
                progress=False)
    queries = queries_like(docs, 10, seed=4)
    with Searcher.open(index) as s:
        expected = [s.search(queries[i : i + 1], k=5).ids[0] for i in range(len(queries))]
    # every search reads its candidates' records (no cache, no prefetch): 4 reads fail,
    # in the 2nd request or later, so one or two requests fail and the others must not
    first = CANDIDATES + 5
    proc, port = _serve(index, f"{first}..{first + 3}")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            statuses, bodies = [], []
            for i in range(len(queries)):
                q = queries[i]
                r = c.post("/search", json={"vectors": [q.tolist()], "k": 5,
                                            "return_texts": False})
                statuses.append(r.status_code)
                bodies.append(r.json())
            assert c.get("/health").status_code == 200
    finally:
        out = stop_serve(proc, new_session=True)
    failed = [i for i, st in enumerate(statuses) if st != 200]
    assert 1 <= len(failed) <= 2 and statuses[0] == 200 and statuses[-3:] == [200] * 3, statuses
    for i in failed:
        assert statuses[i] == 503, (statuses, bodies[i])
        msg = json.dumps(bodies[i])
        assert "seg-000001/tokens.bin" in msg and "Input/output error" in msg, msg
    for i, body in enumerate(bodies):
        if i not in failed:
            assert body["results"][0]["ids"] == expected[i], i
    assert "Traceback" not in out
