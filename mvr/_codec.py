"""Compact token codes: k-means centroids + a scalar-quantised residual (ColBERTv2-style).

A :class:`TokenCodec` is trained once per index on a sample of pooled document
tokens and saved at the index root (``codec-<generation>.faiss``). It gives every
token

* a **centroid id** (``cids``, uint16/int32): the nearest of ``K`` k-means centroids.
  The ids of every token are held in RAM by the searcher; scored against the
  query-centroid similarities they give the cheap approximate MaxSim that narrows
  the first stage's candidates (PLAID's centroid interaction);
* a **residual code**: ``token - centroid`` scalar-quantised per dimension (4 or 8
  bits: ``dim / 2`` or ``dim`` bytes, 192 or 384 bytes for 384-d). These are the
  re-ranking table's records (``table_dtype="res4"`` / ``"res8"``);
* optionally an **approximate code** (``approx_pq`` bytes, ``IndexConfig.approx_pq``):
  the same residual product-quantised (faiss ``IndexPQ``, ``approx_pq`` sub-quantizers
  of 256 centroids). Held in RAM beside the centroid ids (64 bytes per token by
  default), it refines the approximate MaxSim: a token's similarity to query token
  ``q`` is ``q . centroid + sum_m LUT[m, code_m]`` with ``LUT`` the query's inner
  products with the sub-quantizer centroids (:meth:`TokenCodec.approx_tables`).
  On PyPI 701,912 the top 30 of 2,900 candidates kept 0.909 of the exhaustive
  top-10 with 64-byte codes (0.920 in all 2,900), against 0.420 from centroid ids
  alone.
* with a **refined** table (``table_dtype="pqr2"`` / ``"pqr4"``, format 4) the residual
  code quantises what the approximate code leaves: ``token - centroid - PQ(token -
  centroid)``, 2 or 4 bits per dimension against per-dimension levels fitted by
  Lloyd's algorithm (1-D k-means) on the training sample. A token is then
  ``centroid + PQ reconstruction + level[code]``: the approximate code, which the
  middle stage holds anyway, is the table's first refinement, and the record only
  carries the rest (96 bytes per 384-d token at 2 bits, where res8 carries 384).
  The PQ takes ~3/4 of the residual's energy (SciFact: 0.400 -> 0.092 per token).
  Measured on SciFact (exhaustive MaxSim over decoded tokens, Recall@10 vs float16's
  top-10 / nDCG@10): pqr2 0.970 / 0.7090, pqr4 0.988 / 0.7103, against res8 0.998 /
  0.7110 and res4 0.982 / 0.7111; so res8 stays the default (EVALUATION.md).

The arithmetic is faiss's ``IndexIVFScalarQuantizer`` with ``by_residual=True``
(coarse k-means quantizer, per-dimension ranges trained on the residuals), whose
``sa_encode`` code is ``[centroid id, little-endian, coarse_code_size bytes] +
[residual code]``. faiss is imported lazily: ``import mvr`` stays light.

File: a codec without approximate codes is faiss's serialisation of the
``IndexIVFScalarQuantizer``; with them, ``_PAIR_MAGIC``, then the two faiss
serialisations (the scalar quantizer's, then the ``IndexPQ``'s), each preceded by its
length (<u8). A refined codec is ``_TRIPLE_MAGIC`` and three parts so framed: the
two faiss serialisations (the scalar quantizer there only carries the coarse
quantizer) and the levels, ``dim * 2**bits`` little-endian float32, row-major.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mvr.errors import ConfigError, CorruptIndexError, DimensionMismatchError

__all__ = ["TokenCodec", "CODEC_BITS", "REFINED_DTYPES", "residual_code_size",
           "choose_num_centroids"]

CODEC_BITS = {"res4": 4, "res8": 8, "pqr2": 2, "pqr4": 4}
#: Tables whose residual is taken after the approximate code (they need it to decode).
REFINED_DTYPES = ("pqr2", "pqr4")
_PAIR_MAGIC = b"MVRCODEC\x02\x00\x00\x00"  # codec file with approximate codes (12 bytes)
_TRIPLE_MAGIC = b"MVRCODEC\x03\x00\x00\x00"  # refined codec: + per-dimension levels
_LLOYD_ITERS = 10
_LEVEL_FIT_ROWS = 32_768


def residual_code_size(dim: int, dtype: str) -> int:
    """Bytes of one token's residual code for ``table_dtype`` ``dtype``."""
    bits = CODEC_BITS.get(dtype)
    if bits is None:
        raise ConfigError(f"table dtype: expected one of {sorted(CODEC_BITS)}, got {dtype!r}")
    return (dim * bits + 7) // 8


def choose_num_centroids(n_tokens: int, maximum: int) -> int:
    """Centroids for a training sample of ``n_tokens``: the largest power of two with at
    least 32 points per centroid, between 1 and ``maximum``."""
    k = 1
    while k * 2 <= maximum and k * 2 * 32 <= n_tokens:
        k *= 2
    return k


class TokenCodec:
    """Centroid ids + residual codes of token vectors (see the module docstring).

    Use :meth:`train` or :meth:`load`.
    """

    def __init__(self, index: Any, dtype: str, approx: Any = None,
                 levels: np.ndarray | None = None) -> None:
        self._index = index
        self.approx = approx  # faiss.IndexPQ over residuals, or None
        self.approx_bytes = 0 if approx is None else int(approx.pq.M)
        self.dtype = dtype
        self.dim = int(index.d)
        self.num_centroids = int(index.nlist)
        self.refined = dtype in REFINED_DTYPES
        self._coarse = int(index.coarse_code_size())
        # a refined codec's scalar quantizer only carries the coarse quantizer (4 bits)
        carrier = "res4" if self.refined else dtype
        if int(index.code_size) != residual_code_size(self.dim, carrier):
            raise CorruptIndexError(
                f"token codec: expected {residual_code_size(self.dim, carrier)} bytes per "
                f"{carrier} code at dim {self.dim}, got {int(index.code_size)}"
            )
        self.code_size = residual_code_size(self.dim, dtype)
        self.levels: np.ndarray | None = None
        if self.refined:
            bits = CODEC_BITS[dtype]
            if approx is None or levels is None:
                raise CorruptIndexError(
                    f"token codec: a {dtype} table needs approximate codes and residual levels"
                )
            lv = np.asarray(levels, dtype=np.float32)
            if lv.shape != (self.dim, 1 << bits) or not np.isfinite(lv).all():
                raise CorruptIndexError(
                    f"token codec: expected finite {dtype} levels of shape "
                    f"({self.dim}, {1 << bits}), got {lv.shape}"
                )
            if self.dim * bits % 8:
                raise CorruptIndexError(
                    f"token codec: {dtype} needs dim * {bits} to be a multiple of 8, got dim "
                    f"{self.dim}"
                )
            self.levels = np.ascontiguousarray(lv)
            self._cutoffs = np.ascontiguousarray((lv[:, 1:] + lv[:, :-1]) / 2)
            self._lut = _byte_lut(self.levels, bits)
        quantizer = index.quantizer
        self.centroids = np.ascontiguousarray(
            quantizer.reconstruct_n(0, self.num_centroids), dtype=np.float32
        )
        self.cid_dtype = np.dtype(np.uint16 if self.num_centroids <= 1 << 16 else np.int32)
        if approx is not None:
            if int(approx.d) != self.dim or int(approx.pq.nbits) != 8:
                raise CorruptIndexError(
                    f"token codec: expected an approximate PQ of dim {self.dim} with 8-bit "
                    f"codes, got dim {int(approx.d)}, {int(approx.pq.nbits)} bits"
                )
            import faiss

            m = self.approx_bytes
            self._approx_centroids = np.ascontiguousarray(
                faiss.vector_to_array(approx.pq.centroids).reshape(m, 256, self.dim // m),
                dtype=np.float32)
        elif self.refined:
            raise CorruptIndexError(f"token codec: a {dtype} table needs approximate codes")

    # ------------------------------------------------------------------ training / io
    @classmethod
    def train(
        cls, sample: np.ndarray, *, dtype: str = "res4", num_centroids: int = 4096,
        seed: int = 0, niter: int = 10, approx_pq: int = 0,
    ) -> TokenCodec:
        """Train on ``sample`` (shape (n, dim), float) with at most ``num_centroids``
        centroids (fewer for a small sample, see :func:`choose_num_centroids`), and with
        ``approx_pq`` > 0 an approximate code of that many bytes on the sample's
        residuals (``dim`` must be a multiple of it)."""
        import faiss

        bits = CODEC_BITS.get(dtype)
        if bits is None:
            raise ConfigError(f"table dtype: expected one of {sorted(CODEC_BITS)}, got {dtype!r}")
        x = np.ascontiguousarray(sample, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise DimensionMismatchError(
                f"codec training sample: expected shape (n >= 1, dim), got {x.shape}"
            )
        refined = dtype in REFINED_DTYPES
        if refined and not approx_pq:
            raise ConfigError(
                f"table dtype {dtype!r} refines the approximate codes: expected approx_pq > 0, "
                f"got {approx_pq}"
            )
        k = choose_num_centroids(x.shape[0], num_centroids)
        d = int(x.shape[1])
        if refined and d * bits % 8:
            raise ConfigError(
                f"table dtype {dtype!r}: expected a token dim with dim * {bits} a multiple of 8, "
                f"got {d}"
            )
        if refined:
            bits = 4  # the scalar quantizer only carries the coarse quantizer
        qtype = faiss.ScalarQuantizer.QT_4bit if bits == 4 else faiss.ScalarQuantizer.QT_8bit
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, k, qtype, faiss.METRIC_L2, True)
        # per-dimension ranges at mean +- 3 std of the residuals, not their min/max: on
        # PyPI 10k (res4) that cut the squared error 3x (0.0172 -> 0.0059) and raised the
        # exact top-10 over decoded tokens from 0.947 to 0.960 of float16's; 8 bits keep
        # min/max (0.997 there; clipping would cost more than the finer step gains)
        if bits == 4:
            index.sq.rangestat = faiss.ScalarQuantizer.RS_meanstd
            index.sq.rangestat_arg = 3.0
        index.cp.seed = seed
        index.cp.niter = niter
        index.cp.min_points_per_centroid = 1
        index.cp.max_points_per_centroid = 1 << 30
        index.verbose = False
        index.train(x)
        approx = None
        if approx_pq:
            if approx_pq < 0 or d % approx_pq:
                raise ConfigError(
                    f"approx_pq: expected a divisor of the token dim {d} (bytes per token), "
                    f"got {approx_pq}"
                )
            _, assign = index.quantizer.search(x, 1)
            resid = x - index.quantizer.reconstruct_n(0, index.nlist)[assign[:, 0]]
            if resid.shape[0] < 256:  # 256 centroids per sub-quantizer need 256 points
                resid = np.resize(resid, (256, d))
            approx = faiss.IndexPQ(d, int(approx_pq), 8)
            approx.pq.cp.seed = seed
            approx.pq.cp.niter = niter
            approx.pq.cp.min_points_per_centroid = 1
            approx.pq.cp.max_points_per_centroid = 1 << 30
            approx.train(np.ascontiguousarray(resid, dtype=np.float32))
        levels = None
        if refined and approx is not None:  # (approx_pq > 0 was checked above)
            # 1-D levels settle on far fewer points than k-means needs: every
            # ceil(n / 32,768)-th residual of the sample
            sub = np.ascontiguousarray(resid[:: -(-resid.shape[0] // _LEVEL_FIT_ROWS)],
                                       dtype=np.float32)
            levels = _fit_levels(sub - approx.sa_decode(approx.sa_encode(sub)),
                                 CODEC_BITS[dtype])
        return cls(index, dtype, approx, levels)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the codec (faiss format) to ``path`` atomically (temp, fsync, rename)."""
        import faiss

        from mvr._manifest import atomic_write_bytes

        data = faiss.serialize_index(self._index).tobytes()
        if self.approx is not None:
            pq = faiss.serialize_index(self.approx).tobytes()
            parts = [data, pq]
            if self.levels is not None:
                parts.append(self.levels.astype("<f4").tobytes())
            magic = _TRIPLE_MAGIC if self.levels is not None else _PAIR_MAGIC
            data = b"".join([magic] + [b for p in parts
                                       for b in (len(p).to_bytes(8, "little"), p)])
        atomic_write_bytes(path, data)

    @classmethod
    def load(cls, path: str | os.PathLike[str], dtype: str) -> TokenCodec:
        """Read a codec written by :meth:`save`; a damaged file raises CorruptIndexError."""
        import faiss

        p = Path(path)
        approx = levels = None
        refined = dtype in REFINED_DTYPES
        try:
            data = np.fromfile(p, dtype=np.uint8)
            magic = data[: len(_PAIR_MAGIC)].tobytes()
            if refined != (magic == _TRIPLE_MAGIC):
                raise CorruptIndexError(
                    f"token codec {p}: a {dtype} table expects a "
                    f"{'refined' if refined else 'plain'} codec file, the file is "
                    f"{'refined' if magic == _TRIPLE_MAGIC else 'not'}"
                )
            if magic in (_PAIR_MAGIC, _TRIPLE_MAGIC):
                parts = _split_parts(data, p, 3 if refined else 2)
                index = faiss.deserialize_index(parts[0])
                approx = faiss.deserialize_index(parts[1])
                if refined:
                    dim, width = int(index.d), 1 << CODEC_BITS[dtype]
                    if parts[2].shape[0] != dim * width * 4:
                        raise CorruptIndexError(
                            f"token codec {p}: expected {dim * width * 4} bytes of {dtype} "
                            f"levels, got {parts[2].shape[0]}"
                        )
                    levels = parts[2].view("<f4").reshape(dim, width)
            else:
                index = faiss.deserialize_index(data)
        except CorruptIndexError:
            raise
        except (RuntimeError, OSError) as e:
            raise CorruptIndexError(f"token codec {p}: cannot be read ({e})") from e
        if not isinstance(index, faiss.IndexIVFScalarQuantizer):
            raise CorruptIndexError(
                f"token codec {p}: expected an IndexIVFScalarQuantizer, got {type(index).__name__}"
            )
        if approx is not None and not isinstance(approx, faiss.IndexPQ):
            raise CorruptIndexError(
                f"token codec {p}: expected an IndexPQ for the approximate codes, got "
                f"{type(approx).__name__}"
            )
        return cls(index, dtype, approx, levels)

    # ------------------------------------------------------------------ coding
    def encode(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centroid ids (shape (n,), :attr:`cid_dtype`) and residual codes (shape
        (n, code_size), uint8) of ``vectors`` (shape (n, dim))."""
        cids, codes, _ = self._encode(vectors, with_approx=False)
        return cids, codes

    def encode_full(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`encode` and, for a codec with approximate codes, the approximate codes
        (shape (n, approx_bytes), as :meth:`encode_approx`; ``None`` without), computed
        once where a refined table needs them for its residual."""
        return self._encode(vectors, with_approx=True)

    def _encode(self, vectors: np.ndarray, with_approx: bool,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DimensionMismatchError(
                f"codec input: expected shape (n, {self.dim}), got {x.shape}"
            )
        if x.shape[0] == 0:
            return (np.zeros(0, self.cid_dtype), np.zeros((0, self.code_size), np.uint8),
                    None if self.approx is None else np.zeros((0, self.approx_bytes), np.uint8))
        if not self.refined:
            full = self._index.sa_encode(x)
            cids = np.zeros(x.shape[0], dtype=np.int64)
            for b in range(self._coarse):
                cids |= full[:, b].astype(np.int64) << (8 * b)
            cids = cids.astype(self.cid_dtype)
            acodes = (self.encode_approx(x, cids) if with_approx and self.approx is not None
                      else None)
            return cids, np.ascontiguousarray(full[:, self._coarse :]), acodes
        _, assign = self._index.quantizer.search(x, 1)
        c = assign[:, 0]
        resid = x - self.centroids[c]
        acodes = pq_encode(resid, self._approx_centroids)  # the residual needs them
        resid -= self.approx.sa_decode(acodes)
        return c.astype(self.cid_dtype), _pack(_quantize(resid, self._cutoffs),
                                               CODEC_BITS[self.dtype]), acodes

    def decode(self, cids: np.ndarray, codes: np.ndarray,
               acodes: np.ndarray | None = None) -> np.ndarray:
        """Token vectors (shape (n, dim), float32) from ids (n,) and codes (n, code_size);
        a refined table (``pqr2`` / ``pqr4``) also needs the tokens' approximate codes
        ``acodes`` (n, approx_bytes)."""
        cids = np.asarray(cids).reshape(-1)
        codes = np.asarray(codes, dtype=np.uint8).reshape(cids.shape[0], -1)
        if codes.shape[1] != self.code_size:
            raise DimensionMismatchError(
                f"codes: expected {self.code_size} bytes per token, got {codes.shape[1]}"
            )
        n = cids.shape[0]
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        if cids.min() < 0 or cids.max() >= self.num_centroids:
            raise CorruptIndexError(
                f"centroid ids: expected 0 <= id < {self.num_centroids}, got "
                f"[{int(cids.min())}, {int(cids.max())}]"
            )
        if self.refined:
            if acodes is None:
                raise ConfigError(f"a {self.dtype} table decodes with the approximate codes")
            a = np.asarray(acodes, dtype=np.uint8).reshape(n, -1)
            if a.shape[1] != self.approx_bytes:
                raise DimensionMismatchError(
                    f"approximate codes: expected {self.approx_bytes} bytes per token, got "
                    f"{a.shape[1]}"
                )
            from mvr._codec_kernels import decode_refined

            return decode_refined(cids, a, codes, self.centroids, self._approx_centroids,
                                  self._lut)
        full = np.empty((n, self._coarse + self.code_size), dtype=np.uint8)
        c = cids.astype(np.int64)
        for b in range(self._coarse):
            full[:, b] = (c >> (8 * b)) & 0xFF
        full[:, self._coarse :] = codes
        return np.asarray(self._index.sa_decode(full), dtype=np.float32)

    def encode_approx(self, vectors: np.ndarray, cids: np.ndarray) -> np.ndarray:
        """Approximate codes (shape (n, approx_bytes), uint8) of ``vectors`` (shape
        (n, dim)) whose centroid ids are ``cids`` (from :meth:`encode`)."""
        if self.approx is None:
            raise ConfigError("token codec: trained without approximate codes (approx_pq=0)")
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        c = np.asarray(cids).reshape(-1)
        if x.ndim != 2 or x.shape[1] != self.dim or c.shape[0] != x.shape[0]:
            raise DimensionMismatchError(
                f"approximate codes: expected vectors (n, {self.dim}) and n centroid ids, got "
                f"{x.shape} and {c.shape[0]}"
            )
        if x.shape[0] == 0:
            return np.zeros((0, self.approx_bytes), np.uint8)
        resid = x - self.centroids[c.astype(np.int64)]
        return pq_encode(resid, self._approx_centroids)

    def approx_tables(self, queries: np.ndarray) -> np.ndarray:
        """Inner products of every query token with every sub-quantizer centroid: shape
        (approx_bytes, 256, total_query_tokens), float32 (``queries``: (total, dim))."""
        if self.approx is None:
            raise ConfigError("token codec: trained without approximate codes (approx_pq=0)")
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DimensionMismatchError(
                f"query tokens: expected shape (n, {self.dim}), got {q.shape}"
            )
        m = self.approx_bytes
        sub = q.reshape(q.shape[0], m, self.dim // m).transpose(1, 0, 2)  # (m, n, dsub)
        return np.ascontiguousarray(np.matmul(self._approx_centroids, sub.transpose(0, 2, 1)))

    @property
    def approx_centroids(self) -> np.ndarray:
        """The approximate codes' sub-quantizer centroids: shape (approx_bytes, 256,
        dim / approx_bytes), float32."""
        if self.approx is None:
            raise ConfigError("token codec: trained without approximate codes (approx_pq=0)")
        return self._approx_centroids

    @property
    def nbytes(self) -> int:
        """RAM of the centroids (the SQ ranges are negligible)."""
        extra = 0 if self.approx is None else int(self._approx_centroids.nbytes)
        return int(self.centroids.nbytes) + extra

    def describe(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "dim": self.dim, "num_centroids": self.num_centroids,
                "code_size": self.code_size, "approx_bytes": self.approx_bytes}


def _quantize(x: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """Per-dimension level indices of ``x`` (n, dim): the number of the dimension's
    ``cutoffs`` (dim, L - 1, ascending) below each value. Shape (n, dim) uint8."""
    out = np.zeros(x.shape, np.uint8)
    for t in range(cutoffs.shape[1]):
        out += x > cutoffs[:, t]
    return out


def _pack(idx: np.ndarray, bits: int) -> np.ndarray:
    """``idx`` (n, dim) of ``bits`` each packed little-end first, ``8 / bits`` per byte.
    Shape (n, dim * bits / 8) uint8."""
    per = 8 // bits
    g = idx.reshape(idx.shape[0], -1, per)
    out = np.zeros(g.shape[:2], np.uint8)
    for j in range(per):
        out |= g[:, :, j] << np.uint8(bits * j)
    return out


def _byte_lut(levels: np.ndarray, bits: int) -> np.ndarray:
    """Decoding table of packed codes: ``lut[p, byte]`` is the ``8 / bits`` values the
    byte at position ``p`` stands for. Shape (dim * bits / 8, 256, 8 / bits) float32."""
    per, mask = 8 // bits, (1 << bits) - 1
    byte = np.arange(256)
    sub = np.stack([(byte >> (bits * j)) & mask for j in range(per)], 1)  # (256, per)
    lv = levels.reshape(-1, per, levels.shape[1])  # (P, per, L)
    return np.ascontiguousarray(
        lv[:, np.arange(per)[None, :], sub], dtype=np.float32)  # (P, 256, per)


def _fit_levels(x: np.ndarray, bits: int, iters: int = _LLOYD_ITERS) -> np.ndarray:
    """Per-dimension scalar quantiser levels of ``x`` (n, dim): Lloyd's algorithm in one
    dimension (``2**bits`` levels, started at the quantiles' midpoints, each level the
    mean of the values nearest it). Shape (dim, 2**bits) float32, ascending."""
    n, d = x.shape
    width = 1 << bits
    lv = np.quantile(x, (np.arange(width) + 0.5) / width, axis=0).T.astype(np.float64)
    base = (np.arange(d, dtype=np.int64) * width)[None, :]
    flat = x.astype(np.float64).ravel()
    for _ in range(iters):
        cut = (lv[:, 1:] + lv[:, :-1]) / 2
        cell = (_quantize(x, cut).astype(np.int64) + base).ravel()
        total = np.bincount(cell, weights=flat, minlength=d * width).reshape(d, width)
        count = np.bincount(cell, minlength=d * width).reshape(d, width)
        lv = np.where(count > 0, total / np.maximum(count, 1), lv)  # an empty cell stays
    return np.sort(lv, axis=1).astype(np.float32)


def pq_encode(x: np.ndarray, centroids: np.ndarray, rows: int = 256) -> np.ndarray:
    """Product-quantiser codes of ``x`` (shape (n, M * dsub)) against ``centroids``
    (shape (M, 256, dsub)): per sub-vector the nearest centroid (L2; the first on a tie),
    as ``faiss.IndexPQ.sa_encode`` gives them, by one batched GEMM over the M
    sub-quantizers per block of ``rows`` rows (``|c|^2 - 2 x.c``) into a reused
    (M, rows, 256) buffer that stays in L2, then one argmin. faiss's own loop is scalar
    at 6 dimensions per sub-quantizer; blocks of 8,192 rows, one GEMM per sub-quantizer,
    made 8 MB temporaries per step. A probe (no benchmark script) on 20,000 random 384-d
    vectors, quiet AVX-512 Xeon: 0.25 vs 0.85 CPU-s; in a 100k PyPI build the write stage
    moved only ~10% (its bulk is the coarse assignment). Codes identical to faiss's.
    Shape (n, M) uint8."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    m_count, k, dsub = centroids.shape
    if x.ndim != 2 or x.shape[1] != m_count * dsub or k > 256:
        raise DimensionMismatchError(
            f"PQ input: expected shape (n, {m_count * dsub}) and at most 256 centroids, got "
            f"{x.shape} and {k}"
        )
    out = np.empty((x.shape[0], m_count), np.uint8)
    c = np.asarray(centroids, dtype=np.float32)
    cn = np.einsum("mkd,mkd->mk", c, c)[:, None, :]  # (M, 1, k)
    ct = np.ascontiguousarray(-2.0 * c.transpose(0, 2, 1), dtype=np.float32)  # (M, dsub, k)
    buf = np.empty((m_count, min(rows, max(x.shape[0], 1)), k), np.float32)
    for lo in range(0, x.shape[0], rows):
        sub = x[lo : lo + rows].reshape(-1, m_count, dsub).transpose(1, 0, 2)  # (M, r, dsub)
        d = np.matmul(sub, ct, out=buf[:, : sub.shape[1]])
        d += cn
        out[lo : lo + sub.shape[1]] = np.argmin(d, axis=2).T
    return out


def _split_parts(data: np.ndarray, path: Path, count: int) -> list[np.ndarray]:
    """The ``count`` length-framed parts of a codec file with approximate codes."""
    pos = len(_PAIR_MAGIC)
    parts = []
    for _ in range(count):
        if data.shape[0] < pos + 8:
            raise CorruptIndexError(f"token codec {path}: truncated at byte {data.shape[0]}")
        n = int.from_bytes(data[pos : pos + 8].tobytes(), "little")
        pos += 8
        if data.shape[0] < pos + n:
            raise CorruptIndexError(
                f"token codec {path}: expected {pos + n} bytes, got {data.shape[0]}"
            )
        parts.append(data[pos : pos + n])
        pos += n
    if pos != data.shape[0]:
        raise CorruptIndexError(
            f"token codec {path}: expected {pos} bytes, got {data.shape[0]} (trailing data)"
        )
    return parts
