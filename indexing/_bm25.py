"""A BM25 index (bm25s) per segment, built from the segment's stored texts.

``segments/<name>/bm25/`` holds what ``bm25s.BM25.save`` writes (the CSC score
matrix as ``.npy``, the vocabulary and the parameters as JSON; no pickle) plus
``mvr_bm25.json``, the tokenizer settings that queries must be tokenized with:
lower-casing, bm25s's English stopwords and, when PyStemmer is installed, the
Snowball English stemmer. Rows are the segment's rows. A segment built without
stored texts gets no BM25 index (hybrid search then says so).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mvr._durable import fsync_tree, writing

__all__ = ["BM25_DIR", "BM25_SETTINGS_FILE", "bm25_settings", "make_stemmer", "build_bm25"]

BM25_DIR = "bm25"
BM25_SETTINGS_FILE = "mvr_bm25.json"
_CHUNK = 4096  # texts read and tokenized at once

logger = logging.getLogger("indexing")


def bm25_settings() -> dict[str, Any]:
    """Tokenizer and scoring settings of new BM25 indexes (stemmer only when installed)."""
    try:
        import Stemmer  # noqa: F401  (PyStemmer)

        stemmer = "english"
    except ImportError:
        stemmer = None
    return {"version": 1, "stopwords": "en", "stemmer": stemmer, "lower": True,
            "k1": 1.5, "b": 0.75, "method": "lucene"}


def make_stemmer(name: str | None) -> Any:
    """A PyStemmer Snowball stemmer (both bm25s tokenizers take it), or None."""
    if name is None:
        return None
    import Stemmer

    return Stemmer.Stemmer(name)


def build_bm25(seg_dir: Path, num_documents: int) -> bool:
    """Build ``seg_dir/bm25/`` from ``seg_dir``'s stored texts (a missing text = empty).

    Returns False (and builds nothing) when the segment stores no texts.
    """
    import bm25s
    from bm25s.tokenization import Tokenized, Tokenizer

    from indexing._segment import TEXT_LENGTHS_FILE, TextReader

    seg_dir = Path(seg_dir)
    if not (seg_dir / TEXT_LENGTHS_FILE).is_file():
        logger.info("segment %s: no BM25 index (texts are not stored; build with store_text=True "
                    "for hybrid search)", seg_dir.name)
        return False
    import numpy as np

    if not (np.fromfile(seg_dir / TEXT_LENGTHS_FILE, dtype="<i8") >= 0).any():
        logger.info("segment %s: no BM25 index (no document has a text)", seg_dir.name)
        return False
    settings = bm25_settings()
    tokenizer = Tokenizer(lower=settings["lower"], stopwords=settings["stopwords"],
                          stemmer=make_stemmer(settings["stemmer"]))
    reader = TextReader(seg_dir)
    ids: list[list[int]] = []
    try:
        for lo in range(0, num_documents, _CHUNK):
            texts = [reader.get(r) or "" for r in range(lo, min(lo + _CHUNK, num_documents))]
            ids += tokenizer.tokenize(texts, update_vocab=True, return_as="ids",
                                      show_progress=False)
    finally:
        reader.close()
    retriever = bm25s.BM25(k1=settings["k1"], b=settings["b"], method=settings["method"])
    retriever.index(Tokenized(ids=ids, vocab=tokenizer.get_vocab_dict()), show_progress=False)
    out = seg_dir / BM25_DIR
    with writing(out):  # bm25s writes several files; writing() names the one that failed
        retriever.save(str(out), show_progress=False)
        (out / BM25_SETTINGS_FILE).write_text(json.dumps(settings, indent=1))
    fsync_tree(out)
    return True
