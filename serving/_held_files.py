"""Descriptors of the files a searcher loads only when first used (metadata, BM25).

:meth:`serving.Searcher.open` reads, opens or maps every file a plain search needs. The
per-segment metadata (filters, ``mvr info``) and BM25 index (hybrid search) are loaded
later, on their first use, so that an open does not pay for what most searchers never
use. A compaction may have unlinked them by then; a descriptor opened at open time keeps
the inode (and so the snapshot's bytes: writers never rewrite a committed file) alive,
and the loaders read through ``/dev/fd/N``, which opens that same inode, named or not.
Each descriptor is closed once its file is loaded (read into RAM, or mapped: a mapping
keeps the inode too), or when the searcher closes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from indexing._bm25 import BM25_DIR
from indexing._metadata import METADATA_FILE
from mvr.errors import CorruptIndexError
from mvr.format import MANIFEST_NAME, SEGMENTS_DIR

__all__ = ["HeldFiles", "lazy_files"]

_FD_DIR = "/dev/fd"  # Linux: a link to /proc/self/fd; macOS and the BSDs have it too


def lazy_files(manifest: dict[str, Any]) -> list[str]:
    """The manifest's files that a searcher loads on first use: every segment's
    ``metadata.arrow`` and ``bm25/`` files."""
    out = []
    for rel in manifest["files"]:
        parts = rel.split("/")  # segments/<name>/<file or folder>/...
        if parts[0] == SEGMENTS_DIR and len(parts) > 2 and parts[2] in (METADATA_FILE, BM25_DIR):
            out.append(rel)
    return sorted(out)


def _room_for(n: int) -> None:
    """Raise the soft limit on open files when ``n`` more would come near it (up to the
    hard limit; an index of many segments holds ~7 descriptors a segment)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir(_FD_DIR))
    if soft == resource.RLIM_INFINITY or in_use + n + 64 <= soft:
        return
    want = in_use + n + 1024
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


class HeldFiles:
    """Open descriptors of some index files, by their path relative to the index.

    Raises
    ------
    CorruptIndexError
        A file is missing (a commit retired it before it was opened; ``Searcher.open``
        then retries on the new manifest).
    """

    def __init__(self, root: Path, rels: Iterable[str]) -> None:
        self.root = root
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        if not os.path.isdir(_FD_DIR):  # no way to reopen a descriptor: read by name
            return
        rels = list(rels)
        _room_for(len(rels))
        try:
            for rel in rels:
                self._fds[rel] = os.open(root / rel, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError as e:
            self.close()
            raise CorruptIndexError(
                f"index file {rel!r} listed in {MANIFEST_NAME} is missing (at open)"
            ) from e
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self._fds)

    def path(self, rel: str) -> Path:
        """Where to read ``rel``: its held descriptor, or its path once released."""
        with self._lock:
            fd = self._fds.get(rel)
        return self.root / rel if fd is None else Path(_FD_DIR) / str(fd)

    def paths(self, rels: Iterable[str]) -> dict[str, Path]:
        """:meth:`path` of each of ``rels`` (for ``verify_files(paths=...)``)."""
        return {rel: self.path(rel) for rel in rels}

    def release(self, rels: Iterable[str]) -> None:
        """Close the descriptors of ``rels`` (their files are loaded)."""
        with self._lock:
            fds = [self._fds.pop(rel) for rel in rels if rel in self._fds]
        for fd in fds:
            os.close(fd)

    def close(self) -> None:
        """Close every descriptor (idempotent)."""
        self.release(list(self._fds))
