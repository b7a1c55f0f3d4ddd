"""Other first-stage backends over an index's own FDEs, for side-by-side candidate recall.

An index is built with one first stage (``exact``, ``hnsw`` or ``ivfpq``). To show
what another backend would give on the *same* FDEs, :func:`alternative_first_stage`
builds it aside -- in a scratch directory, with the index builder's own code and the
index's first-stage settings -- without touching the index.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mvr._index_config import FIRST_STAGE_KINDS
from mvr._multivectors import MultiVectors
from mvr.errors import ConfigError
from mvr.format import SEGMENTS_DIR

__all__ = ["alternative_first_stage", "first_stage_candidates"]


def alternative_first_stage(searcher: Any, kind: str, scratch: str | os.PathLike[str]) -> Any:
    """A first stage of ``kind`` over ``searcher``'s FDEs (one part per segment).

    Parameters
    ----------
    searcher : serving.Searcher
        The open index.
    kind : {"exact", "hnsw", "ivfpq"}
    scratch : path
        Directory for the faiss files (the FDE arrays are linked, not copied).
    """
    from indexing._first_stage_build import build_first_stage
    from indexing._segment import FDE_DIR, FIRST_STAGE_FILE, open_fdes
    from serving._first_stage import ExactFirstStage, SegmentedFirstStage
    from serving._first_stage_faiss import FaissFirstStage

    if kind not in FIRST_STAGE_KINDS:
        raise ConfigError(f"backend: expected one of {FIRST_STAGE_KINDS}, got {kind!r}")
    cfg = dataclasses.replace(searcher.config.first_stage, kind=kind)
    parts = []
    base = 0
    for seg in searcher.manifest["segments"]:
        seg_dir = Path(searcher.path) / SEGMENTS_DIR / seg["name"]
        if not seg.get("has_fdes", True):
            raise ConfigError(
                f"backend {kind!r}: segment {seg['name']} of {searcher.path} kept no FDEs "
                "(format 2 drops them once the first stage is built); build with "
                "IndexConfig(keep_fdes=True) to compare first-stage backends"
            )
        if kind == "exact":
            parts.append((base, ExactFirstStage(np.asarray(open_fdes(seg_dir)[:], np.float32))))
        else:
            work = Path(scratch) / f"{kind}-{seg['name']}"
            work.mkdir(parents=True, exist_ok=True)
            link = work / FDE_DIR
            if not link.exists():
                link.symlink_to((seg_dir / FDE_DIR).resolve(), target_is_directory=True)
            build_first_stage(work, cfg, kind)
            parts.append((base, FaissFirstStage(work / FIRST_STAGE_FILE, kind, cfg)))
        base += int(seg["documents"])
    return SegmentedFirstStage(parts, base)


def first_stage_candidates(
    searcher: Any, kind: str, queries: MultiVectors, n: int
) -> tuple[list[list[str]], dict[str, float]]:
    """Top-``n`` candidate ids per query from a ``kind`` first stage built aside.

    Returns the ids and ``{"build_s", "search_s"}`` (seconds; for orientation only --
    benchmarks live in ``scripts/``).
    """
    from mvr._fde import encode_query_fdes

    with tempfile.TemporaryDirectory(prefix="mvr-eval-") as scratch:
        t = time.perf_counter()
        stage = alternative_first_stage(searcher, kind, scratch)
        build_s = time.perf_counter() - t
        qcfg = dataclasses.replace(searcher.fde_config, fill_empty_partitions=False)
        t = time.perf_counter()
        qf = np.asarray(encode_query_fdes(queries.astype(np.float32), qcfg), np.float32)
        allowed = None if searcher.allowed.all() else searcher.allowed
        _, rows = stage.search(qf, n, allowed=allowed)
        search_s = time.perf_counter() - t
    ids = [[searcher.ids[r] for r in row[row >= 0].tolist()] for row in rows]
    return ids, {"build_s": round(build_s, 3), "search_s": round(search_s, 3)}
