"""Errors raised by mvr.

Every error derives from :class:`MVRError` and also from the builtin it
refines (as zarr's errors do), so ``except ValueError`` keeps working for
callers who do not know about mvr. Messages name the expected and the actual
value.
"""

from __future__ import annotations

__all__ = [
    "MVRError",
    "InvalidVectorsError",
    "DimensionMismatchError",
    "EmptyInputError",
    "ConfigError",
    "IndexNotFoundError",
    "CorruptIndexError",
    "IncompleteIndexError",
    "ChecksumMismatchError",
    "FormatVersionError",
    "EncoderMismatchError",
    "IndexLockedError",
    "IndexWriteError",
    "DocumentNotFoundError",
    "ModelFileNotFoundError",
    "TokenReadError",
    "RowOutOfRangeError",
    "DatasetError",
    "InvalidInputError",
    "InvalidFilterError",
]


class MVRError(Exception):
    """Base class of every error raised by mvr."""


class InvalidVectorsError(MVRError, ValueError):
    """Vectors are malformed: wrong rank, non-finite values, bad offsets."""


class DimensionMismatchError(MVRError, ValueError):
    """Vectors have another dimension than the one expected."""


class EmptyInputError(MVRError, ValueError):
    """An input that must hold something is empty (no texts, a zero-token document)."""


class ConfigError(MVRError, ValueError):
    """A configuration value is out of range or inconsistent."""


class IndexNotFoundError(MVRError, FileNotFoundError):
    """No index (no manifest) at the given path."""


class CorruptIndexError(MVRError, OSError):
    """An index file is missing, truncated or does not match the manifest."""


class IncompleteIndexError(CorruptIndexError):
    """A build was interrupted: the directory holds no committed manifest yet."""


class ChecksumMismatchError(CorruptIndexError):
    """A file's checksum differs from the one recorded in the manifest."""


class FormatVersionError(MVRError, ValueError):
    """The index was written in a format version this reader does not know."""


class EncoderMismatchError(MVRError, ValueError):
    """Queries would be encoded by another model than the index was built with."""


class IndexLockedError(MVRError, BlockingIOError):
    """Another writer holds the index's lock."""


class IndexWriteError(MVRError, OSError):
    """Writing or syncing an index file failed (disk full, I/O error); names the file and
    the error. The committed index is left as it was."""


class DocumentNotFoundError(MVRError, KeyError):
    """Document ids that are not in the index (or were deleted)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ModelFileNotFoundError(MVRError, FileNotFoundError):
    """A model directory lacks a file the loader needs."""


class TokenReadError(MVRError, OSError):
    """Reading a document's token vectors from the re-ranking table failed."""


class RowOutOfRangeError(MVRError, IndexError):
    """A document row outside the table (names the row and the valid range)."""


class DatasetError(MVRError, ValueError):
    """A corpus, queries or qrels file is malformed or inconsistent (names file and line)."""


class InvalidInputError(MVRError, TypeError):
    """An input has the wrong type (e.g. a non-string item in a batch of texts)."""


class InvalidFilterError(MVRError, ValueError):
    """A search filter is malformed or does not fit the index's metadata fields (names the
    clause, e.g. ``filter.and[1].gte``, and the expected and actual value)."""
