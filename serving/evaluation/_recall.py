"""First-stage candidate recall against exhaustive MaxSim (MUVERA Table 1 shape).

For query ``q``, let ``E_k(q)`` be the exhaustive (exact MaxSim) top-``k`` and
``C_N(q)`` the first ``N`` first-stage candidates. Candidate recall is
``mean_q |C_N(q) ∩ E_k(q)| / |E_k(q)|`` -- the fraction of the exact top-k that the
re-ranker gets to see. With the position of every exhaustive result inside the
candidate list computed once, the recall for *every* ``N`` is a cumulative sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mvr.errors import ConfigError

__all__ = [
    "ABSENT",
    "candidate_positions",
    "recall_by_n",
    "candidate_recall",
    "candidates_needed",
    "overlap_at_k",
]

ABSENT = np.iinfo(np.int64).max  # position of a reference document the candidates miss


def _check_pair(candidates: Sequence[Sequence[str]], reference: Sequence[Sequence[str]]) -> None:
    if len(candidates) != len(reference):
        raise ConfigError(
            f"candidates: expected one list per query ({len(reference)} reference lists), "
            f"got {len(candidates)}"
        )


def candidate_positions(
    candidates: Sequence[Sequence[str]], reference: Sequence[Sequence[str]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Where each of the reference top-``k`` sits in the candidate lists.

    Parameters
    ----------
    candidates : sequence of sequence of str
        Shape: (n_queries, <= N_max); first-stage order, best first.
    reference : sequence of sequence of str
        Shape: (n_queries, >= k normally); exhaustive order, best first.
    k : int
        Reference depth.

    Returns
    -------
    positions : np.ndarray
        Shape: (n_queries, k), int64: 0-based position of ``reference[q][r]`` in
        ``candidates[q]``, :data:`ABSENT` when missing or when ``r`` is past the
        end of a short reference list.
    k_eff : np.ndarray
        Shape: (n_queries,), int64: ``min(k, len(reference[q]))``.
    """
    _check_pair(candidates, reference)
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k: expected a positive int, got {k!r}")
    positions = np.full((len(reference), k), ABSENT, dtype=np.int64)
    k_eff = np.zeros(len(reference), dtype=np.int64)
    for q, (cands, ref) in enumerate(zip(candidates, reference, strict=True)):
        where: dict[str, int] = {}
        for pos, doc in enumerate(cands):
            where.setdefault(doc, pos)
        top = list(ref[:k])
        k_eff[q] = len(top)
        for r, doc in enumerate(top):
            positions[q, r] = where.get(doc, ABSENT)
    return positions, k_eff


def recall_by_n(positions: np.ndarray, k_eff: np.ndarray, n_max: int) -> np.ndarray:
    """Candidate recall for every ``N`` in ``1..n_max``.

    Parameters
    ----------
    positions, k_eff : np.ndarray
        From :func:`candidate_positions`. Shapes: (n_queries, k), (n_queries,).
    n_max : int
        Largest candidate count.

    Returns
    -------
    np.ndarray
        Shape: (n_max,), float64; entry ``N - 1`` is the mean recall with ``N``
        candidates. Queries with an empty reference are left out of the mean.
    """
    valid = k_eff > 0
    if not valid.any():
        return np.zeros(n_max, dtype=np.float64)
    pos = positions[valid]
    weights = np.repeat(1.0 / k_eff[valid], pos.shape[1]).reshape(pos.shape)
    hit = pos < n_max
    counts = np.bincount(pos[hit], weights=weights[hit], minlength=n_max)[:n_max]
    return np.cumsum(counts) / valid.sum()


def candidate_recall(
    candidates: Sequence[Sequence[str]],
    reference: Sequence[Sequence[str]],
    ks: Sequence[int],
    ns: Sequence[int],
) -> np.ndarray:
    """Mean candidate recall of the reference top-``k`` within the first ``N`` candidates.

    Parameters
    ----------
    candidates : sequence of sequence of str
        Shape: (n_queries, <= max(ns)).
    reference : sequence of sequence of str
        Shape: (n_queries, >= max(ks)).
    ks, ns : sequence of int
        Reference depths and candidate counts.

    Returns
    -------
    np.ndarray
        Shape: (len(ks), len(ns)), float64 in [0, 1].
    """
    if not ns or min(ns) < 1:
        raise ConfigError(f"ns: expected positive candidate counts, got {list(ns)!r}")
    out = np.zeros((len(ks), len(ns)), dtype=np.float64)
    n_max = max(ns)
    for i, k in enumerate(ks):
        curve = recall_by_n(*candidate_positions(candidates, reference, k), n_max)
        out[i] = curve[np.asarray(ns) - 1]
    return out


def candidates_needed(curve: np.ndarray, targets: Sequence[float]) -> dict[float, int | None]:
    """Smallest ``N`` whose recall reaches each target (``None``: not within the curve).

    Parameters
    ----------
    curve : np.ndarray
        Shape: (n_max,), from :func:`recall_by_n` (entry ``N - 1`` is recall at ``N``).
    targets : sequence of float
        Recall levels in (0, 1].
    """
    out: dict[float, int | None] = {}
    for t in targets:
        reached = np.flatnonzero(curve >= t - 1e-12)
        out[float(t)] = int(reached[0]) + 1 if reached.size else None
    return out


def overlap_at_k(
    results: Sequence[Sequence[str]], reference: Sequence[Sequence[str]], k: int
) -> float:
    """Mean ``|results[:k] ∩ reference[:k]| / |reference[:k]|`` (end-to-end Recall@k vs exhaustive)."""
    _check_pair(results, reference)
    scores = []
    for res, ref in zip(results, reference, strict=True):
        top = set(ref[:k])
        if top:
            scores.append(len(top.intersection(res[:k])) / len(top))
    return float(np.mean(scores)) if scores else 0.0
