"""Explain one document's MaxSim score: which document tokens each query token matched.

The score of a document is ``sum_i max_j <q_i, d_j>`` over the query's token
vectors ``q_i`` and the document's *stored* vectors ``d_j``. The index stores
pooled vectors (Ward clusters of about ``pool_factor`` wordpieces each), so a
``d_j`` is not one wordpiece. To say which words a query token matched, the
document's stored text is encoded again with the index's encoder (one vector
per wordpiece, with its character span from the tokenizer's offset mapping),
pooled exactly as the index pools (:func:`indexing.pool_with_clusters`, which
also returns the cluster of each wordpiece), and rounded to the table's dtype.

Which vectors the similarities use is reported in ``vectors``:

* ``"reencoded"``: a float16 table, and the re-pooled vectors rounded to float16
  reproduce the stored ones (same count, every value within ``VECTOR_TOLERANCE``)
  and their total agrees with the searcher's exact score; each stored vector is
  exactly one known cluster.
* ``"stored"``: they do not, or cannot (a lossy table: int8 or residual codes,
  which this module does not re-quantise; an encoder run that differs in the
  last bits and flips a Ward merge...). The
  similarities then come from the stored vectors themselves
  (``searcher.store.get``), so the total is still the searcher's score, and
  each stored vector is aligned with the re-pooled cluster nearest to it by
  cosine (``alignment`` gives the smallest of those cosines).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from indexing import pool_with_clusters
from mvr import MultiVectors
from mvr.errors import ConfigError, EmptyInputError

__all__ = ["Explanation", "QueryTokenMatch", "DocumentToken", "explain", "VECTOR_TOLERANCE"]

#: Largest |re-pooled - stored| value (both float16) that counts as "the same vector":
#: one float16 ulp at 1.0 (9.8e-4), for an encoder run that differs in the last bits.
VECTOR_TOLERANCE = 1e-3
#: |total - searcher score| allowed: the kernel accumulates fp16 products in fp32.
SCORE_TOLERANCE = 1e-3

_FALLBACK_LOCK = threading.Lock()


@dataclass(frozen=True)
class DocumentToken:
    """One wordpiece of the document (special tokens included), in sequence order.

    ``start``/``end`` are character offsets into the document text (None for
    ``[CLS]``/``[SEP]``/markers); ``vector`` is the stored vector it was pooled into.
    """

    text: str
    start: int | None
    end: int | None
    vector: int | None


@dataclass(frozen=True)
class QueryTokenMatch:
    """For one query token: the stored vector with the highest similarity (its max)."""

    token: str
    vector: int
    similarity: float
    document_tokens: list[int]  # the wordpieces pooled into that vector
    best_token: int | None  # of those, the one whose own (unpooled) vector is nearest


@dataclass(frozen=True)
class Explanation:
    id: str
    text: str | None
    query_tokens: list[str]
    document_tokens: list[DocumentToken]
    matches: list[QueryTokenMatch]
    num_vectors: int
    total: float
    score: float
    vectors: Literal["reencoded", "stored"]
    alignment: float | None
    truncated: bool
    pooling: dict[str, Any]


def explain(searcher: Any, query: str, doc_id: str) -> Explanation:
    """Explain the exact MaxSim score of document ``doc_id`` for the text ``query``.

    Parameters
    ----------
    searcher : serving.Searcher
        An open searcher whose index records a transformer encoder.
    query : str
        The query text (not blank).
    doc_id : str
        An indexed, live document id.

    Returns
    -------
    Explanation
        ``total`` (sum of the matches' similarities) equals ``score``
        (``searcher.rerank``'s) within ``SCORE_TOLERANCE``.

    Raises
    ------
    EmptyInputError
        ``query`` is blank.
    DocumentNotFoundError
        ``doc_id`` is not in the index (or deleted).
    ConfigError
        The index's encoder has no tokenizer (precomputed vectors, or none).
    """
    if not query.strip():
        raise EmptyInputError(f"query: expected a text with at least one word, got {query!r}")
    text = searcher.get_texts([doc_id])[0]  # DocumentNotFoundError for unknown ids
    encoder = searcher.encoder
    _require_tokenizer(encoder)
    q = encoder.encode_queries([query])
    q_vectors = q[0].astype(np.float32)
    q_tokens = _query_tokens(encoder, query)
    _check_count("query tokens", len(q_tokens), q_vectors.shape[0])
    score = float(searcher.rerank(q, [[doc_id]]).scores[0][0])
    stored = _stored_vectors(searcher, doc_id)
    if text is None:  # an index built without texts: the score split over stored vectors only
        doc = _Document(None, [], None, False)
        chosen = _Chosen(stored, None, "stored", None)
    else:
        tokens, truncated = _document_tokens(encoder, text)
        wordpieces = encoder.encode_documents([text])[0].astype(np.float32)
        _check_count("document tokens", len(tokens), wordpieces.shape[0])
        doc = _Document(text, tokens, wordpieces, truncated)
        chosen = _choose(searcher.config, wordpieces, stored, q_vectors, score)
    return _assemble(doc_id, q_tokens, q_vectors, doc, chosen, score, searcher.config.pooling)


@dataclass(frozen=True)
class _Document:
    text: str | None
    tokens: list[tuple[str, int | None, int | None]]  # (wordpiece, start, end) per vector
    wordpieces: np.ndarray | None  # Shape: (len(tokens), dim), unpooled
    truncated: bool


@dataclass(frozen=True)
class _Chosen:
    """The vectors scored, and the one each wordpiece belongs to (-1: none)."""

    vectors: np.ndarray  # Shape: (k, dim)
    labels: np.ndarray | None  # Shape: (len(tokens),)
    which: Literal["reencoded", "stored"]
    alignment: float | None


def _check_count(what: str, got: int, vectors: int) -> None:
    if got != vectors:
        raise RuntimeError(f"{what}: expected one per vector ({vectors}), got {got}")


# ---------------------------------------------------------------------- vectors


def _choose(
    config: Any, wordpieces: np.ndarray, stored: np.ndarray, q: np.ndarray, score: float
) -> _Chosen:
    """The re-pooled vectors when they reproduce the table, else the stored ones, aligned."""
    pooled, labels = pool_with_clusters(wordpieces, config.pooling)
    if config.table_dtype == "float16":
        pooled = pooled.astype(np.float16).astype(np.float32)
        if _reproduces(pooled, stored, q, score):
            return _Chosen(pooled, labels, "reencoded", None)
    # stored vector j stands for the re-pooled cluster nearest to it
    cos = _unit(stored) @ _unit(pooled).T
    nearest = cos.argmax(axis=1)
    alignment = float(cos[np.arange(len(stored)), nearest].min()) if len(stored) else None
    vector_of_cluster: dict[int, int] = {}
    for j, c in enumerate(nearest.tolist()):
        vector_of_cluster.setdefault(c, j)
    stored_labels = np.array([vector_of_cluster.get(int(c), -1) for c in labels], dtype=np.int64)
    return _Chosen(stored, stored_labels, "stored", alignment)


def _reproduces(pooled: np.ndarray, stored: np.ndarray, q: np.ndarray, score: float) -> bool:
    if pooled.shape != stored.shape:
        return False
    if float(np.abs(pooled - stored).max(initial=0.0)) > VECTOR_TOLERANCE:
        return False
    total = float((q @ pooled.T).max(axis=1).sum())
    return abs(total - score) <= SCORE_TOLERANCE * max(1.0, abs(score))


def _stored_vectors(searcher: Any, doc_id: str) -> np.ndarray:
    """The document's vectors in the re-ranking table (what the searcher scores)."""
    if hasattr(searcher, "stored_vectors"):  # sharded: asked of the shard that holds it
        return np.asarray(searcher.stored_vectors(doc_id), dtype=np.float32)
    row = searcher._id_to_row[doc_id]  # get_texts checked the id already
    got: MultiVectors = searcher.store.get(np.array([row], dtype=np.int64))
    return np.asarray(got[0], dtype=np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _assemble(
    doc_id: str, q_tokens: list[str], q: np.ndarray, doc: _Document, chosen: _Chosen,
    score: float, pooling: Any,
) -> Explanation:
    sims = q @ chosen.vectors.T  # (query tokens, stored vectors)
    members: dict[int, list[int]] = {}
    if chosen.labels is not None:
        for i, v in enumerate(chosen.labels.tolist()):
            if v >= 0:
                members.setdefault(v, []).append(i)
    matches = []
    for i, j in enumerate(sims.argmax(axis=1).tolist()):
        group = members.get(j, [])
        best_token = None
        if group and doc.wordpieces is not None:
            best_token = group[int(np.argmax(doc.wordpieces[group] @ q[i]))]
        matches.append(QueryTokenMatch(q_tokens[i], j, float(sims[i, j]), group, best_token))
    labels = chosen.labels
    doc_tokens = [
        DocumentToken(t, s, e, None if labels is None or labels[i] < 0 else int(labels[i]))
        for i, (t, s, e) in enumerate(doc.tokens)
    ]
    return Explanation(
        id=doc_id, text=doc.text, query_tokens=q_tokens, document_tokens=doc_tokens,
        matches=matches, num_vectors=int(chosen.vectors.shape[0]),
        total=float(sum(m.similarity for m in matches)), score=score, vectors=chosen.which,
        alignment=chosen.alignment, truncated=doc.truncated,
        pooling={"pool_factor": pooling.pool_factor, "protected_tokens": pooling.protected_tokens,
                 "normalize": pooling.normalize},
    )


# ---------------------------------------------------------------------- tokens


def _require_tokenizer(encoder: Any) -> None:
    for attr in ("tokenizer", "tokenize", "query_spec", "document_spec", "_keep_mask", "_prefix"):
        if not hasattr(encoder, attr):
            raise ConfigError(
                "explain: expected the index's encoder to be a transformer model with a "
                f"tokenizer (encoders.TransformerEncoder), got {type(encoder).__name__}"
            )


def _query_tokens(encoder: Any, query: str) -> list[str]:
    """The token string of each query vector (marker and [MASK] expansion included)."""
    spec = encoder.query_spec
    seq = encoder.tokenize([query], spec)[0][0]
    names = list(encoder.tokenizer.convert_ids_to_tokens(seq))
    if spec.expand:
        names += [str(encoder.tokenizer.mask_token)] * (spec.max_length - len(seq))
    keep = encoder._keep_mask(seq, spec)  # the encoder's own rule: aligned with its vectors
    return [n for n, k in zip(names, keep.tolist(), strict=True) if k]


def _document_tokens(
    encoder: Any, text: str
) -> tuple[list[tuple[str, int | None, int | None]], bool]:
    """(token string, start, end) of each document vector, and whether the text was truncated.

    Spans are character offsets into ``text`` (None for special tokens, or for
    every token with a slow tokenizer, which has no offset mapping).
    """
    spec = encoder.document_spec
    tok = encoder.tokenizer
    seq = encoder.tokenize([text], spec)[0][0]  # takes the encoder's tokenizer lock itself
    spans: list[tuple[int, int]] | None = None
    if getattr(tok, "is_fast", False):
        with getattr(encoder, "_tokenizer_lock", _FALLBACK_LOCK):  # fast tokenizers: one caller
            out = tok(text, add_special_tokens=False, return_offsets_mapping=True,
                      return_attention_mask=False)
        body_ids, spans = list(out["input_ids"]), [tuple(s) for s in out["offset_mapping"]]
    else:
        body_ids = list(tok(text, add_special_tokens=False)["input_ids"])
    head = len(encoder._prefix) + (1 if spec.marker_id is not None else 0)
    tail = len(seq) - len(encoder._suffix)
    kept_body = seq[head:tail]
    if kept_body != body_ids[: len(kept_body)]:
        raise RuntimeError("document tokens: the offset tokenisation differs from the encoder's")
    names = list(tok.convert_ids_to_tokens(seq))
    out_tokens: list[tuple[str, int | None, int | None]] = []
    for pos, (name, keep) in enumerate(zip(names, encoder._keep_mask(seq, spec).tolist(),
                                           strict=True)):
        if not keep:
            continue
        if head <= pos < tail and spans is not None:
            s, e = spans[pos - head]
            out_tokens.append((name, int(s), int(e)))
        else:
            out_tokens.append((name, None, None))
    return out_tokens, len(kept_body) < len(body_ids)
