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
from mvr.format import TABLE_DTYPES

__all__ = ["FirstStageConfig", "IndexConfig", "FIRST_STAGE_KINDS"]

FIRST_STAGE_KINDS = ("exact", "hnsw", "ivfpq")


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
    kind : {"exact", "hnsw", "ivfpq"}
        ``exact``: blocked GEMM over every FDE (the default; right below ~200k
        documents). ``hnsw``: faiss ``IndexHNSWFlat`` (inner product).
        ``ivfpq``: faiss ``IndexIVFPQ``, product quantisation with 256 centroids
        (8 bits) per group of ``pq_group`` coordinates -- MUVERA's "PQ-256-8"
        with the default ``pq_group=8`` (32x smaller than float32).
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

    kind: str = "exact"
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
    table_dtype : {"float16", "int8"}
        Re-ranking table record encoding (see :mod:`mvr.format`).
    record_alignment : int
        Records start on multiples of this many bytes (4096: one document is
        one or two page-aligned reads; 1 = packed).
    first_stage : FirstStageConfig
        First-stage backend and its parameters.
    batch_size : int
        Documents per build batch (bounds build memory; also the FDE chunk rows).
    store_text : bool
        Keep document texts in the index (for snippets and ``get_texts``).
    default_candidates : int
        First-stage candidates N re-ranked per query when ``search`` gets none.
    """

    fde: FDEConfig | None = None
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    table_dtype: str = "float16"
    record_alignment: int = 4096
    first_stage: FirstStageConfig = field(default_factory=FirstStageConfig)
    batch_size: int = 256
    store_text: bool = True
    default_candidates: int = 200

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
        if not isinstance(self.store_text, bool):
            raise ConfigError(f"store_text: expected a bool, got {self.store_text!r}")

    def resolved(self, dim: int) -> IndexConfig:
        """This config with ``fde`` fixed for token vectors of ``dim``.

        Raises :class:`~mvr.errors.ConfigError` when ``fde.dim`` differs from ``dim``.
        """
        if self.fde is None:
            return replace(self, fde=FDEConfig(dim=dim))
        if self.fde.dim != dim:
            raise ConfigError(f"fde.dim: expected the encoder's dim {dim}, got {self.fde.dim}")
        return self

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
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"IndexConfig: expected a dict, got {type(d).__name__}")
        d = dict(d)
        if d.get("fde") is not None:
            d["fde"] = FDEConfig.from_dict(d["fde"])
        if "pooling" in d:
            d["pooling"] = PoolingConfig.from_dict(d["pooling"])
        if "first_stage" in d:
            d["first_stage"] = FirstStageConfig.from_dict(d["first_stage"])
        return config_from_dict(cls, d)
