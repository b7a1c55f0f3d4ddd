"""The segment format contract: file names and the read side.

A segment directory ``segments/<name>/`` holds (see :mod:`mvr.format`)::

    ids.jsonl          one JSON string per document, in row order
    lengths.bin        <i8 token count per document (record offsets derive from it)
    tokens.bin         the re-ranking table records (float16, int8 + scales, res4/res8 codes)
    cids.bin           centroid id of every token, uint16 (format 2, coded tables only)
    acodes.bin         approximate code of every token, ``approx_bytes`` uint8 each (the
                       codec's residual PQ; segments whose manifest entry says
                       ``has_acodes``), held in RAM for the approximate MaxSim
    fde.zarr/          document FDEs (float32 in format 1; float16 in format 2, where they
                       are kept only until the first stage is built unless keep_fdes)
    texts.bin          UTF-8 texts back to back (only when texts are stored)
    text_lengths.bin   <i8 byte length per text (-1 = no text)
    first_stage.faiss  the faiss index of the segment (every segment in format 2; hnsw /
                       ivfpq segments in format 1)
    checksums.bin      <u8 pairs per document: hash of its tokens.bin record and of its
                       text (mvr._checksum; segments written since these were added, whose
                       manifest entry says ``has_checksums``), verified as records are read

``indexing`` writes these files (``indexing._segment.SegmentWriter``); ``serving`` and
``indexing`` read them with the functions here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mvr._checksum import CHECKSUMS_FILE
from mvr.errors import CorruptIndexError
from mvr.format import TOKENS_FILE, aligned_offsets, record_nbytes

__all__ = [
    "IDS_FILE",
    "LENGTHS_FILE",
    "CIDS_FILE",
    "ACODES_FILE",
    "FDE_DIR",
    "TEXTS_FILE",
    "TEXT_LENGTHS_FILE",
    "FIRST_STAGE_FILE",
    "APPEND_FILES",
    "segment_files",
    "read_ids",
    "read_lengths",
    "read_cids",
    "read_acodes",
    "open_fdes",
    "record_offsets",
    "read_checksums",
    "TextReader",
]

IDS_FILE = "ids.jsonl"
LENGTHS_FILE = "lengths.bin"
FDE_DIR = "fde.zarr"
TEXTS_FILE = "texts.bin"
TEXT_LENGTHS_FILE = "text_lengths.bin"
FIRST_STAGE_FILE = "first_stage.faiss"
CIDS_FILE = "cids.bin"
ACODES_FILE = "acodes.bin"
APPEND_FILES = (IDS_FILE, LENGTHS_FILE, TOKENS_FILE, CIDS_FILE, ACODES_FILE, TEXTS_FILE,
                TEXT_LENGTHS_FILE, CHECKSUMS_FILE)


def record_offsets(lengths: np.ndarray, dim: int, dtype: str, alignment: int) -> np.ndarray:
    """Byte offset of every record in ``tokens.bin``. Shape: (n + 1,); last = end of data."""
    nbytes = np.asarray(record_nbytes(np.asarray(lengths, np.int64), dim, dtype), np.int64)
    return aligned_offsets(nbytes, alignment)


# ---------------------------------------------------------------------- reading
def segment_files(seg_dir: Path) -> list[Path]:
    """Every file of a segment (recursively), sorted."""
    return sorted(p for p in Path(seg_dir).rglob("*") if p.is_file())


def read_ids(seg_dir: Path) -> list[str]:
    """Document ids in row order (a malformed line is CorruptIndexError naming it)."""
    from mvr._json_files import read_string_lines

    return read_string_lines(Path(seg_dir) / IDS_FILE)


def read_lengths(seg_dir: Path) -> np.ndarray:
    """Shape: (n,) int64 token counts."""
    return np.fromfile(Path(seg_dir) / LENGTHS_FILE, dtype="<i8").astype(np.int64)


def read_cids(seg_dir: Path, expected_tokens: int) -> np.ndarray:
    """Centroid id of every token of the segment (shape (tokens,) uint16), checked against
    the token count the manifest records."""
    path = Path(seg_dir) / CIDS_FILE
    cids = np.fromfile(path, dtype="<u2")
    if cids.shape[0] != expected_tokens:
        raise CorruptIndexError(
            f"{path}: expected {expected_tokens} centroid ids (one per token), got {cids.shape[0]}"
        )
    return cids


def read_acodes(seg_dir: Path, expected_tokens: int, code_bytes: int) -> np.ndarray:
    """Approximate code of every token of the segment (shape (tokens, code_bytes) uint8),
    checked against the token count the manifest records."""
    path = Path(seg_dir) / ACODES_FILE
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.shape[0] != expected_tokens * code_bytes:
        raise CorruptIndexError(
            f"{path}: expected {expected_tokens * code_bytes} bytes ({expected_tokens} tokens x "
            f"{code_bytes}), got {raw.shape[0]}"
        )
    return raw.reshape(expected_tokens, code_bytes)


def read_checksums(seg_dir: Path, expected_documents: int) -> np.ndarray:
    """Per document (hash of its ``tokens.bin`` record, hash of its text): shape
    (documents, 2) uint64, checked against the document count the manifest records."""
    path = Path(seg_dir) / CHECKSUMS_FILE
    raw = np.fromfile(path, dtype="<u8")
    if raw.shape[0] != 2 * expected_documents:
        raise CorruptIndexError(
            f"{path}: expected {2 * expected_documents} checksums (two per document), got "
            f"{raw.shape[0]}"
        )
    return raw.reshape(-1, 2).astype(np.uint64)


def open_fdes(seg_dir: Path) -> Any:
    """The segment's FDE zarr array (read-only), shape (n, fde_dim), float32 or float16."""
    import zarr

    return zarr.open_array(str(Path(seg_dir) / FDE_DIR), mode="r")


class TextReader:
    """Random access to a segment's stored texts (``None`` when absent)."""

    def __init__(self, seg_dir: Path, hashes: np.ndarray | None = None) -> None:
        seg_dir = Path(seg_dir)
        self._path = seg_dir / TEXTS_FILE
        self._hashes = hashes  # shape (n,) uint64: each text's hash (mvr._checksum), or None
        lens = np.fromfile(seg_dir / TEXT_LENGTHS_FILE, dtype="<i8")
        self._lens = lens
        self._starts = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(np.maximum(lens, 0), out=self._starts[1:])
        self._file = open(seg_dir / TEXTS_FILE, "rb")  # noqa: SIM115

    def get(self, row: int) -> str | None:
        if self._lens[row] < 0:
            return None
        start, n = int(self._starts[row]), int(self._lens[row])
        data = os.pread(self._file.fileno(), n, start)
        if len(data) != n:
            raise CorruptIndexError(
                f"{self._path}: text of document row {row}: short read at offset {start}, "
                f"expected {n} bytes, got {len(data)}"
            )
        if self._hashes is not None:
            from mvr._checksum import check_records

            check_records(np.frombuffer(data, np.uint8), np.zeros(1, np.int64),
                          np.array([n], np.int64), self._hashes[row : row + 1],
                          np.array([row]), f"{self._path} (texts)")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorruptIndexError(
                f"{self._path}: text of document row {row} is not UTF-8 ({e})"
            ) from e

    def close(self) -> None:
        self._file.close()
