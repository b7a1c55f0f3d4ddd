"""The SSD token store, its cache and the prefetcher against in-memory references."""

from __future__ import annotations

import errno
import logging
import os
import threading

import numpy as np
import pytest

from mvr import MultiVectors
from mvr.errors import ConfigError, TokenReadError
from mvr.format import aligned_offsets, decode_record, encode_records, record_nbytes
from serving._cache import ClockCache
from serving._disk_store import DiskTokenStore, TableFile
from serving._prefetch import (
    IVFCoarsePass,
    Prefetcher,
    PrefixCoarsePass,
    ProjectedCoarsePass,
    StageTimer,
    pipelined,
    top_rows,
)

DIM = 16


def _write_table(path, rng, n_docs=60, dtype="float16", alignment=1, max_len=12):
    """Write a tokens.bin; return (TableFile, ids, reference decoded arrays)."""
    lengths = rng.integers(1, max_len + 1, n_docs)
    flat = rng.standard_normal((int(lengths.sum()), DIM)).astype(np.float32)
    records = encode_records(flat, lengths, dtype)
    offs = aligned_offsets(np.array([len(r) for r in records]), alignment)
    with open(path, "wb") as f:
        for off, rec in zip(offs[:-1], records, strict=True):
            f.seek(int(off))
            f.write(rec)
        f.truncate(int(offs[-1]))
    ref = [np.array(decode_record(r, int(n), DIM, dtype)) for r, n in zip(records, lengths, strict=True)]
    ids = [f"doc-{i}" for i in range(n_docs)]
    return TableFile(path, offs, lengths), ids, ref


def _assert_same(mv: MultiVectors, ref: list[np.ndarray], rows) -> None:
    assert len(mv) == len(rows)
    for i, r in enumerate(rows):
        np.testing.assert_array_equal(mv[i], ref[r])


@pytest.mark.parametrize("dtype", ["float16", "int8"])
@pytest.mark.parametrize("alignment", [1, 4096])
@pytest.mark.parametrize("direct", [False, True])
def test_get_equals_memory_reference(tmp_path, dtype, alignment, direct):
    rng = np.random.default_rng(1)
    tf, ids, ref = _write_table(tmp_path / "tokens.bin", rng, dtype=dtype, alignment=alignment)
    with DiskTokenStore(tf, dim=DIM, dtype=dtype, ids=ids, direct=direct, read_threads=4, cache_bytes=1 << 20) as store:
        rows = rng.integers(0, len(ref), 40)
        rows[:3] = rows[3]  # duplicates keep their positions
        _assert_same(store.get(rows), ref, rows)
        np.testing.assert_array_equal(store.lengths(rows), [len(ref[r]) for r in rows])
        st = store.stats()
        assert st["reads_issued"] == len(np.unique(rows))
        assert st["bytes_requested"] == sum(
            int(record_nbytes(len(ref[r]), DIM, dtype)) for r in np.unique(rows)
        )
        if store.direct:
            assert st["bytes_read"] >= st["bytes_requested"]  # whole pages (less at EOF)
        _assert_same(store.get(rows), ref, rows)  # second time: served from the cache
        assert store.stats()["reads_issued"] == len(np.unique(rows))


def test_multiple_files_number_rows_consecutively(tmp_path):
    rng = np.random.default_rng(2)
    a, ids_a, ref_a = _write_table(tmp_path / "a.bin", rng, n_docs=7)
    b, ids_b, ref_b = _write_table(tmp_path / "b.bin", rng, n_docs=5, alignment=4096)
    with DiskTokenStore([a, b], dim=DIM, ids=ids_a + ids_b) as store:
        assert len(store) == 12
        rows = np.array([11, 0, 7, 6])
        _assert_same(store.get(rows), ref_a + ref_b, rows)


def test_clock_cache_second_chance_and_budget():
    item = np.zeros(10, np.uint8)  # 10 bytes each
    c = ClockCache(30)
    for k in "abc":
        assert c.put(k, item.copy())
    assert c.get("a") is not None  # a gets its reference bit
    c.put("d", item.copy())  # hand: a (referenced -> spared), b evicted
    assert "a" in c and "b" not in c and "c" in c and "d" in c
    assert c.used_bytes == 30 and c.evictions == 1
    assert not c.put("huge", np.zeros(31, np.uint8))  # larger than the budget: not admitted
    assert c.used_bytes == 30
    with pytest.raises(ConfigError, match="expected >= 0, got -1"):
        ClockCache(-1)


def test_cache_eviction_under_tiny_budget(tmp_path):
    rng = np.random.default_rng(3)
    tf, ids, ref = _write_table(tmp_path / "tokens.bin", rng, n_docs=80)
    budget = 3 * 12 * DIM * 2  # at most three of the longest records
    with DiskTokenStore(tf, dim=DIM, ids=ids, cache_bytes=budget) as store:
        for _ in range(5):
            rows = rng.integers(0, 80, 10)
            _assert_same(store.get(rows), ref, rows)
            assert store.resident_bytes <= budget
        st = store.stats()["cache"]
        assert st["evictions"] > 0 and st["used_bytes"] <= budget
    with DiskTokenStore(tf, dim=DIM, ids=ids, cache_bytes=0) as store:
        rows = np.arange(10)
        _assert_same(store.get(rows), ref, rows)
        _assert_same(store.get(rows), ref, rows)
        assert store.resident_bytes == 0 and store.stats()["reads_issued"] == 20


def test_concurrent_reads_from_several_threads(tmp_path):
    rng = np.random.default_rng(4)
    tf, ids, ref = _write_table(tmp_path / "tokens.bin", rng, n_docs=200, alignment=4096)
    errors: list[BaseException] = []
    with DiskTokenStore(tf, dim=DIM, ids=ids, cache_bytes=4096 * 4, read_threads=6) as store:

        def worker(seed: int) -> None:
            r = np.random.default_rng(seed)
            try:
                for _ in range(25):
                    rows = r.integers(0, 200, 15)
                    handle = store.prefetch(r.integers(0, 200, 15)) if seed % 2 else None
                    _assert_same(store.get(rows, prefetched=handle), ref, rows)
            except BaseException as e:  # noqa: BLE001 - surfaced in the main thread
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        assert store.resident_bytes <= 4096 * 4


def test_truncated_file_names_document_and_file_and_keeps_serving(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "tokens.bin"
    tf, ids, ref = _write_table(path, rng, n_docs=30, alignment=4096)
    last_start = int(tf.record_offsets[29])
    os.truncate(path, last_start + 10)  # the last record loses all but 10 bytes
    for direct in (False, True):
        with DiskTokenStore(tf, dim=DIM, ids=ids, direct=direct) as store:
            with pytest.raises(TokenReadError) as ei:
                store.get(np.array([0, 29]))
            msg = str(ei.value)
            assert "document row 29" in msg and "'doc-29'" in msg and str(path) in msg
            assert "short read" in msg and "got 10" in msg
            handle = store.prefetch(np.array([29, 1]))  # the prefetch path reports the same
            with pytest.raises(TokenReadError, match="doc-29"):
                store.get(np.array([29]), prefetched=handle)
            rows = np.array([0, 1, 28, 5])  # other documents are still served
            _assert_same(store.get(rows, prefetched=handle), ref, rows)
            assert store.stats()["read_errors"] >= 2


def test_read_error_is_token_read_error(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    tf, ids, ref = _write_table(tmp_path / "tokens.bin", rng, n_docs=10)
    with DiskTokenStore(tf, dim=DIM, ids=ids) as store:
        real = os.preadv
        calls = {"n": 0}

        def flaky(fd, bufs, off):
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError(errno.EIO, "Input/output error")
            return real(fd, bufs, off)

        monkeypatch.setattr(os, "preadv", flaky)
        with pytest.raises(TokenReadError, match=r"document row 3 \(id 'doc-3'\).*Input/output error"):
            store.get(np.array([3]))
        _assert_same(store.get(np.array([3, 4])), ref, [3, 4])  # retried, not poisoned


def test_odirect_refused_at_open_falls_back(tmp_path, monkeypatch, caplog):
    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this platform")
    rng = np.random.default_rng(7)
    tf, ids, ref = _write_table(tmp_path / "tokens.bin", rng, n_docs=20)
    real_open = os.open

    def refusing_open(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_open)
    with caplog.at_level(logging.WARNING, logger="mvr.serving"):
        with DiskTokenStore(tf, dim=DIM, ids=ids, direct=True) as store:
            assert not store.direct
            cfg = store.stats()["config"]
            assert cfg["direct_requested"] and not cfg["direct"]
            rows = np.arange(20)
            _assert_same(store.get(rows), ref, rows)
    assert any("refused O_DIRECT" in r.getMessage() for r in caplog.records)


def test_odirect_refused_at_read_falls_back(tmp_path, monkeypatch, caplog):
    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this platform")
    rng = np.random.default_rng(8)
    tf, ids, ref = _write_table(tmp_path / "tokens.bin", rng, n_docs=20)
    with DiskTokenStore(tf, dim=DIM, ids=ids, direct=True, read_threads=1) as store:
        if not store.direct:
            pytest.skip("tmp_path's filesystem refuses O_DIRECT already")
        real = os.preadv
        direct_fd = store._files[0].fd

        def refusing(fd, bufs, off):
            if fd == direct_fd:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real(fd, bufs, off)

        monkeypatch.setattr(os, "preadv", refusing)
        with caplog.at_level(logging.WARNING, logger="mvr.serving"):
            rows = np.arange(20)
            _assert_same(store.get(rows), ref, rows)
        assert not store.direct
    assert any("O_DIRECT read refused" in r.getMessage() for r in caplog.records)


def test_top_rows_matches_full_sort():
    rng = np.random.default_rng(9)
    s = rng.standard_normal((4, 50)).astype(np.float32)
    s[0, :10] = -np.inf
    top, rows = top_rows(s, 45)
    for q in range(4):
        ref = np.argsort(-s[q], kind="stable")[:45]
        finite = np.isfinite(s[q, ref])
        np.testing.assert_array_equal(rows[q][finite], ref[finite])
        assert (rows[q][~finite] == -1).all()


def test_prefix_coarse_pass_full_width_is_exact_and_blocked():
    rng = np.random.default_rng(10)
    fdes = rng.standard_normal((300, 24)).astype(np.float32)
    q = rng.standard_normal((3, 24)).astype(np.float32)
    allowed = np.ones(300, bool)
    allowed[::7] = False
    coarse = PrefixCoarsePass(fdes, 24, block_rows=64)
    _, rows = coarse.search(q, 20, allowed=allowed)
    s = q @ fdes.T
    s[:, ~allowed] = -np.inf
    np.testing.assert_array_equal(rows, np.argsort(-s, axis=1, kind="stable")[:, :20])
    _, rows8 = PrefixCoarsePass(fdes, 8).search(q, 20)
    np.testing.assert_array_equal(rows8, np.argsort(-(q[:, :8] @ fdes[:, :8].T), axis=1, kind="stable")[:, :20])
    with pytest.raises(ConfigError, match="expected 1..24, got 25"):
        PrefixCoarsePass(fdes, 25)


def test_prefetcher_hits_and_results_equal_reference(tmp_path):
    rng = np.random.default_rng(11)
    tf, ids, ref = _write_table(tmp_path / "tokens.bin", rng, n_docs=120, alignment=4096)
    fdes = rng.standard_normal((120, 32)).astype(np.float32)
    qf = rng.standard_normal((4, 32)).astype(np.float32)
    with DiskTokenStore(tf, dim=DIM, ids=ids, cache_bytes=0) as store:
        timer = StageTimer()
        pf = Prefetcher(store, PrefixCoarsePass(fdes, 32), coarse_candidates=15, timer=timer)
        handle = pf.start(qf)
        _, full = PrefixCoarsePass(fdes, 32).search(qf, 10)  # the "full" first stage
        needed = full.reshape(-1)
        _assert_same(store.get(needed, prefetched=handle), ref, needed)
        st = store.stats()
        assert st["rows_needed"] == len(np.unique(needed))
        assert st["coarse_recall"] == 1.0  # full-width coarse pass predicts all
        assert st["reads_issued"] == len(handle)  # no synchronous reads
        assert st["rows_read_sync"] == 0
        assert set(timer.percentiles()) == {"coarse", "prefetch_submit"}


def test_pipelined_keeps_order_and_propagates_errors():
    seen = []

    def front(x):
        seen.append(("front", x))
        return x * 10

    def back(y):
        if y == 30:
            raise ValueError("boom at 3")
        return y + 1

    assert list(pipelined(range(3), front, back, depth=2)) == [1, 11, 21]
    with pytest.raises(ValueError, match="boom at 3"):
        list(pipelined(range(5), front, back))


def test_projected_coarse_pass_full_rank_matches_exact_and_beats_prefix():
    rng = np.random.default_rng(12)
    basis = rng.standard_normal((4, 32)).astype(np.float32)  # FDEs of rank ~4 plus noise
    fdes = rng.standard_normal((2000, 4)).astype(np.float32) @ basis
    fdes += 0.05 * rng.standard_normal(fdes.shape).astype(np.float32)
    q = rng.standard_normal((8, 4)).astype(np.float32) @ basis
    exact = np.argsort(-(q @ fdes.T), axis=1, kind="stable")[:, :20]

    def recall(rows):
        return np.mean([len(set(a) & set(b)) / 20 for a, b in zip(rows, exact, strict=True)])

    _, full = ProjectedCoarsePass(fdes, 32, sample=2000).search(q, 20)
    assert recall(full) >= 0.95  # a full-rank rotation preserves inner products
    _, proj = ProjectedCoarsePass(fdes, 4, sample=500).search(q, 20)
    _, pref = PrefixCoarsePass(fdes, 4).search(q, 20)
    assert recall(proj) > recall(pref) and recall(proj) >= 0.8


def test_ivf_coarse_pass_all_lists_is_exact():
    rng = np.random.default_rng(13)
    fdes = rng.standard_normal((3000, 16)).astype(np.float32)
    q = rng.standard_normal((5, 16)).astype(np.float32)
    exact = np.argsort(-(q @ fdes.T), axis=1, kind="stable")[:, :30]
    coarse = IVFCoarsePass(fdes, nlist=16, nprobe=16)  # every list: only 8-bit rounding differs
    _, rows = coarse.search(q, 30)
    recall = np.mean([len(set(a) & set(b)) / 30 for a, b in zip(rows, exact, strict=True)])
    assert recall >= 0.9 and coarse.ntotal == 3000
    few = IVFCoarsePass(fdes, nlist=16, nprobe=1)
    _, rows1 = few.search(q, 30)
    assert np.mean([len(set(a) & set(b)) / 30 for a, b in zip(rows1, exact, strict=True)]) < recall


def test_out_of_range_row_is_an_mvr_index_error_naming_row_and_range(tmp_path):
    from mvr.errors import MVRError, RowOutOfRangeError

    tf, ids, ref = _write_table(tmp_path / "tokens.bin", np.random.default_rng(4), n_docs=9)
    with DiskTokenStore(tf, dim=DIM, ids=ids, read_threads=2) as store:
        for bad in (9, -1):
            with pytest.raises(RowOutOfRangeError, match=rf"row {bad} .*expected 0 <= row < 9"):
                store.get(np.array([0, bad]))
        with pytest.raises(IndexError):  # the builtin it refines
            store.get(np.array([12]))
        assert issubclass(RowOutOfRangeError, MVRError)
