"""TREC run files and the on-disk cache of ranked results (no pickle).

A TREC run line is ``qid Q0 doc_id rank score tag`` (rank 1-based), the format
trec_eval, ranx and pytrec_eval read. Cached results are ``.npz`` files of
fixed-width unicode and float32 arrays, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mvr._durable import atomic_write_bytes, atomic_write_file
from mvr._protocols import SearchResults
from mvr.errors import DatasetError

__all__ = [
    "write_trec_run",
    "read_trec_run",
    "save_results",
    "load_results",
    "fingerprint",
]


def write_trec_run(
    path: str | os.PathLike[str],
    qids: Sequence[str],
    results: SearchResults,
    tag: str,
) -> Path:
    """Write ``results`` as a TREC run file; returns the path.

    Parameters
    ----------
    qids : sequence of str
        Shape: (n_queries,), one per result list.
    results : SearchResults
        Ranked ids and scores per query.
    tag : str
        Run name (no whitespace).
    """
    if len(qids) != len(results):
        raise DatasetError(f"qids: expected {len(results)} (one per result list), got {len(qids)}")
    if not tag or any(c.isspace() for c in tag):
        raise DatasetError(f"tag: expected a non-empty name without whitespace, got {tag!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for qid, ids, scores in zip(qids, results.ids, results.scores, strict=True):
        for rank, (doc, score) in enumerate(zip(ids, np.asarray(scores), strict=True), start=1):
            lines.append(f"{qid} Q0 {doc} {rank} {float(score):.6f} {tag}\n")
    atomic_write_bytes(path, "".join(lines).encode("utf-8"))
    return path


def read_trec_run(path: str | os.PathLike[str]) -> dict[str, list[tuple[str, float]]]:
    """``{qid: [(doc_id, score), ...]}`` in rank order from a TREC run file."""
    path = Path(path)
    rows: dict[str, list[tuple[int, str, float]]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 6:
                raise DatasetError(
                    f"{path}:{lineno}: expected 'qid Q0 doc rank score tag', got {len(fields)} fields"
                )
            try:
                rank, score = int(fields[3]), float(fields[4])
            except ValueError as e:
                raise DatasetError(
                    f"{path}:{lineno}: expected an int rank and a float score"
                ) from e
            rows.setdefault(fields[0], []).append((rank, fields[2], score))
    return {q: [(d, s) for _, d, s in sorted(r)] for q, r in rows.items()}


def fingerprint(*parts: Any) -> str:
    """SHA-256 hex of the JSON of ``parts`` (keys sorted): a cache key."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def save_results(path: str | os.PathLike[str], qids: Sequence[str], results: SearchResults) -> None:
    """Cache ranked results as ``.npz`` (ids padded with "", scores with -inf)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    depth = max((len(ids) for ids in results.ids), default=0)
    width = max((len(d) for ids in results.ids for d in ids), default=1)
    ids = np.full((len(results), depth), "", dtype=f"<U{max(width, 1)}")
    scores = np.full((len(results), depth), -np.inf, dtype=np.float32)
    lengths = np.zeros(len(results), dtype=np.int64)
    for q, (row_ids, row_scores) in enumerate(zip(results.ids, results.scores, strict=True)):
        lengths[q] = len(row_ids)
        ids[q, : len(row_ids)] = row_ids
        scores[q, : len(row_ids)] = row_scores
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez adds no ".npz" to it
            np.savez(f, qids=np.asarray(list(qids), dtype=str), ids=ids, scores=scores,
                     lengths=lengths)

    atomic_write_file(path, write)


def load_results(path: str | os.PathLike[str]) -> tuple[list[str], SearchResults]:
    """Read what :func:`save_results` wrote."""
    with np.load(Path(path), allow_pickle=False) as z:
        qids = [str(q) for q in z["qids"]]
        lengths = z["lengths"]
        ids = [[str(d) for d in row[:n]] for row, n in zip(z["ids"], lengths, strict=True)]
        scores = [row[:n].copy() for row, n in zip(z["scores"], lengths, strict=True)]
    return qids, SearchResults(ids=ids, scores=scores)
