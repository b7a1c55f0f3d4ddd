"""Real syscall faults (``strace -e inject``) in real ``mvr index`` / ``IndexWriter.add``
subprocesses: ENOSPC on a write, EIO on an fsync. Each must end in a clear
``mvr.errors`` error naming the file (no traceback) and leave the previous index
answering exactly as before; an interrupted first build leaves nothing that opens and is
completed by ``--resume`` once the fault is gone. (EIO on reads while serving:
``tests/serving/test_http_io_faults.py``.)

``make test`` installs strace; without it (or where ptrace is not allowed) these skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
import crash_lib  # noqa: E402
from index_testlib import small_config  # noqa: E402

REPO = Path(__file__).parents[2]
STRACE = shutil.which("strace")

_ADD = r"""
import sys
sys.path.insert(0, sys.argv[2])
from crash_lib import add_docs
from indexing import IndexWriter
from mvr.errors import MVRError
try:
    with IndexWriter(sys.argv[1]) as w:
        w.add(add_docs())
except MVRError as e:
    print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(3)
"""


def _strace(target: Path, calls: str, errno: str, when: str) -> list[str]:
    assert STRACE is not None
    return [STRACE, "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", "-e", "signal=none", "-P", str(target),
            "-e", f"trace={calls}", "-e", f"inject={calls}:error={errno}:when={when}"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    if STRACE is None:
        pytest.skip("strace not installed (make test installs it)")
    probe = subprocess.run([STRACE, "-qq", "-o", "/dev/null", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.decode()[:200]}")
    import encoders
    from indexing import build_index

    work = tmp_path_factory.mktemp("faults")
    docs = crash_lib.all_docs()[: crash_lib.N_BASE]
    vectors = work / "vectors.npz"
    encoders.save_precomputed(vectors, [i for i, _ in docs], [v for _, v in docs],
                              texts=[f"text of {i}" for i, _ in docs])
    build_index(work / "base", docs, None, small_config(batch_size=crash_lib.BATCH),
                progress=False)
    return work, vectors, crash_lib.state(work / "base")


@pytest.mark.slow
@pytest.mark.parametrize("fault", [
    ("tokens.bin", "write", "ENOSPC", "2+"),
    ("ids.jsonl", "fsync", "EIO", "1+"),
    ("checksums.bin", "write", "EIO", "1+"),
])
def test_fault_during_add_names_the_file_and_keeps_the_index(base, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                             fault: tuple[str, ...]) -> None:
    work, _, before = base
    name, calls, errno, when = fault
    idx = tmp_path / "idx"
    shutil.copytree(work / "base", idx)
    target = idx / "segments" / "seg-000002" / name  # the segment the add writes
    r = _run(_strace(target, calls, errno, when)
             + [sys.executable, "-c", _ADD, str(idx), str(crash_lib.FIXTURES)])
    assert r.returncode == 3, (r.returncode, r.stderr[-2000:])
    assert "IndexWriteError" in r.stderr and f"seg-000002/{name}" in r.stderr, r.stderr
    assert ("No space left" if errno == "ENOSPC" else "Input/output error") in r.stderr
    assert "Traceback" not in r.stderr
    assert crash_lib.state(idx) == before  # the committed index, as it was
    assert not (idx / "segments" / "seg-000002").exists()  # the failed segment is gone


@pytest.mark.slow
def test_enospc_during_mvr_index_then_resume(base, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from mvr.errors import IncompleteIndexError
    from serving import Searcher

    work, vectors, _ = base
    out = tmp_path / "built"
    target = out / "segments" / "seg-000001" / "tokens.bin"
    r = _run(_strace(target, "write", "ENOSPC", "3+")
             + [sys.executable, "-m", "mvr.cli", "index", str(vectors), "--out", str(out),
                *crash_lib.CLI_ARGS])
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "error:" in r.stderr and "seg-000001/tokens.bin" in r.stderr, r.stderr
    assert "No space left on device" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(IncompleteIndexError, match="--resume"):
        Searcher.open(out)
    crash_lib._resume_build(out, vectors)  # the disk has room again
    done = tmp_path / "clean"
    r = _run([sys.executable, "-m", "mvr.cli", "index", str(vectors), "--out", str(done),
              *crash_lib.CLI_ARGS])
    assert r.returncode == 0, r.stderr
    assert crash_lib.state(out) == crash_lib.state(done)
