"""Build a segment's first-stage index over its FDEs (faiss HNSW or IVF-PQ).

The exact first stage needs no files (it searches the FDE matrix itself). The
faiss backends are built once the segment's FDEs are written, reading the zarr
array chunk by chunk, and saved as ``first_stage.faiss`` next to them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from indexing._segment import FIRST_STAGE_FILE, open_fdes
from mvr._index_config import FirstStageConfig
from mvr._manifest import atomic_write_bytes
from mvr.errors import ConfigError

__all__ = [
    "segment_first_stage_kind", "build_first_stage", "ivf_params", "pq_m", "factory_string",
]

_ADD_ROWS = 4096


def segment_first_stage_kind(cfg: FirstStageConfig, num_documents: int) -> str:
    """The backend a segment of ``num_documents`` gets: below ``cfg.min_rows``, ``flat``
    (a faiss ``Flat`` index: exact, so the FDEs need not stay) for the ``faiss`` kind
    and ``exact`` (FDEs in RAM) for the others."""
    if cfg.kind == "faiss":
        return "flat" if num_documents < max(cfg.min_rows, 1) else "faiss"
    if cfg.kind == "exact" or num_documents < max(cfg.min_rows, 1):
        return "exact"
    if cfg.kind == "ivfpq" and num_documents < (1 << cfg.pq_nbits):
        return "exact"  # too few points to train the PQ codebooks
    return cfg.kind


def pq_m(cfg: FirstStageConfig, fde_dim: int) -> int:
    """Number of PQ sub-quantizers: ``fde_dim / pq_group``."""
    if fde_dim % cfg.pq_group:
        raise ConfigError(
            f"first_stage.pq_group: expected a divisor of the FDE dim {fde_dim}, got {cfg.pq_group}"
        )
    return fde_dim // cfg.pq_group


def ivf_params(cfg: FirstStageConfig, n: int) -> tuple[int, int]:
    """(nlist, nprobe) for a segment of ``n`` rows."""
    nlist = cfg.ivf_nlist or int(4 * math.sqrt(n))
    nlist = max(1, min(nlist, n // 39 if n >= 39 else 1))
    nprobe = cfg.ivf_nprobe or max(1, nlist // 4)
    return nlist, min(nprobe, nlist)


def _train_sample(fdes: Any, size: int, seed: int) -> np.ndarray:
    n = fdes.shape[0]
    if n <= size:
        return np.ascontiguousarray(fdes[:], dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    return np.ascontiguousarray(fdes.get_orthogonal_selection((rows, slice(None))), np.float32)


def factory_string(cfg: FirstStageConfig, kind: str, n: int, fde_dim: int) -> str:
    """The faiss factory string of a ``faiss`` / ``flat`` segment of ``n`` rows."""
    if kind == "flat":
        return "Flat"
    nlist, _ = ivf_params(cfg, n)
    m = pq_m(cfg, fde_dim) if "{m}" in cfg.factory else 0
    m32 = max(1, fde_dim // 32)
    while fde_dim % m32:  # faiss PQ needs M to divide the dimension
        m32 -= 1
    try:
        return cfg.factory.format(nlist=nlist, m=m, m32=m32)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"first_stage.factory: expected only {{nlist}}, {{m}} and {{m32}} placeholders, got "
            f"{cfg.factory!r} ({e})"
        ) from e


def build_first_stage(seg_dir: Path, cfg: FirstStageConfig, kind: str) -> str | None:
    """Build and save the segment's faiss index; returns its file name (None for exact)."""
    if kind == "exact":
        return None
    import faiss

    fdes = open_fdes(seg_dir)
    n, d = fdes.shape
    index: Any
    if kind in ("faiss", "flat"):
        factory = factory_string(cfg, kind, n, d)
        try:
            index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"first_stage.factory {factory!r}: faiss refused it ({e})") from e
        if not index.is_trained:
            index.train(_train_sample(fdes, cfg.train_size, cfg.seed))
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
    elif kind == "ivfpq":
        nlist, _ = ivf_params(cfg, n)
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQ(
            quantizer, d, nlist, pq_m(cfg, d), cfg.pq_nbits, faiss.METRIC_INNER_PRODUCT
        )
        index.train(_train_sample(fdes, cfg.train_size, cfg.seed))
    else:
        raise ConfigError(
            f"first_stage.kind: expected faiss, flat, hnsw or ivfpq here, got {kind!r}"
        )
    for lo in range(0, n, _ADD_ROWS):
        index.add(np.ascontiguousarray(fdes[lo : lo + _ADD_ROWS], dtype=np.float32))
    atomic_write_bytes(Path(seg_dir) / FIRST_STAGE_FILE, faiss.serialize_index(index).tobytes())
    return FIRST_STAGE_FILE
