"""The per-record hash of ``checksums.bin`` (mvr._checksum): equal to a plain Python
reference of the same steps, and any one flipped bit of a record changes it."""

from __future__ import annotations

import numpy as np
import pytest

from mvr._checksum import bytes_hash, check_records, record_hashes
from mvr.errors import ChecksumMismatchError

M = (1 << 64) - 1
P, Q = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9


def _reference(data: bytes) -> int:
    h = (len(data) * Q + P) & M
    j = 0
    while j + 8 <= len(data):
        h = ((h ^ int.from_bytes(data[j : j + 8], "little")) * P) & M
        h ^= h >> 31
        j += 8
    for b in data[j:]:
        h = ((h ^ b) * Q) & M
        h ^= h >> 29
    h ^= h >> 32
    h = (h * Q) & M
    return h ^ (h >> 29)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 64, 191])
def test_matches_reference(n: int) -> None:
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert bytes_hash(data) == _reference(data)


def test_every_single_bit_flip_changes_the_hash() -> None:
    data = bytearray(np.random.default_rng(0).integers(0, 256, 37, dtype=np.uint8).tobytes())
    h = bytes_hash(bytes(data))
    for i in range(len(data) * 8):
        data[i // 8] ^= 1 << (i % 8)
        assert bytes_hash(bytes(data)) != h, i
        data[i // 8] ^= 1 << (i % 8)
    assert bytes_hash(bytes(data[:-1])) != h  # and a shorter record


def test_check_records_names_file_and_row() -> None:
    buf = np.arange(100, dtype=np.uint8)
    starts, nbytes = np.array([0, 10, 50]), np.array([10, 40, 0])
    good = record_hashes(buf, starts, nbytes)
    check_records(buf, starts, nbytes, good, np.array([4, 5, 6]), "x/tokens.bin")
    buf[20] ^= 4
    with pytest.raises(ChecksumMismatchError, match=r"x/tokens\.bin: record of document row 5 "
                       r"\(id 'e'\) is corrupt"):
        check_records(buf, starts, nbytes, good, np.array([4, 5, 6]), "x/tokens.bin",
                      ["a", "b", "c", "d", "x", "e", "f"])
