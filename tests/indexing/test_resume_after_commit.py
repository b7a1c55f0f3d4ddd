"""A build killed after its commit (the manifest written) but before it removed its
progress folder leaves a complete index and a stale ``.build/``. ``mvr index --resume``
must then finish at once with that index, without reopening the committed segment's
files for writing (a reader may have them mapped) and without a "corrupt" error.

The kill is real: strace sends SIGKILL at the build's first unlink inside ``.build/``
(the removal that follows the commit).
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

REPO = Path(__file__).parents[2]
STRACE = shutil.which("strace")


def _mvr_index(vectors: Path, out: Path, *extra: str, prefix: tuple[str, ...] = ()
               ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*prefix, sys.executable, "-m", "mvr.cli", "index", str(vectors),
                           "--out", str(out), *crash_lib.CLI_ARGS, *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _committed_files(root: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and ".build" not in p.parts}


@pytest.mark.slow
def test_resume_after_a_kill_between_commit_and_cleanup(tmp_path: Path) -> None:
    if STRACE is None:
        pytest.skip("strace not installed (make test installs it)")
    import encoders

    docs = crash_lib.all_docs()[: crash_lib.N_BASE]
    vectors = tmp_path / "vectors.npz"
    encoders.save_precomputed(vectors, [i for i, _ in docs], [v for _, v in docs],
                              texts=[f"text of {i}" for i, _ in docs])
    idx = tmp_path / "idx"
    kill = (STRACE, "-f", "-qq", "-o", "/dev/null", "-e", "signal=none", "-P", str(idx / ".build"),
            "-e", "trace=unlinkat", "-e", "inject=unlinkat:signal=SIGKILL")
    r = _mvr_index(vectors, idx, prefix=kill)
    assert r.returncode in (-9, 137), (r.returncode, r.stderr[-2000:])
    assert (idx / "manifest.json").is_file() and (idx / ".build" / "progress.json").is_file()
    before = _committed_files(idx)
    state = crash_lib.state(idx)  # the committed index opens and answers

    r = _mvr_index(vectors, idx, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not (idx / ".build").exists()
    after = _committed_files(idx)
    touched = sorted(k for k in before if after.get(k) != before[k])
    assert touched == [], f"committed files rewritten by the resume: {touched}"
    assert sorted(after) == sorted(before)
    assert crash_lib.state(idx) == state
