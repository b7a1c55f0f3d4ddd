"""Real syscall faults (``strace -e inject``) in the files that libraries write for an
add: pyarrow (``metadata.arrow``), bm25s / numpy (``bm25/*.npy``, ``bm25/*.json``),
faiss (the first stage, written to a temporary name first), zarr (the FDE array), and
the metadata staging file. Each fault must end the add in an ``IndexWriteError`` that
names the file and the OS error, and leave the committed index answering exactly as
before, with no trace of the failed segment.

One child process imports everything once and runs one add per fault; strace attaches
to it (``-p``, every thread) for that add only, so that a name holding the child's pid
can be targeted and each fault costs an add, not an interpreter start.
(Faults in the files mvr writes itself: ``test_io_faults.py``.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
import crash_lib  # noqa: E402
from index_testlib import small_config  # noqa: E402

REPO = Path(__file__).parents[2]
STRACE = shutil.which("strace")

# Reads an index path per line, adds documents with texts and metadata (so that the new
# segment gets metadata.arrow and bm25/), answers one JSON line per add.
_CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from crash_lib import add_docs
from indexing import IndexWriter
from mvr.errors import MVRError
docs = [{"id": i, "text": f"word{n % 7} shared text {n}", "vectors": v, "metadata": {"n": n}}
        for n, (i, v) in enumerate(add_docs())]
print(os.getpid(), flush=True)
for line in sys.stdin:
    try:
        with IndexWriter(line.strip()) as w:
            w.add(docs)
        out = {"ok": True}
    except MVRError as e:
        out = {"ok": False, "type": type(e).__name__, "message": str(e)}
    except Exception as e:  # what this test exists to catch: a library's bare error
        out = {"ok": False, "type": f"unexpected {type(e).__name__}", "message": repr(e)}
    print(json.dumps(out), flush=True)
"""


class AddChild:
    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(crash_lib.FIXTURES)], cwd=REPO, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.pid = int(self.proc.stdout.readline())

    def _traced(self) -> bool:
        tasks = os.listdir(f"/proc/{self.pid}/task")
        return all("TracerPid:\t0\n" not in Path(f"/proc/{self.pid}/task/{t}/status").read_text()
                   for t in tasks)

    def add_under_fault(self, idx: Path, target: Path, calls: str, errno: str) -> dict[str, str]:
        assert STRACE is not None and self.proc.stdin is not None and self.proc.stdout is not None
        tracer = subprocess.Popen(
            [STRACE, "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", "-e", "signal=none",
             "-P", str(target), "-e", f"trace={calls}", "-e", f"inject={calls}:error={errno}",
             "-p", str(self.pid)],
            stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while not self._traced():
                if tracer.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"strace cannot attach here: {tracer.communicate()[1][:200]}")
                time.sleep(0.02)
            self.proc.stdin.write(f"{idx}\n")
            self.proc.stdin.flush()
            return json.loads(self.proc.stdout.readline())
        finally:
            tracer.send_signal(signal.SIGINT)  # detaches; the child keeps running
            tracer.communicate(timeout=30)

    def close(self) -> None:
        self.proc.communicate(timeout=60)  # closes stdin (the child's loop ends) and stdout


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, object, AddChild]]:
    if STRACE is None:
        pytest.skip("strace not installed (make test installs it)")
    from indexing import build_index

    work = tmp_path_factory.mktemp("libfaults")
    build_index(work / "base", crash_lib.all_docs()[: crash_lib.N_BASE], None,
                small_config(batch_size=crash_lib.BATCH), progress=False)
    child = AddChild()
    try:
        yield work / "base", crash_lib.state(work / "base"), child
    finally:
        child.close()


SEG = "segments/seg-000002"  # the segment the add writes


@pytest.mark.slow
@pytest.mark.parametrize("target, calls, errno, named", [
    (f"{SEG}/metadata.arrow", "write", "ENOSPC", None),  # pyarrow's OSError names no file
    (f"{SEG}/metadata.arrow", "fsync", "EIO", None),
    (f"{SEG}/bm25/data.csc.index.npy", "write", "ENOSPC", None),  # numpy, inside bm25s
    (f"{SEG}/bm25/vocab.index.json", "write", "EIO", None),  # bm25s's own json write
    # faiss: serialised, then written to a temporary name and renamed over the file
    (f"{SEG}/.first_stage.tmp-{{pid}}.faiss", "write", "ENOSPC", f"{SEG}/first_stage.faiss"),
    (f"{SEG}/fde.zarr", "mkdir", "ENOSPC", None),  # zarr creating the array
    (f"{SEG}/fde.zarr/c/1", "mkdir", "ENOSPC", None),  # zarr writing the second chunk
    (".build/metadata.jsonl", "write", "EIO", None),  # the metadata staging file
], ids=["arrow-write", "arrow-fsync", "bm25-npy", "bm25-json", "faiss", "zarr-create",
        "zarr-chunk", "staging"])
def test_library_write_fault_names_the_file_and_keeps_the_index(
    setup: tuple[Path, object, AddChild], tmp_path: Path, target: str, calls: str, errno: str,
    named: str | None,
) -> None:
    base, before, child = setup
    idx = tmp_path / "idx"
    shutil.copytree(base, idx)
    got = child.add_under_fault(idx, idx / target.format(pid=child.pid), calls, errno)
    assert got.get("type") == "IndexWriteError", got
    assert str(idx / (named or target)) in got["message"], got
    reason = "No space left on device" if errno == "ENOSPC" else "Input/output error"
    assert reason in got["message"], got
    assert crash_lib.state(idx) == before  # the committed index, as it was
    assert not (idx / SEG).exists(), sorted(p.name for p in (idx / "segments").iterdir())
    assert not (idx / ".build").exists()
