"""Hybrid retrieval: fuse a BM25 ranking with the late-interaction one.

Two fusions over one query's candidates (the union of both lists):

* **rrf** (reciprocal rank fusion, Cormack et al. 2009): ``sum_lists 1 / (rrf_k + rank)``,
  rank 1 = best; a candidate absent from a list gets nothing from it.
* **weighted**: each list's scores min-max normalised to [0, 1] over the candidates it
  scores (all equal -> 1), then ``weight * late + (1 - weight) * bm25``; absent = 0.

With ``rescore`` (the default) every candidate gets both scores before fusing: exact
MaxSim for those only BM25 found and the BM25 score for those only MaxSim found, so
both rankings are over the same candidates. Ties are broken by the MaxSim score, then
by row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mvr.errors import ConfigError

__all__ = ["HybridConfig", "parse_hybrid", "rrf_scores", "weighted_scores", "fuse"]

FUSIONS = ("rrf", "weighted")


@dataclass(frozen=True, kw_only=True)
class HybridConfig:
    """How ``Searcher.search(..., hybrid=...)`` fuses BM25 with late interaction.

    The defaults are the best of the runs measured on SciFact and Cranfield (EVALUATION.md,
    "Hybrid retrieval"): weighted fusion at weight 0.6 with rescoring; RRF (k = 60) was
    0.011 / 0.002 nDCG@10 behind there and needs no weight.

    Parameters
    ----------
    fusion : {"rrf", "weighted"}
        Reciprocal rank fusion, or min-max normalised weighted scores.
    depth : int
        Results taken from each list (the candidates of the fusion: up to ``2 * depth``).
    rrf_k : float
        RRF's rank offset (60 in the original paper).
    weight : float
        Weighted fusion: the late-interaction share in [0, 1] (BM25 gets ``1 - weight``).
    rescore : bool
        Score every candidate with both signals before fusing (exact MaxSim for the
        BM25-only ones), instead of treating absent candidates as unscored.
    """

    fusion: str = "weighted"
    depth: int = 100
    rrf_k: float = 60.0
    weight: float = 0.6
    rescore: bool = True

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ConfigError(f"hybrid.fusion: expected one of {FUSIONS}, got {self.fusion!r}")
        if not isinstance(self.depth, int) or isinstance(self.depth, bool) or self.depth < 1:
            raise ConfigError(f"hybrid.depth: expected an int >= 1, got {self.depth!r}")
        if (isinstance(self.rrf_k, bool) or not isinstance(self.rrf_k, (int, float))
                or not math.isfinite(self.rrf_k) or self.rrf_k < 0):
            raise ConfigError(f"hybrid.rrf_k: expected a finite number >= 0, got {self.rrf_k!r}")
        if (isinstance(self.weight, bool) or not isinstance(self.weight, (int, float))
                or not 0.0 <= self.weight <= 1.0):
            raise ConfigError(f"hybrid.weight: expected a number in [0, 1], got {self.weight!r}")
        if not isinstance(self.rescore, bool):
            raise ConfigError(f"hybrid.rescore: expected a bool, got {self.rescore!r}")


def parse_hybrid(value: Any) -> HybridConfig:
    """A :class:`HybridConfig` from ``True`` (defaults), a fusion name, a dict of its
    fields, or a config (returned as it is)."""
    if isinstance(value, HybridConfig):
        return value
    if value is True:
        return HybridConfig()
    if isinstance(value, str):
        return HybridConfig(fusion=value)
    if isinstance(value, dict):
        names = {f for f in HybridConfig.__dataclass_fields__}
        extra = sorted(set(value) - names)
        if extra:
            raise ConfigError(f"hybrid: unknown keys {extra}; expected some of {sorted(names)}")
        return HybridConfig(**value)
    raise ConfigError(
        f"hybrid: expected True, 'rrf', 'weighted', a dict or a HybridConfig, got {value!r}"
    )


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each finite score (descending; ties by position); nan stays nan."""
    out = np.full(scores.shape, np.nan)
    have = np.flatnonzero(np.isfinite(scores))
    order = have[np.lexsort((have, -scores[have]))]
    out[order] = np.arange(1, len(order) + 1)
    return out


def rrf_scores(late: np.ndarray, bm25: np.ndarray, rrf_k: float) -> np.ndarray:
    """RRF of two score lists over the same candidates (nan = absent from that list).

    Parameters
    ----------
    late, bm25 : np.ndarray
        Shape: (m,) float; the candidates' MaxSim and BM25 scores.

    Returns
    -------
    np.ndarray
        Shape: (m,) float64 fused scores.
    """
    out = np.zeros(late.shape, dtype=np.float64)
    for s in (late, bm25):
        r = _ranks(np.asarray(s, dtype=np.float64))
        out += np.where(np.isnan(r), 0.0, 1.0 / (rrf_k + np.nan_to_num(r, nan=1.0)))
    return out


def _minmax(s: np.ndarray) -> np.ndarray:
    have = np.isfinite(s)
    out = np.zeros(s.shape, dtype=np.float64)
    if not have.any():
        return out
    lo, hi = s[have].min(), s[have].max()
    out[have] = 1.0 if hi == lo else (s[have] - lo) / (hi - lo)
    return out


def weighted_scores(late: np.ndarray, bm25: np.ndarray, weight: float) -> np.ndarray:
    """``weight * minmax(late) + (1 - weight) * minmax(bm25)`` (nan = absent = 0).

    Shapes: (m,) in, (m,) float64 out.
    """
    late = np.asarray(late, dtype=np.float64)
    bm25 = np.asarray(bm25, dtype=np.float64)
    return weight * _minmax(late) + (1.0 - weight) * _minmax(bm25)


def fuse(
    rows: np.ndarray, late: np.ndarray, bm25: np.ndarray, config: HybridConfig, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of one query's candidates by the configured fusion.

    Parameters
    ----------
    rows : np.ndarray
        Shape: (m,) int64 candidate rows.
    late, bm25 : np.ndarray
        Shape: (m,) their MaxSim and BM25 scores (nan = not in that list).

    Returns
    -------
    (np.ndarray, np.ndarray)
        Rows and fused scores, best first, at most ``k``.
    """
    if config.fusion == "rrf":
        fused = rrf_scores(late, bm25, config.rrf_k)
    else:
        fused = weighted_scores(late, bm25, config.weight)
    tie = np.nan_to_num(np.asarray(late, dtype=np.float64), nan=-np.inf)
    order = np.lexsort((rows, -tie, -fused))[:k]
    return rows[order], fused[order]
