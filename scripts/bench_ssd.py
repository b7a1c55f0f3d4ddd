"""SSD re-ranking tables and the prefetcher: latency, QPS and table RAM per store mode.

Writes a generated table of at least 5 GB (``tokens.bin`` in the ``mvr.format``
layout, records aligned to 4 KiB) plus document FDEs under ``--dir``, then runs
the same pipeline (query FDEs -> exact first stage over the FDEs -> re-rank
the top ``--candidates`` with ``mvr.maxsim_candidates`` -> top-k) with the
table held in four ways:

* ``memory``: the whole table decoded in RAM (one flat float16 array);
* ``mmap``: ``np.memmap`` of ``tokens.bin`` (page cache dropped for the file
  first with ``posix_fadvise(DONTNEED)``: cold);
* ``ssd``: :class:`serving._disk_store.DiskTokenStore`, O_DIRECT (cold, the
  page cache never holds the table), 5% cache, misses read synchronously;
* ``ssd+prefetch``: the same plus the coarse pass (the first ``--coarse-dims``
  FDE columns = the first repetitions) whose top ``--coarse-candidates`` are
  read while the full first stage runs.

Also measured: aligned vs packed records (O_DIRECT reads of the same records
at their aligned offsets vs shifted inside a page as a packed layout puts
them) and a pipelined stream of single queries (first stage of the next query
overlapping the reads and re-ranking of the current one).

Usage::

    python scripts/bench_ssd.py --docs 600000 --dir .cache/bench_ssd/table
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mvr import FDEConfig, MultiVectors  # noqa: E402
from mvr._fde import encode_document_fdes, encode_query_fdes  # noqa: E402
from mvr._maxsim import maxsim_candidates  # noqa: E402
from mvr.format import aligned_offsets, encode_records, record_nbytes  # noqa: E402
from serving._disk_store import DiskTokenStore, TableFile  # noqa: E402
from serving._prefetch import (  # noqa: E402
    IVFCoarsePass,
    Prefetcher,
    PrefixCoarsePass,
    ProjectedCoarsePass,
    StageTimer,
    pipelined,
)

# ---------------------------------------------------------------------- data


def _fde_config(dim: int, args: argparse.Namespace) -> FDEConfig:
    return FDEConfig(
        dim=dim, num_repetitions=args.reps, num_simhash_projections=args.ksim,
        projection_dim=args.dproj, seed=7,
    )


def _doc_tokens(rng: np.random.Generator, centers: np.ndarray, n: int, lo: int, hi: int):
    """Topic-structured unit token vectors: each document mixes two topic centres + noise."""
    dim = centers.shape[1]
    lengths = rng.integers(lo, hi + 1, n)
    t1 = rng.integers(0, len(centers), n)
    t2 = rng.integers(0, len(centers), n)
    tok_doc = np.repeat(np.arange(n), lengths)
    pick = np.where(rng.random(len(tok_doc)) < 0.7, t1[tok_doc], t2[tok_doc])
    v = centers[pick] + rng.standard_normal((len(tok_doc), dim)).astype(np.float32) * 0.09
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float16), lengths


def generate(d: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write tokens.bin, lengths.npy, offsets.npy, fde.npy, queries.npz (reused when present)."""
    meta_path = d / "meta.json"
    want = {k: getattr(args, k) for k in ("docs", "dim", "min_tokens", "max_tokens", "reps", "ksim", "dproj", "queries", "alignment")}
    if meta_path.exists() and json.loads(meta_path.read_text()).get("args") == want:
        return json.loads(meta_path.read_text())
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((2048, args.dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    cfg = _fde_config(args.dim, args)
    fdes = np.lib.format.open_memmap(d / "fde.npy", "w+", np.float32, (args.docs, cfg.output_dim))
    all_lengths, all_offs, pos, t0 = [], [], 0, time.perf_counter()
    chunk = 20_000
    with open(d / "tokens.bin", "wb") as f:
        for lo in range(0, args.docs, chunk):
            n = min(chunk, args.docs - lo)
            vec, lengths = _doc_tokens(rng, centers, n, args.min_tokens, args.max_tokens)
            recs = encode_records(vec, lengths, "float16")
            offs = aligned_offsets(np.array([len(r) for r in recs]), args.alignment, pos)
            buf = bytearray(int(offs[-1] - pos))
            for r, o in zip(recs, offs[:-1], strict=True):
                buf[o - pos : o - pos + len(r)] = r
            f.write(buf)
            pos = int(offs[-1])
            all_lengths.append(lengths)
            all_offs.append(offs[:-1])
            off = np.zeros(n + 1, np.int64)
            np.cumsum(lengths, out=off[1:])
            fdes[lo : lo + n] = encode_document_fdes(MultiVectors(vec, off, validate=False), cfg)
            print(f"  generated {lo + n}/{args.docs} docs, {pos / 1e9:.2f} GB, "
                  f"{time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    fdes.flush()
    del fdes
    lengths = np.concatenate(all_lengths)
    np.save(d / "lengths.npy", lengths)
    np.save(d / "offsets.npy", np.concatenate(all_offs))
    _make_queries(d, rng, centers, lengths, args, cfg)
    meta = {"args": want, "table_bytes": pos, "tokens": int(lengths.sum()),
            "packed_bytes": int(lengths.sum()) * args.dim * 2}
    meta_path.write_text(json.dumps(meta))
    return meta


def _make_queries(d, rng, centers, lengths, args, cfg) -> None:
    """Queries: 32 tokens near a random target document's topics (read back from the table)."""
    targets = rng.choice(args.docs, args.queries, replace=False)
    offs = np.load(d / "offsets.npy")
    fd = os.open(d / "tokens.bin", os.O_RDONLY)
    qs = []
    for t in targets:
        n = int(lengths[t])
        raw = os.pread(fd, n * args.dim * 2, int(offs[t]))
        doc = np.frombuffer(raw, np.float16).reshape(n, args.dim).astype(np.float32)
        pick = doc[rng.integers(0, n, 32)] + rng.standard_normal((32, args.dim)).astype(np.float32) * 0.12
        qs.append(pick / np.linalg.norm(pick, axis=1, keepdims=True))
    os.close(fd)
    q = MultiVectors.from_arrays(qs)
    qfde = encode_query_fdes(q, FDEConfig(**{**cfg.to_dict(), "fill_empty_partitions": False}))
    np.savez(d / "queries.npz", vectors=q.vectors, offsets=q.offsets, fdes=qfde)


# ---------------------------------------------------------------------- stores


class MemoryStore:
    """The whole table decoded in RAM: flat float16 (total, dim) + token offsets."""

    def __init__(self, path: Path, offs: np.ndarray, lengths: np.ndarray, dim: int) -> None:
        self.dim = dim
        self.tok_off = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=self.tok_off[1:])
        self.flat = np.empty((int(self.tok_off[-1]), dim), np.float16)
        mm = np.memmap(path, np.uint8, "r")
        step = 50_000
        for lo in range(0, len(lengths), step):
            hi = min(lo + step, len(lengths))
            for i in range(lo, hi):
                nb = int(lengths[i]) * dim * 2
                self.flat[self.tok_off[i] : self.tok_off[i + 1]] = (
                    mm[offs[i] : offs[i] + nb].view(np.float16).reshape(-1, dim))
        del mm
        _drop_file_cache(path)
        self.resident_bytes = self.flat.nbytes + self.tok_off.nbytes

    def get(self, rows: np.ndarray, prefetched: Any = None) -> MultiVectors:
        s, e = self.tok_off[rows], self.tok_off[rows + 1]
        parts = [self.flat[a:b] for a, b in zip(s.tolist(), e.tolist(), strict=True)]
        off = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(e - s, out=off[1:])
        return MultiVectors(np.concatenate(parts), off, validate=False)

    def close(self) -> None:
        self.flat = None


class MmapStore:
    """``np.memmap`` of tokens.bin; records sliced and concatenated per request."""

    def __init__(self, path: Path, offs: np.ndarray, lengths: np.ndarray, dim: int) -> None:
        _drop_file_cache(path)
        self.path, self.dim, self.offs, self.lengths = path, dim, offs, lengths
        self.mm = np.memmap(path, np.uint8, "r")
        self.rss0 = _rss_file()

    def get(self, rows: np.ndarray, prefetched: Any = None) -> MultiVectors:
        nb = self.lengths[rows] * self.dim * 2
        parts = [self.mm[o : o + n].view(np.float16).reshape(-1, self.dim)
                 for o, n in zip(self.offs[rows].tolist(), nb.tolist(), strict=True)]
        off = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(self.lengths[rows], out=off[1:])
        return MultiVectors(np.concatenate(parts), off, validate=False)

    @property
    def resident_bytes(self) -> int:
        return _page_cache_bytes(self.path)

    def close(self) -> None:
        del self.mm


def _drop_file_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def _page_cache_bytes(path: Path) -> int:
    """Bytes of ``path`` resident in the page cache (mincore over a fresh read-only map)."""
    import ctypes
    import mmap as _mmap

    size = path.stat().st_size
    if size == 0:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, _mmap.PROT_READ, _mmap.MAP_SHARED, fd, 0)
        pages = (size + 4095) // 4096
        vec = (ctypes.c_ubyte * pages)()
        libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec)
        libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
    finally:
        os.close(fd)
    return int((np.frombuffer(vec, np.uint8) & 1).sum()) * 4096


def _rss_file() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    return 0


def _mem_available() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------------- pipeline


class Pipeline:
    """first stage (exact, blocked GEMM over FDEs) -> gather -> MaxSim -> top-k."""

    def __init__(self, store: Any, first: PrefixCoarsePass, args: argparse.Namespace, prefetcher=None):
        self.store, self.args, self.prefetcher, self.first = store, args, prefetcher, first
        self.timer = prefetcher.timer if prefetcher is not None else StageTimer()

    def front(self, batch: tuple[MultiVectors, np.ndarray]):
        q, qf = batch
        t0 = time.perf_counter()
        handle = self.prefetcher.start(qf) if self.prefetcher else None
        with self.timer.time("first_stage"):
            _, rows = self.first.search(qf, self.args.candidates)
        return q, rows, handle, t0

    def back(self, state) -> tuple[np.ndarray, float]:
        q, rows, handle, t0 = state
        flat = rows.reshape(-1)
        with self.timer.time("gather"):
            docs = self.store.get(flat, prefetched=handle)
        with self.timer.time("maxsim"):
            cand = np.arange(0, len(flat) + 1, rows.shape[1])
            s = maxsim_candidates(q, docs, cand).reshape(rows.shape)
            order = np.argsort(-s, axis=1, kind="stable")[:, : self.args.k]
            top = np.take_along_axis(rows, order, axis=1)
        took = time.perf_counter() - t0
        self.timer.record("total", took)
        return top, took


def _batches(q: MultiVectors, qf: np.ndarray, b: int, lo: int, hi: int):
    for s in range(lo, min(len(q), hi), b):
        idx = np.arange(s, min(s + b, len(q)))
        if len(idx) == b:
            yield q.take(idx), qf[idx]


# ---------------------------------------------------------------------- alignment


def measure_alignment(path: Path, offs: np.ndarray, lengths: np.ndarray, dim: int) -> dict[str, float]:
    """O_DIRECT random reads of records at their 4 KiB-aligned offsets vs shifted by a random
    in-page amount (where a packed layout puts them); 8 alternating rounds of 500 each."""
    rng = np.random.default_rng(5)
    store = DiskTokenStore(TableFile(path, offs, lengths), dim=dim, cache_bytes=0, direct=True,
                           read_threads=16)
    tot = {"aligned": [0.0, 0, 0], "packed": [0.0, 0, 0]}
    for rnd in range(8):
        for name in (("aligned", "packed") if rnd % 2 else ("packed", "aligned")):
            rows = rng.choice(len(lengths), 500, replace=False)
            shift = rng.integers(0, 2048, len(rows)) * 2 if name == "packed" else np.zeros(len(rows), np.int64)
            spans = (-(-(shift + lengths[rows] * dim * 2) // 4096)) * 4096
            starts = offs[rows] - offs[rows] % 4096
            t0 = time.perf_counter()
            futs = [store._pool.submit(store._pread_direct, store._files[0], int(o), int(s))
                    for o, s in zip(starts, spans, strict=True)]
            for fu in futs:
                fu.result()
            tot[name][0] += time.perf_counter() - t0
            tot[name][1] += len(rows)
            tot[name][2] += int(spans.sum())
    store.close()
    out = {}
    for name, (secs, n, nbytes) in tot.items():
        out[f"{name}_kib_per_read"] = nbytes / n / 1024
        out[f"{name}_reads_per_s"] = n / secs
    return out


# ---------------------------------------------------------------------- main


def _disk_store(d: Path, offs, lengths, args) -> DiskTokenStore:
    table = int(record_nbytes(lengths, args.dim, "float16").sum())
    return DiskTokenStore(TableFile(d / "tokens.bin", offs, lengths), dim=args.dim,
                          cache_bytes=int(table * args.cache_fraction), direct=True,
                          read_threads=args.read_threads)


def _coarse(fdes: np.ndarray, args: argparse.Namespace):
    if args.coarse == "ivf":
        return IVFCoarsePass(fdes, nlist=args.coarse_nlist, nprobe=args.coarse_nprobe)
    if args.coarse == "prefix":
        return PrefixCoarsePass(fdes, args.coarse_dims)
    return ProjectedCoarsePass(fdes, args.coarse_dims)


def _reset(name: str, store: Any, d: Path) -> None:
    """Cold start of a mode: empty cache and counters; page cache of the file dropped."""
    if isinstance(store, DiskTokenStore):
        store.cache.clear()
        store.reset_stats()
    elif isinstance(store, MmapStore):
        _drop_file_cache(d / "tokens.bin")
        store.rss0 = _rss_file()


def _summary(lat: list[float], busy: float, b: int) -> dict[str, float]:
    ms = np.array(lat) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "qps": len(lat) * b / busy}


def _run_interleaved(stores, first, coarse, args, q, qf, b, d) -> list[dict]:
    """All modes on the same batches, round-robin per batch (they share the machine's load)."""
    pipes = {}
    for name, store in stores.items():
        _reset(name, store, d)
        pf = Prefetcher(store, coarse, args.coarse_candidates) if name.endswith("prefetch") else None
        pipes[name] = Pipeline(store, first, args, pf)
    warm = next(_batches(q, qf, b, len(q) - b, len(q)))  # a batch outside the timed ones
    for name, store in stores.items():
        pipes[name].back(pipes[name].front(warm))
        _reset(name, store, d)
        pipes[name].timer.reset()
    lat = {n: [] for n in stores}
    busy = dict.fromkeys(stores, 0.0)
    tops = {n: [] for n in stores}
    for i, batch in enumerate(_batches(q, qf, b, 0, args.limit[b])):
        names = list(stores)
        names = names[i % len(names):] + names[: i % len(names)]
        for n in names:
            t0 = time.perf_counter()
            top, took = pipes[n].back(pipes[n].front(batch))
            busy[n] += time.perf_counter() - t0
            lat[n].append(took)
            tops[n].append(top)
    return [_row(n, stores[n], pipes[n], b, _summary(lat[n], busy[n], b), np.concatenate(tops[n]),
                 np.concatenate(tops["memory"]) if "memory" in tops else None) for n in stores]


def _run_streams(stores, first, coarse, args, q, qf, d) -> list[dict]:
    """Pipelined streams of single queries (first stage of the next overlaps the current's
    reads + re-rank), modes alternating every 16 queries."""
    names = [n for n in ("memory", "ssd+prefetch") if n in stores]
    pipes = {}
    for n in names:
        _reset(n, stores[n], d)
        pf = Prefetcher(stores[n], coarse, args.coarse_candidates) if n.endswith("prefetch") else None
        pipes[n] = Pipeline(stores[n], first, args, pf)
    lat = {n: [] for n in names}
    busy = dict.fromkeys(names, 0.0)
    tops = {n: [] for n in names}
    for lo in range(0, args.limit[1], 16):
        for n in names:
            t0 = time.perf_counter()
            for top, took in pipelined(_batches(q, qf, 1, lo, lo + 16), pipes[n].front, pipes[n].back):
                lat[n].append(took)
                tops[n].append(top)
            busy[n] += time.perf_counter() - t0
    ref = np.concatenate(tops["memory"]) if "memory" in tops else None
    return [_row(n + " stream", stores[n], pipes[n], 1, _summary(lat[n], busy[n], 1),
                 np.concatenate(tops[n]), ref) for n in names]


def _row(name, store, pipe, b, summ, top, ref) -> dict[str, Any]:
    st = store.stats() if isinstance(store, DiskTokenStore) else {}
    same = "-" if ref is None or name.startswith("memory") else ("yes" if np.array_equal(ref, top) else "NO")
    row = {"mode": name, "batch": b, **summ, "ram": store.resident_bytes,
           "hit": st.get("prefetch_hit_rate"), "cache_hit": st.get("cache_hit_rate"),
           "coarse_recall": st.get("coarse_recall") if pipe.prefetcher is not None else None, "wait": st.get("wait_seconds"),
           "reads": st.get("reads_issued"), "gb_read": st.get("bytes_read", 0) / 1e9 if st else None,
           "same": same, "stages": pipe.timer.percentiles()}
    print(json.dumps({k: v for k, v in row.items() if k != "stages"}), file=sys.stderr, flush=True)
    return row


def bench(args: argparse.Namespace) -> None:
    d = Path(args.dir)
    meta = generate(d, args)
    offs, lengths = np.load(d / "offsets.npy"), np.load(d / "lengths.npy")
    fdes = np.ascontiguousarray(np.load(d / "fde.npy", mmap_mode="r"))  # in RAM in every mode
    qz = np.load(d / "queries.npz")
    q = MultiVectors(qz["vectors"], qz["offsets"], validate=False)
    qf = qz["fdes"]
    print(f"table: {args.docs} docs, {meta['tokens']} tokens x {args.dim} float16, "
          f"{meta['table_bytes'] / 1e9:.2f} GB on disk ({meta['packed_bytes'] / 1e9:.2f} GB packed); "
          f"FDE dim {fdes.shape[1]}", flush=True)
    align = measure_alignment(d / "tokens.bin", offs, lengths, args.dim)
    first = PrefixCoarsePass(fdes, fdes.shape[1])
    t0 = time.perf_counter()
    coarse = _coarse(fdes, args)
    coarse_build = time.perf_counter() - t0
    stores: dict[str, Any] = {}
    if _mem_available() >= meta["packed_bytes"] + (3 << 30):
        stores["memory"] = MemoryStore(d / "tokens.bin", offs, lengths, args.dim)
    else:
        print(f"# no memory mode: MemAvailable {_mem_available() / 2**30:.1f} GiB", file=sys.stderr)
    stores["mmap"] = MmapStore(d / "tokens.bin", offs, lengths, args.dim)
    stores["ssd"] = _disk_store(d, offs, lengths, args)
    stores["ssd+prefetch"] = _disk_store(d, offs, lengths, args)
    rows = []
    for b in args.batch_sizes:
        rows += _run_interleaved(stores, first, coarse, args, q, qf, b, d)
    if 1 in args.batch_sizes:
        rows += _run_streams(stores, first, coarse, args, q, qf, d)
    for s in stores.values():
        s.close()
    _print_tables(rows, align, meta, args, coarse, coarse_build)


def bench_index(args: argparse.Namespace) -> None:
    """The same four modes through ``serving.Searcher`` on a real index (e.g. SciFact)."""
    import zarr

    from serving import Searcher

    g = zarr.open_group(args.queries_vectors, mode="r")
    q = MultiVectors(np.asarray(g["vectors"][:]), np.asarray(g["offsets"][:], np.int64))
    ssd = {"direct": True, "read_threads": args.read_threads}
    opts = {"memory": {}, "mmap": {}, "ssd": {**ssd, "prefetch": False},
            "ssd+prefetch": {**ssd, "coarse": args.coarse, "coarse_dims": args.coarse_dims,
                             "coarse_candidates": args.coarse_candidates}}
    searchers = {m: Searcher.open(args.index, mode=m.split("+")[0], verify=False, **o)
                 for m, o in opts.items()}
    tables = list(searchers["memory"].store.layout.paths)
    mem_ram = searchers["memory"].store.stats()["ram_bytes"]
    print(f"index {args.index}: {searchers['memory'].num_documents} docs, table "
          f"{sum(p.stat().st_size for p in tables) / 1e6:.0f} MB, {len(q)} queries", flush=True)
    rows = []
    for b in args.batch_sizes:
        for m, s in searchers.items():
            if m.startswith("ssd"):
                s.store.cache.clear()
                s.store.reset_stats()
            elif m == "mmap":
                for p in tables:
                    _drop_file_cache(p)
        for m, s in searchers.items():  # warm-up (kernels compiled, threads started)
            s.search(q[:b], k=args.k, candidates=args.candidates)
            if m.startswith("ssd"):
                s.store.cache.clear()
                s.store.reset_stats()
            elif m == "mmap":
                for p in tables:
                    _drop_file_cache(p)
        lat = {m: [] for m in searchers}
        busy = dict.fromkeys(searchers, 0.0)
        ids = {m: [] for m in searchers}
        batches = [q[i : i + b] for i in range(0, min(len(q), args.limit[b]) - b + 1, b)]
        for i, batch in enumerate(batches):
            names = list(searchers)
            for m in names[i % 4:] + names[: i % 4]:
                t0 = time.perf_counter()
                res = searchers[m].search(batch, k=args.k, candidates=args.candidates)
                took = time.perf_counter() - t0
                busy[m] += took
                lat[m].append(took)
                ids[m] += res.ids
        mmap_ram = sum(_page_cache_bytes(p) for p in tables)
        for m, s in searchers.items():
            st = s.store.stats()
            ram = {"memory": mem_ram, "mmap": mmap_ram}.get(m, st.get("resident_bytes", 0))
            rows.append({"mode": m, "batch": b, **_summary(lat[m], busy[m], b), "ram": ram,
                         "hit": st.get("prefetch_hit_rate"), "cache_hit": st.get("cache_hit_rate"),
                         "coarse_recall": st.get("coarse_recall") if m == "ssd+prefetch" else None,
                         "wait": st.get("wait_seconds"), "reads": st.get("reads_issued"),
                         "gb_read": st["bytes_read"] / 1e9 if m.startswith("ssd") else None,
                         "same": "-" if m == "memory" else ("yes" if ids[m] == ids["memory"] else "NO"),
                         "stages": {}})
    for s in searchers.values():
        s.close()
    _print_main_table(rows)


def _coarse_desc(args: argparse.Namespace) -> str:
    if args.coarse == "ivf":
        return f"8-bit IVF, nprobe {args.coarse_nprobe} of {args.coarse_nlist} lists"
    return f"{args.coarse} {args.coarse_dims} dims"


def _fmt(v: Any, f: str) -> str:
    return "-" if v is None else f.format(v)


def _print_tables(rows, align, meta, args, coarse, coarse_build) -> None:
    print(f"\n{meta['table_bytes'] / 1e9:.2f} GB table ({args.docs} docs x {args.min_tokens}-"
          f"{args.max_tokens} tokens x {args.dim} float16, records aligned to {args.alignment} B); "
          f"exact first stage over {args.reps * 2 ** args.ksim * args.dproj}-d FDEs, top {args.candidates} "
          f"re-ranked, k {args.k}; coarse pass: {_coarse_desc(args)} "
          f"({coarse.nbytes / 2**20 if hasattr(coarse, 'nbytes') else 0:.0f} MiB, built in "
          f"{coarse_build:.1f} s), top {args.coarse_candidates} prefetched; ssd: O_DIRECT, cache "
          f"{args.cache_fraction:.0%} of the table, {args.read_threads} read threads; mmap: page cache "
          "of the file dropped before each batch size\n")
    _print_main_table(rows)
    _print_rest(rows, align, meta)


def _print_main_table(rows: list[dict]) -> None:
    mem = {r["batch"]: r for r in rows if r["mode"] == "memory"}
    print("| mode | batch | p50 ms | p95 ms | QPS | p50 / memory | table RAM | RAM / memory | "
          "prefetch hit rate | coarse recall | cache hit rate | read wait s | reads | GB read | ids = memory |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = mem.get(r["batch"])
        ratio = f"{r['p50'] / m['p50']:.2f}x" if m else "-"
        rram = f"{r['ram'] / m['ram']:.1%}" if m else "-"
        print(f"| {r['mode']} | {r['batch']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['qps']:.1f} | {ratio} | "
              f"{r['ram'] / 2**20:.0f} MiB | {rram} | {_fmt(r['hit'], '{:.1%}')} | "
              f"{_fmt(r['coarse_recall'], '{:.1%}')} | {_fmt(r['cache_hit'], '{:.1%}')} | "
              f"{_fmt(r['wait'], '{:.2f}')} | {_fmt(r['reads'], '{}')} | {_fmt(r['gb_read'], '{:.2f}')} | "
              f"{r['same']} |")


def _print_rest(rows: list[dict], align: dict, meta: dict) -> None:
    stages = ("coarse", "prefetch_submit", "first_stage", "gather", "maxsim", "total")
    print("\nper-stage p50 ms:\n")
    print("| mode | batch | " + " | ".join(stages) + " |")
    print("|---|---|" + "---|" * len(stages))
    for r in rows:
        st = r["stages"]
        print(f"| {r['mode']} | {r['batch']} | " + " | ".join(
            f"{st[s]['p50_ms']:.2f}" if s in st else "-" for s in stages) + " |")
    print("\nrecord layout (O_DIRECT random reads, 16 threads, 4,000 records each, 8 alternating rounds):\n")
    print("| layout | KiB read per record | records/s | table bytes |")
    print("|---|---|---|---|")
    print(f"| aligned 4 KiB | {align['aligned_kib_per_read']:.1f} | {align['aligned_reads_per_s']:.0f} | "
          f"{meta['table_bytes'] / 1e9:.2f} GB |")
    print(f"| packed | {align['packed_kib_per_read']:.1f} | {align['packed_reads_per_s']:.0f} | "
          f"{meta['packed_bytes'] / 1e9:.2f} GB |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", default=".cache/bench_ssd/table")
    p.add_argument("--docs", type=int, default=600_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--min-tokens", type=int, default=30)
    p.add_argument("--max-tokens", type=int, default=50)
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--ksim", type=int, default=3)
    p.add_argument("--dproj", type=int, default=8)
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--alignment", type=int, default=4096)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--coarse", choices=("ivf", "pca", "prefix"), default="ivf")
    p.add_argument("--coarse-dims", type=int, default=64, help="pca / prefix width")
    p.add_argument("--coarse-nlist", type=int, default=1024, help="ivf lists")
    p.add_argument("--coarse-nprobe", type=int, default=128, help="ivf lists scanned")
    p.add_argument("--coarse-candidates", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--cache-fraction", type=float, default=0.05)
    p.add_argument("--read-threads", type=int, default=32)
    p.add_argument("--batch-sizes", default="1,16,64")
    p.add_argument("--max-queries", type=int, default=128, help="queries per (mode, batch size)")
    p.add_argument("--generate-only", action="store_true")
    p.add_argument("--index", help="bench an existing mvr index through serving.Searcher instead")
    p.add_argument("--queries-vectors", help="with --index: precomputed query vectors (zarr)")
    p.add_argument("--delete", action="store_true", help="remove the generated table afterwards")
    args = p.parse_args(argv)
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    args.limit = {b: max(args.max_queries, 4 * b) for b in args.batch_sizes}
    try:
        if args.index:
            bench_index(args)
        elif args.generate_only:
            print(generate(Path(args.dir), args))
        else:
            bench(args)
    finally:
        if args.delete:
            for name in ("tokens.bin", "fde.npy", "lengths.npy", "offsets.npy", "queries.npz", "meta.json"):
                (Path(args.dir) / name).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
