"""Index configuration: what the build does, saved into the manifest.

:class:`IndexConfig` gathers the FDE, pooling, re-ranking-table and first-stage
settings of one index. It is frozen and keyword-only, validated in
``__post_init__``, and round-trips through :meth:`IndexConfig.to_dict` /
:meth:`IndexConfig.from_dict` (unknown keys are refused, never ignored).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from mvr._config import FDEConfig, PoolingConfig, config_from_dict
from mvr.errors import ConfigError
from mvr.format import CODED_DTYPES, REFINED_DTYPES, TABLE_DTYPES

__all__ = ["FirstStageConfig", "IndexConfig", "FIRST_STAGE_KINDS", "DEFAULT_FACTORY"]

DEFAULT_FACTORY = "PQ{m32}x4fs"

FIRST_STAGE_KINDS = ("exact", "hnsw", "ivfpq", "faiss")


def _int_at_least(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name}: expected an int >= {low}, got {value!r}")


def _optional_int(name: str, value: Any, low: int) -> None:
    if value is not None:
        _int_at_least(name, value, low)


@dataclass(frozen=True, kw_only=True)
class FirstStageConfig:
    """The first stage: maximum-inner-product search over document FDEs.

    Parameters
    ----------
    kind : {"faiss", "exact", "hnsw", "ivfpq"}
        ``faiss`` (the default): the faiss index that ``factory`` describes
        (``faiss.index_factory``, inner product), trained on a sample of the
        segment's FDEs; segments under ``min_rows`` get ``"Flat"`` (exact). Its
        codes are all the first stage keeps in RAM. ``exact``: blocked GEMM over
        float32 FDEs held in RAM (40 KB per document at the default FDE).
        ``hnsw``: faiss ``IndexHNSWFlat``. ``ivfpq``: faiss ``IndexIVFPQ`` with
        ``pq_group`` coordinates per 2**``pq_nbits``-centroid sub-quantizer
        (MUVERA's "PQ-256-8").
    factory : str
        faiss factory string of the ``faiss`` kind; ``{nlist}`` is replaced by the
        segment's IVF list count (``ivf_nlist`` or ``4 * sqrt(n)``), ``{m}`` by
        ``fde_dim / pq_group`` and ``{m32}`` by ``fde_dim / 32``. The default, 4-bit PQ
        fast-scan with one sub-quantizer per 32 FDE coordinates (160 B of codes per
        document at 10,240 dims) scanned in full, kept 0.988 of the exhaustive top-10 in
        its top 2,000 on SciFact, where an IVF in front of it (nprobe = nlist / 10) kept
        0.771; ``{m}`` with ``pq_group=8`` (640 B) took 299 s to train its 1,280
        sub-quantizers in a 5,434-document build on a loaded machine. EVALUATION.md
        compares them.
    hnsw_m : int
        HNSW graph degree.
    hnsw_ef_construction : int
        HNSW build beam width.
    hnsw_ef_search : int
        HNSW search beam width; raised to the number of candidates when smaller.
    ivf_nlist : int or None
        IVF lists; ``None`` = ``4 * sqrt(n)`` (at most ``n // 39``, at least 1).
    ivf_nprobe : int or None
        Lists scanned per query; ``None`` = ``max(1, nlist // 4)``.
    pq_group : int
        Coordinates per PQ sub-quantizer (M = fde_dim / pq_group).
    pq_nbits : int
        Bits per sub-quantizer code (8 = 256 centroids).
    train_size : int
        Rows sampled to train IVF/PQ.
    min_rows : int
        Segments with fewer documents use ``exact`` (too few points to train or to
        make a graph worthwhile); recorded per segment in the manifest.
    seed : int
        Seed for training samples.
    """

    kind: str = "faiss"
    factory: str = DEFAULT_FACTORY
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 256
    ivf_nlist: int | None = None
    ivf_nprobe: int | None = None
    pq_group: int = 8
    pq_nbits: int = 8
    train_size: int = 20_000
    min_rows: int = 1_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FIRST_STAGE_KINDS:
            raise ConfigError(
                f"first_stage.kind: expected one of {FIRST_STAGE_KINDS}, got {self.kind!r}"
            )
        if not isinstance(self.factory, str) or not self.factory.strip():
            raise ConfigError(
                f"first_stage.factory: expected a faiss factory string, got {self.factory!r}"
            )
        _int_at_least("first_stage.hnsw_m", self.hnsw_m, 2)
        _int_at_least("first_stage.hnsw_ef_construction", self.hnsw_ef_construction, 1)
        _int_at_least("first_stage.hnsw_ef_search", self.hnsw_ef_search, 1)
        _optional_int("first_stage.ivf_nlist", self.ivf_nlist, 1)
        _optional_int("first_stage.ivf_nprobe", self.ivf_nprobe, 1)
        _int_at_least("first_stage.pq_group", self.pq_group, 1)
        if self.pq_nbits not in (4, 6, 8, 10, 12, 16):
            raise ConfigError(
                f"first_stage.pq_nbits: expected one of (4, 6, 8, 10, 12, 16), got {self.pq_nbits!r}"
            )
        _int_at_least("first_stage.train_size", self.train_size, 1)
        _int_at_least("first_stage.min_rows", self.min_rows, 0)
        _int_at_least("first_stage.seed", self.seed, 0)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FirstStageConfig:
        return config_from_dict(cls, d)


@dataclass(frozen=True, kw_only=True)
class IndexConfig:
    """Everything the index build decides, recorded in ``manifest.json``.

    Parameters
    ----------
    fde : FDEConfig or None
        Document/query FDE settings. ``None`` = ``FDEConfig(dim=encoder dim)`` with
        the MUVERA defaults, fixed at build time by :meth:`resolved`.
    pooling : PoolingConfig
        Token pooling before the FDE and the re-ranking table (``pool_factor=2``).
    table_dtype : {"res8", "res4", "pqr2", "pqr4", "float16", "int8"}
        Re-ranking table record encoding (see :mod:`mvr.format`): ``res8`` (the
        default) = centroid + 8-bit residual per dimension, 1/2 of float16; ``res4``
        = 4-bit residual, 1/4 of float16. On PyPI 10k the exact top-10 over decoded
        tokens keeps 0.997 (res8) and 0.960 (res4) of float16's top-10; on SciFact
        res4 loses no nDCG@10 (EVALUATION.md): res4 where relevance, not agreement
        with exhaustive MaxSim, is what counts. ``pqr2`` / ``pqr4`` (format 4; need
        ``approx_pq`` > 0) code what the approximate code leaves of the residual: 96 / 192
        bytes per 384-d token; on SciFact 0.970 / 0.988 of float16's top-10.
    approx : bool
        Train the token codec and keep every token's centroid id (2 bytes) so that
        search narrows the first stage's candidates by approximate MaxSim before the
        exact re-rank (always on for ``res4``/``res8``, which need the codec).
    codec_centroids : int
        At most this many k-means centroids in the token codec (<= 65536).
    codec_train_tokens : int
        Pooled tokens (from the first documents) the codec is trained on.
    codec_iterations : int
        k-means (Lloyd) iterations of the codec's centroids and of its approximate
        codes' sub-quantizers. The centroid k-means is most of the codec's training time
        (4,096 centroids x 131,072 tokens x 384 dims per iteration). 4 (as ColBERTv2 /
        PLAID train theirs) against 10 on SciFact: codec training 14.9 s vs 32.3 s, the same
        nDCG@10 at defaults (0.7112) and Recall@10 vs exhaustive 0.9990 vs 0.9993
        (EVALUATION.md). Recorded configs from before this setting read as 10.
    approx_pq : int
        Bytes per token of the approximate codes (the residual product-quantised,
        :mod:`mvr._codec`; the largest divisor of the token dim up to it), held in RAM with the centroid ids
        to sharpen the approximate MaxSim; 0 = centroid ids alone. 64 (the default; 6
        dimensions per sub-quantizer at dim 384) is 468 MB at PyPI's 7.3M tokens. On PyPI
        701,912, of 2,900 candidates holding 0.920 of the exhaustive top-10, the
        approximate top 30 kept 0.909 with 64-byte codes, 0.833 with 32, 0.725 with 16
        and 0.420 with centroid ids alone.
    keep_fdes : bool
        Keep the float16 FDEs on disk after the first stage is built (format 2 drops
        them: compaction recomputes them from the stored tokens).
    record_alignment : int
        Records start on multiples of this many bytes (1 = packed, the default: a
        record under 4 KiB still spans at most two pages, and O_DIRECT reads take the
        aligned span around it; 4096 padded each 2 KB PyPI record of res4 codes to
        4 KiB, doubling the table).
    first_stage : FirstStageConfig
        First-stage backend and its parameters.
    batch_size : int
        Documents per build batch (bounds build memory; also the FDE chunk rows).
    store_text : bool
        Keep document texts in the index (for snippets and ``get_texts``).
    default_candidates : int
        First-stage candidates N per query when ``search`` gets none.
    default_rerank : int
        Of those, how many the approximate MaxSim keeps for the exact re-rank (when the
        index has centroid ids; ``search(rerank_candidates=...)`` overrides it). 50: with
        64-byte approximate codes on PyPI 701,912, 50 keep 0.903 of the exhaustive top-10
        (100: 0.911, 30: 0.889) at the same p50 (BENCHMARKS.md "Scale").
    centroid_candidates : int
        Indexes with centroid ids: candidates per query generated from the centroids'
        inverted lists (PLAID/WARP-style, :func:`mvr._approx.centroid_candidates`) and
        added to the first stage's before the approximate MaxSim; 0 = the first stage's
        alone. The FDE misses documents with few tokens (short texts), which share few
        partitions with the query; the token-level lists find them.
    centroid_nprobe : int
        Centroids probed per query token for those candidates.
    token_candidates : int
        Indexes with approximate codes (format 3): candidates per query from token-level
        inverted lists scored as WARP does (:mod:`serving._token_candidates`: each query
        token's best ``token_kprime`` tokens in its ``token_nprobe`` nearest centroids'
        lists, by 4-bit fast-scan codes derived at open from the approximate codes), added
        to the first stage's in place of the centroid lists'; 0 = the centroid lists.
        Search-time: an index built before it gets the default. On PyPI 701,912 (500
        queries, with the FDE's 2000 and ``default_rerank`` 50) Recall@10 vs exhaustive
        MaxSim is 0.949 with 2000 (1000: 0.925; the centroid lists' 1000: 0.903), for
        ~8 ms more per query than 1000 (BENCHMARKS.md "Scale").
    token_nprobe : int
        Centroids whose lists are scanned per query token for those candidates.
    token_kprime : int
        Tokens kept per query token (a document none of whose tokens is among them is
        estimated at the last one's score).
    candidate_tokens : int
        A budget of tokens for the approximate MaxSim: where ``(default_candidates +
        token_candidates) x`` the mean tokens per document exceeds it, both depths shrink
        in proportion (``serving._stages.search_depths``); 0 = no budget. 48,000 leaves
        PyPI's 10-token summaries at 2,000 + 2,000 and takes SciFact's 120-token
        abstracts to 200 + 200, which keep the exhaustive top-10 (1.000) at a third of
        the latency (EVALUATION.md). Search-time.
    """

    fde: FDEConfig | None = None
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    table_dtype: str = "res8"
    approx: bool = True
    codec_centroids: int = 4096
    codec_train_tokens: int = 131_072
    codec_iterations: int = 4
    approx_pq: int = 64
    keep_fdes: bool = False
    record_alignment: int = 1
    first_stage: FirstStageConfig = field(default_factory=FirstStageConfig)
    batch_size: int = 256
    store_text: bool = True
    default_candidates: int = 2000
    default_rerank: int = 50
    centroid_candidates: int = 1000
    centroid_nprobe: int = 8
    token_candidates: int = 2000
    token_nprobe: int = 16
    token_kprime: int = 1000
    candidate_tokens: int = 48_000

    def __post_init__(self) -> None:
        if self.fde is not None and not isinstance(self.fde, FDEConfig):
            raise ConfigError(f"fde: expected an FDEConfig or None, got {type(self.fde).__name__}")
        if not isinstance(self.pooling, PoolingConfig):
            raise ConfigError(f"pooling: expected a PoolingConfig, got {type(self.pooling).__name__}")
        if not isinstance(self.first_stage, FirstStageConfig):
            raise ConfigError(
                f"first_stage: expected a FirstStageConfig, got {type(self.first_stage).__name__}"
            )
        if self.table_dtype not in TABLE_DTYPES:
            raise ConfigError(f"table_dtype: expected one of {TABLE_DTYPES}, got {self.table_dtype!r}")
        _int_at_least("record_alignment", self.record_alignment, 1)
        _int_at_least("batch_size", self.batch_size, 1)
        _int_at_least("default_candidates", self.default_candidates, 1)
        _int_at_least("default_rerank", self.default_rerank, 1)
        _int_at_least("centroid_candidates", self.centroid_candidates, 0)
        _int_at_least("centroid_nprobe", self.centroid_nprobe, 1)
        _int_at_least("token_candidates", self.token_candidates, 0)
        _int_at_least("token_nprobe", self.token_nprobe, 1)
        _int_at_least("token_kprime", self.token_kprime, 1)
        _int_at_least("candidate_tokens", self.candidate_tokens, 0)
        _int_at_least("codec_centroids", self.codec_centroids, 1)
        if self.codec_centroids > 1 << 16:
            raise ConfigError(f"codec_centroids: expected <= 65536, got {self.codec_centroids}")
        _int_at_least("codec_train_tokens", self.codec_train_tokens, 1)
        _int_at_least("codec_iterations", self.codec_iterations, 1)
        _int_at_least("approx_pq", self.approx_pq, 0)
        if self.approx_pq > 256:
            raise ConfigError(f"approx_pq: expected <= 256 bytes per token, got {self.approx_pq}")
        if self.table_dtype in REFINED_DTYPES and self.approx_pq == 0:
            raise ConfigError(
                f"table_dtype {self.table_dtype!r} refines the approximate codes: expected "
                f"approx_pq > 0, got 0"
            )
        for name in ("approx", "keep_fdes"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        if not isinstance(self.store_text, bool):
            raise ConfigError(f"store_text: expected a bool, got {self.store_text!r}")

    def resolved(self, dim: int) -> IndexConfig:
        """This config with ``fde`` fixed for token vectors of ``dim``.

        Raises :class:`~mvr.errors.ConfigError` when ``fde.dim`` differs from ``dim``.
        """
        cfg = self
        if self.fde is None:
            cfg = replace(self, fde=FDEConfig(dim=dim))
        elif self.fde.dim != dim:
            raise ConfigError(f"fde.dim: expected the encoder's dim {dim}, got {self.fde.dim}")
        if cfg.approx_pq and dim % cfg.approx_pq:  # the largest divisor of dim below it
            cfg = replace(cfg, approx_pq=max(b for b in range(1, cfg.approx_pq + 1) if dim % b == 0))
        per_byte = {"pqr2": 4, "pqr4": 2}.get(cfg.table_dtype)
        if per_byte and dim % per_byte:
            raise ConfigError(
                f"table_dtype {cfg.table_dtype!r} packs {per_byte} dimensions per byte: expected "
                f"a token dim that is a multiple of {per_byte}, got {dim}"
            )
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {
            "fde": None if self.fde is None else self.fde.to_dict(),
            "pooling": self.pooling.to_dict(),
            "table_dtype": self.table_dtype,
            "record_alignment": self.record_alignment,
            "first_stage": self.first_stage.to_dict(),
            "batch_size": self.batch_size,
            "store_text": self.store_text,
            "default_candidates": self.default_candidates,
            "default_rerank": self.default_rerank,
            "centroid_candidates": self.centroid_candidates,
            "centroid_nprobe": self.centroid_nprobe,
            "token_candidates": self.token_candidates,
            "token_nprobe": self.token_nprobe,
            "token_kprime": self.token_kprime,
            "candidate_tokens": self.candidate_tokens,
            "approx": self.approx,
            "codec_centroids": self.codec_centroids,
            "codec_train_tokens": self.codec_train_tokens,
            "codec_iterations": self.codec_iterations,
            "approx_pq": self.approx_pq,
            "keep_fdes": self.keep_fdes,
        }

    @property
    def uses_codec(self) -> bool:
        """Whether the build trains a token codec (coded table or approximate stage)."""
        return self.approx or self.table_dtype in CODED_DTYPES

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"IndexConfig: expected a dict, got {type(d).__name__}")
        d = dict(d)
        if "approx" not in d:  # written by format 1: no codec, FDEs kept
            d.setdefault("approx", False)
            d.setdefault("keep_fdes", True)
        if "codec_train_tokens" in d:  # a recorded config from before approximate codes
            d.setdefault("approx_pq", 0)
            d.setdefault("codec_iterations", 10)  # ... or from before this setting
        if d.get("fde") is not None:
            d["fde"] = FDEConfig.from_dict(d["fde"])
        if "pooling" in d:
            d["pooling"] = PoolingConfig.from_dict(d["pooling"])
        if "first_stage" in d:
            d["first_stage"] = FirstStageConfig.from_dict(d["first_stage"])
        return config_from_dict(cls, d)
