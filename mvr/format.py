"""The on-disk format contract that ``indexing/`` writes and ``serving/`` reads.

An index directory::

    DIR/
      manifest.json          # written last, atomically; its absence = no/incomplete index
      .lock                  # writer lock (filelock)
      segments/<name>/...    # one folder per segment (build, add)

Re-ranking table records (``tokens.bin`` in a segment): document ``i``'s record
starts at byte ``record_offsets[i]`` and holds ``lengths[i]`` tokens of ``dim``:

* ``float16``: ``lengths[i] * dim`` little-endian float16, row-major;
* ``int8``: ``lengths[i] * dim`` int8 (row-major) followed by ``lengths[i]``
  little-endian float32 scales; token = int8 row * scale.
* ``res4`` / ``res8`` (format version 2): ``lengths[i]`` residual codes of
  ``dim / 2`` / ``dim`` bytes (4 / 8 bits per dimension); token = centroid +
  decoded residual (:class:`mvr._codec.TokenCodec`). The centroid id of every
  token is stored apart, in the segment's ``cids.bin`` (held in RAM by readers:
  the approximate MaxSim scores it), so a record is exactly its residual codes.
* ``pqr2`` / ``pqr4`` (format version 4): ``lengths[i]`` codes of ``dim / 4`` /
  ``dim / 2`` bytes (2 / 4 bits per dimension) of what the token's approximate
  code leaves of its residual; token = centroid + the approximate code's
  reconstruction + decoded remainder. They need ``acodes.bin`` as well as
  ``cids.bin`` (both held in RAM by readers); on disk a 384-d token is then
  2 + 64 + 96 bytes at 2 bits, against 2 + 64 + 384 with res8.

Format version 2 adds the compact tables above, the index-level token codec
(``codec-<generation>.faiss``, named in the manifest), per-segment ``cids.bin``,
faiss first stages built from a factory string, and FDEs that are dropped after
the first stage is built. Format version 3 adds approximate codes: a codec trained
with them (``IndexConfig.approx_pq`` > 0) is a two-part file (:mod:`mvr._codec`)
and segments built with it hold ``acodes.bin`` (``approx_pq`` bytes per token, held
in RAM by readers; manifest entry ``has_acodes``). Version 1 and 2 indexes still
open (their approximate stage scores centroid ids alone); a reader of version 2
refuses version 3 by its number rather than misreading the codec file. Format
version 4 adds the refined tables (``pqr2`` / ``pqr4``) and their three-part codec
file; a version 3 reader refuses it by its number.

Records start on multiples of ``record_alignment`` bytes (1 = packed), recorded
in the manifest, so one document is one contiguous (aligned) read.

Document metadata (optional) is ``segments/<name>/metadata.arrow``: an Arrow IPC
file with one column per field, its schema's metadata ``{"mvr_metadata": {"version":
METADATA_VERSION, "types": {field: type}}}`` with a type in ``FIELD_TYPES``
(:mod:`indexing._metadata` writes it, :mod:`mvr._metadata` reads it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mvr.errors import ConfigError, TokenReadError

__all__ = [
    "FORMAT_VERSION",
    "SUPPORTED_FORMAT_VERSIONS",
    "MANIFEST_NAME",
    "LOCK_NAME",
    "SEGMENTS_DIR",
    "TOKENS_FILE",
    "METADATA_FILE",
    "METADATA_VERSION",
    "FIELD_TYPES",
    "TABLE_DTYPES",
    "CODED_DTYPES",
    "REFINED_DTYPES",
    "record_nbytes",
    "encode_records",
    "decode_record",
    "aligned_offsets",
]

FORMAT_VERSION = 4
SUPPORTED_FORMAT_VERSIONS = (1, 2, 3, 4)
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"
SEGMENTS_DIR = "segments"
TOKENS_FILE = "tokens.bin"
TABLE_DTYPES = ("float16", "int8", "res4", "res8", "pqr2", "pqr4")
CODED_DTYPES = ("res4", "res8", "pqr2", "pqr4")  # need the index's token codec to decode
REFINED_DTYPES = ("pqr2", "pqr4")  # need the tokens' approximate codes as well
METADATA_FILE = "metadata.arrow"
METADATA_VERSION = 1
FIELD_TYPES = ("string", "number", "boolean", "string_list")


def _check_dtype(dtype: str) -> None:
    if dtype not in TABLE_DTYPES:
        raise ConfigError(f"table dtype: expected one of {TABLE_DTYPES}, got {dtype!r}")


def record_nbytes(lengths: np.ndarray | int, dim: int, dtype: str) -> np.ndarray | int:
    """Bytes of the record(s) holding ``lengths`` tokens (without alignment padding)."""
    _check_dtype(dtype)
    if dtype == "float16":
        return lengths * dim * 2
    if dtype in ("res4", "pqr4"):
        return lengths * ((dim + 1) // 2)
    if dtype == "pqr2":
        return lengths * ((dim + 3) // 4)
    if dtype == "res8":
        return lengths * dim
    return lengths * dim + lengths * 4


def aligned_offsets(nbytes: np.ndarray, alignment: int, start: int = 0) -> np.ndarray:
    """Start offsets of consecutive records of ``nbytes`` each, every one a multiple of
    ``alignment`` (and ``>= start``). Shape: (n + 1,): the last entry is the end."""
    if alignment < 1:
        raise ConfigError(f"record_alignment: expected >= 1, got {alignment}")
    padded = -(-np.asarray(nbytes, dtype=np.int64) // alignment) * alignment
    first = -(-start // alignment) * alignment
    out = np.empty(len(padded) + 1, dtype=np.int64)
    out[0] = first
    np.cumsum(padded, out=out[1:])
    out[1:] += first
    return out


def encode_records(vectors: np.ndarray, lengths: np.ndarray, dtype: str) -> list[bytes]:
    """Encode consecutive documents' tokens (flat ``(total, dim)``) into records."""
    _check_dtype(dtype)
    out: list[bytes] = []
    pos = 0
    for n in np.asarray(lengths, dtype=np.int64):
        block = vectors[pos : pos + n]
        pos += int(n)
        out.append(_encode_one(block, dtype))
    return out


def _encode_one(block: np.ndarray, dtype: str) -> bytes:
    if dtype in CODED_DTYPES:
        raise ConfigError(f"{dtype} records are written by the index build (they need its codec)")
    if dtype == "float16":
        return np.ascontiguousarray(block, dtype="<f2").tobytes()
    block = np.asarray(block, dtype=np.float32)
    amax = np.abs(block).max(axis=1) if block.size else np.zeros(len(block), np.float32)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype("<f4")
    q = np.clip(np.rint(block / scale[:, None]), -127, 127).astype(np.int8)
    return q.tobytes() + scale.tobytes()


def decode_record(
    buf: bytes | memoryview | np.ndarray, n_tokens: int, dim: int, dtype: str, *,
    what: str = "record", codec: Any = None, cids: np.ndarray | None = None,
    acodes: np.ndarray | None = None,
) -> np.ndarray:
    """Decode one record into a ``(n_tokens, dim)`` array (float16 or float32).

    ``res4`` / ``res8`` records need the index's ``codec`` (:class:`mvr._codec.TokenCodec`)
    and the record's centroid ids ``cids`` (shape (n_tokens,)); ``pqr2`` / ``pqr4`` also
    the record's approximate codes ``acodes`` (shape (n_tokens, approx_bytes)).

    Raises :class:`TokenReadError` naming ``what`` if ``buf`` is shorter than the record.
    """
    need = int(record_nbytes(n_tokens, dim, dtype))
    if len(buf) < need:
        raise TokenReadError(f"{what}: short read, expected {need} bytes, got {len(buf)}")
    if dtype in CODED_DTYPES:
        if codec is None or cids is None or len(cids) != n_tokens:
            raise ConfigError(
                f"{what}: a {dtype} record needs the token codec and {n_tokens} centroid ids"
            )
        if dtype in REFINED_DTYPES and (acodes is None or len(acodes) != n_tokens):
            raise ConfigError(
                f"{what}: a {dtype} record needs {n_tokens} tokens' approximate codes"
            )
        codes = np.frombuffer(buf, dtype=np.uint8, count=need).reshape(n_tokens, -1)
        return codec.decode(cids, codes, acodes)
    if dtype == "float16":
        return np.frombuffer(buf, dtype="<f2", count=n_tokens * dim).reshape(n_tokens, dim)
    q = np.frombuffer(buf, dtype=np.int8, count=n_tokens * dim).reshape(n_tokens, dim)
    scale = np.frombuffer(buf, dtype="<f4", count=n_tokens, offset=n_tokens * dim)
    return q.astype(np.float32) * scale[:, None]
