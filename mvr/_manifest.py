"""The index manifest: schema, atomic write, read and validation.

``manifest.json`` is the commit point of an index: it is written last, through a
temporary file, ``fsync`` and ``os.replace`` (then the directory is synced), so
a reader sees either the previous manifest or the new one, never a half. Every
file the index consists of is listed with its size and SHA-256; readers check
sizes always and checksums unless told not to.

Schema (format version 1)::

    {
      "format_version": 1,
      "writer": {"name": "mvr", "version": "0.1.0"},
      "generation": 3,                     # bumped by every commit
      "encoder": {...} or null,            # Encoder.identity of the build
      "dim": 384, "fde_dim": 10240,
      "config": IndexConfig.to_dict(),     # fde resolved
      "dtypes": {"table": "float16", "fde": "float32", "lengths": "<i8"},
      "counts": {"documents": n_rows, "live": n_live, "deleted": n_deleted, "tokens": t},
      "segments": [{"name": "seg-000001", "documents": n, "tokens": t,
                    "first_stage": "exact" | "hnsw" | "ivfpq", "has_text": true}, ...],
      "tombstones": "tombstones-000003.json" or null,
      "files": {"segments/seg-000001/tokens.bin": {"size": ..., "sha256": ...}, ...},
      "manifest_sha256": "..."             # of the rest (canonical JSON); absent before it
    }                                      # was added, so older manifests still open
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

# the durable-write helpers live in mvr._durable; re-exported here for their users
from mvr._durable import atomic_write_bytes, fsync_dir, sync_files
from mvr.errors import (
    ChecksumMismatchError,
    CorruptIndexError,
    FormatVersionError,
    IncompleteIndexError,
    IndexNotFoundError,
    MVRError,
)
from mvr.format import FORMAT_VERSION, MANIFEST_NAME, SUPPORTED_FORMAT_VERSIONS

__all__ = [
    "BUILD_DIR",
    "REQUIRED_KEYS",
    "sha256_file",
    "file_entry",
    "atomic_write_bytes",
    "atomic_write_json",
    "write_manifest",
    "read_manifest",
    "verify_files",
    "fsync_dir",
]

BUILD_DIR = ".build"  # an interrupted (resumable) build keeps its progress here
REQUIRED_KEYS = (
    "format_version", "writer", "generation", "encoder", "dim", "fde_dim", "config",
    "dtypes", "counts", "segments", "tombstones", "files",
)
_CHUNK = 1 << 22
SELF_CHECKSUM = "manifest_sha256"


def _self_checksum(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest without its own checksum, as canonical JSON (so that a
    change of any value is caught, and a change of white space alone is harmless)."""
    rest = {k: v for k, v in manifest.items() if k != SELF_CHECKSUM}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(_CHUNK)
            if not block:
                return h.hexdigest()
            h.update(block)


def file_entry(root: Path, relpath: str) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex}`` of ``root / relpath``."""
    p = Path(root) / relpath
    return {"size": p.stat().st_size, "sha256": sha256_file(p)}


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def write_manifest(index_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
    """Commit ``manifest`` as ``index_dir/manifest.json`` (atomically).

    First every file it lists that the committed manifest does not list as is (new
    segments, tombstones), and the folders up to ``index_dir``, are fsynced: a commit
    must never point at data still in the page cache. Files of earlier commits were
    synced by those and are never rewritten in place. The first commit of an index also
    fsyncs the parent folder (which holds the index folder's entry).
    """
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise CorruptIndexError(f"manifest to write lacks keys {missing}")
    try:
        committed = read_manifest(index_dir)["files"]
        first = False
    except MVRError:  # none yet (a build), or unreadable: sync everything listed
        committed, first = {}, True
    sync_files(index_dir, [rel for rel, entry in sorted(manifest["files"].items())
                           if committed.get(rel) != entry])
    manifest = {**manifest, SELF_CHECKSUM: _self_checksum(manifest)}
    atomic_write_json(Path(index_dir) / MANIFEST_NAME, manifest)
    if first:  # a new index: its own folder's entry in the parent must survive too
        fsync_dir(Path(index_dir).resolve().parent)


def read_manifest(index_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate ``index_dir/manifest.json`` (not the files it lists).

    Raises
    ------
    IndexNotFoundError
        ``index_dir`` does not exist or holds no index at all.
    IncompleteIndexError
        No manifest, but an interrupted build (``.build/`` or segment files) is there.
    FormatVersionError
        ``format_version`` is not one this reader supports.
    CorruptIndexError
        The manifest is not valid JSON or lacks keys.
    """
    root = Path(index_dir)
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        if not root.is_dir():
            raise IndexNotFoundError(f"no index at {str(root)!r}: the directory does not exist")
        if (root / BUILD_DIR).exists() or (root / "segments").exists():
            raise IncompleteIndexError(
                f"incomplete index at {str(root)!r}: {MANIFEST_NAME} expected, not found, but an "
                f"interrupted build is there; finish it with `mvr index ... --out {root} --resume` "
                "(or build_index(..., resume=True))"
            )
        raise IndexNotFoundError(f"no index at {str(root)!r}: {MANIFEST_NAME} not found")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptIndexError(f"{mpath}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise CorruptIndexError(f"{mpath}: expected a JSON object, got {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise FormatVersionError(
            f"{mpath}: format_version expected one of {list(SUPPORTED_FORMAT_VERSIONS)} "
            f"(this mvr writes {FORMAT_VERSION}), got {version!r}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise CorruptIndexError(f"{mpath}: missing keys {missing}")
    recorded = manifest.get(SELF_CHECKSUM)
    if recorded is not None:
        actual = _self_checksum(manifest)
        if recorded != actual:
            raise ChecksumMismatchError(
                f"{mpath}: {SELF_CHECKSUM} mismatch (the manifest was altered), expected "
                f"{recorded}, got {actual}"
            )
    return manifest


def verify_files(
    index_dir: str | os.PathLike[str], manifest: dict[str, Any], *, checksums: bool | int = True,
    always: Collection[str] = (),
    paths: Mapping[str, str | os.PathLike[str]] | None = None,
) -> None:
    """Check that every file the manifest lists exists with its size (and SHA-256).

    ``checksums``: True hashes every file, False none, an int the files of at most that
    many bytes; the files in ``always`` are hashed whatever their size. ``paths``: where
    to read some of the files instead of under ``index_dir`` (a descriptor a reader holds,
    ``/dev/fd/N``); messages still name the file by its path in the index.

    Raises :class:`CorruptIndexError` (missing or wrong size: truncated or extended)
    or :class:`ChecksumMismatchError`, naming the file and the expected and actual value.
    """
    root = Path(index_dir)
    for rel, entry in sorted(manifest["files"].items()):
        p = Path(paths[rel]) if paths is not None and rel in paths else root / rel
        try:
            size = p.stat().st_size
        except FileNotFoundError as e:
            raise CorruptIndexError(
                f"index file {rel!r} listed in {MANIFEST_NAME} is missing (expected "
                f"{entry['size']} bytes)"
            ) from e
        if size != entry["size"]:
            what = "truncated" if size < entry["size"] else "longer than recorded"
            raise CorruptIndexError(
                f"index file {rel!r} is {what}: expected {entry['size']} bytes, got {size} bytes"
            )
        if checksums is True or rel in always or (
            checksums is not False and not isinstance(checksums, bool) and size <= checksums
        ):
            actual = sha256_file(p)
            if actual != entry["sha256"]:
                raise ChecksumMismatchError(
                    f"index file {rel!r}: sha256 mismatch, expected {entry['sha256']}, got {actual}"
                )
