"""Durable writes: the one atomic-replace helper of mvr, and fsync of files and folders.

A file that a commit point (``manifest.json``, a run file, a report) refers to must be
on disk before the commit is: written to a temporary name next to its destination,
fsynced, renamed over it with ``os.replace``, and the folder fsynced so that the rename
itself survives a power cut. :func:`atomic_write_file` does this for any writer that
takes a file name (``faiss.write_index``, ``np.savez`` on an open file, ...);
:func:`atomic_write_bytes` for bytes. :func:`fsync_tree` and :func:`sync_files` make
files that were written in place (a new segment's) durable before a commit lists them.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mvr.errors import IndexWriteError, MVRError

__all__ = [
    "atomic_write_file",
    "atomic_write_bytes",
    "fsync_file",
    "fsync_dir",
    "fsync_tree",
    "sync_files",
    "writing",
]


@contextmanager
def writing(path: str | os.PathLike[str], what: str = "write") -> Iterator[None]:
    """Turn an OSError of the block (a full disk, an I/O error: the syscall's own error)
    into IndexWriteError naming the file and the error.

    Python names no file for a failed write or fsync, and a library that writes several
    files (bm25s, zarr) does not say which one failed; ``path`` is then the file or folder
    the block writes, and the error also names the file that failed when it can be found
    (:func:`_failed_file`)."""
    try:
        yield
    except MVRError:
        raise
    except OSError as e:
        failed = _failed_file(e, path)
        where = path if failed is None else os.path.join(path, failed)
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise IndexWriteError(
            f"{where}: {what} failed: {reason} (errno {e.errno}); the committed index is "
            "unchanged"
        ) from e


def _failed_file(e: OSError, path: str | os.PathLike[str]) -> str | None:
    """The file under the folder ``path`` that ``e`` is about: its ``filename`` (an
    open, mkdir or rename names it), else the innermost file object open for writing in
    the frames the error passed through (a ``f.write`` that failed). None when ``path``
    is that file itself or nothing under it is found."""
    root = os.path.abspath(path)
    names = [e.filename] if isinstance(e.filename, str) else []
    if not names:
        tb = e.__traceback__
        while tb is not None:
            for v in tb.tb_frame.f_locals.values():
                name, mode = getattr(v, "name", None), getattr(v, "mode", "")
                if isinstance(v, io.IOBase) and isinstance(name, str) and any(
                        c in str(mode) for c in "wax+"):
                    names.append(name)
            tb = tb.tb_next
    for name in reversed(names):
        full = os.path.abspath(name)
        if full != root and full.startswith(root + os.sep):
            return os.path.relpath(full, root)
    return None


def _fsync_path(path: str | os.PathLike[str], what: str) -> None:
    with writing(path, what):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """fsync a file that another writer (a library) wrote and closed."""
    _fsync_path(path, "fsync")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so that renames and new entries in it are durable."""
    _fsync_path(path, "fsync of the folder")


def fsync_tree(path: str | os.PathLike[str]) -> None:
    """fsync every file and folder under ``path`` and ``path`` itself, each folder after
    everything in it (so that a new folder's entries are durable before it is)."""
    for dirpath, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            fsync_file(os.path.join(dirpath, name))
        fsync_dir(dirpath)


def sync_files(root: str | os.PathLike[str], relpaths: Iterable[str]) -> None:
    """fsync the files ``relpaths`` (relative to ``root``) and every folder from each
    file's own up to ``root``, deepest first."""
    root = Path(root)
    dirs = {root}
    for rel in relpaths:
        p = root / rel
        fsync_file(p)
        dirs.update(d for d in p.parents if d == root or root in d.parents)
    for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        fsync_dir(d)


def atomic_write_file(path: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """Replace ``path`` atomically with what ``write(tmp)`` writes to a temporary path
    next to it: then fsync of the temporary file, ``os.replace``, fsync of the folder.

    The temporary name keeps ``path``'s suffix (``.x.tmp-<pid>.npz`` for ``x.npz``);
    it is removed when ``write`` fails, and ``path`` keeps its old content.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        with writing(path):
            try:
                write(tmp)
            except RuntimeError as e:  # faiss reports a failed fwrite as a RuntimeError
                if "write" not in str(e).lower():
                    raise
                raise OSError(f"the writer failed: {e}") from e
            fsync_file(tmp)
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_write_file`)."""
    atomic_write_file(path, lambda tmp: tmp.write_bytes(data))
