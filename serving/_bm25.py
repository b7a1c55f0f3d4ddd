"""Read side of the per-segment BM25 indexes (``segments/<name>/bm25/``, bm25s).

Queries are tokenized with the settings the segment was built with
(``mvr_bm25.json``: stopwords, stemmer); each segment scores its own rows and the
scores are laid out in the searcher's row order. Segments keep their own IDF
statistics, so after ``add`` the scores of different segments are close but not
identical to one BM25 over the union (``compact`` rebuilds one).
"""

from __future__ import annotations

import json
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from indexing._bm25 import BM25_DIR, BM25_SETTINGS_FILE, make_stemmer
from mvr.errors import ConfigError
from mvr.format import SEGMENTS_DIR

__all__ = ["IndexBM25", "index_bm25"]


class _SegmentBM25:
    def __init__(self, folder: Path) -> None:
        import bm25s

        self.settings = json.loads((folder / BM25_SETTINGS_FILE).read_text())
        self.retriever = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        self.vocab = self.retriever.vocab_dict
        self._stem = make_stemmer(self.settings["stemmer"])

    def tokens(self, text: str) -> list[str]:
        import bm25s

        toks = bm25s.tokenize([text], lower=self.settings["lower"],
                              stopwords=self.settings["stopwords"], stemmer=self._stem,
                              return_ids=False, show_progress=False)[0]
        return [t for t in toks if t in self.vocab]

    def scores(self, text: str, n: int) -> np.ndarray:
        toks = self.tokens(text)
        if not toks:
            return np.zeros(n, dtype=np.float32)
        return np.asarray(self.retriever.get_scores(toks), dtype=np.float32)


class IndexBM25:
    """BM25 over every segment of a searcher's snapshot.

    Raises
    ------
    ConfigError
        A segment has no BM25 index (it was built without stored texts).
    """

    def __init__(self, root: Path, segments: list[dict[str, Any]], files: dict[str, Any]) -> None:
        from mvr._manifest import verify_files

        self.parts: list[_SegmentBM25] = []
        self.sizes: list[int] = []
        # memory-mapped and read piecemeal from here on: hashed once, when first used
        prefixes = tuple(f"{SEGMENTS_DIR}/{seg['name']}/{BM25_DIR}/" for seg in segments)
        verify_files(root, {"files": {k: v for k, v in files.items() if k.startswith(prefixes)}})
        for seg in segments:
            rel = f"{SEGMENTS_DIR}/{seg['name']}/{BM25_DIR}/{BM25_SETTINGS_FILE}"
            if rel not in files:
                raise ConfigError(
                    f"hybrid search needs a BM25 index in every segment; segment {seg['name']} "
                    f"of {root} has none (no stored texts: built from vectors only or with "
                    "store_text=False)"
                )
            self.parts.append(_SegmentBM25(root / SEGMENTS_DIR / seg["name"] / BM25_DIR))
            self.sizes.append(int(seg["documents"]))

    def scores(self, text: str) -> np.ndarray:
        """BM25 score of every row for one query text. Shape: (n_rows,) float32."""
        out = [p.scores(text, n) for p, n in zip(self.parts, self.sizes, strict=True)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


_CACHE: weakref.WeakKeyDictionary[Any, IndexBM25] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def index_bm25(searcher: Any) -> IndexBM25:
    """The searcher's :class:`IndexBM25` (loaded, memory-mapped, on first use)."""
    with _LOCK:
        bm = _CACHE.get(searcher)
        if bm is None:
            bm = IndexBM25(Path(searcher.path), list(searcher.manifest["segments"]),
                           searcher.manifest["files"])
            _CACHE[searcher] = bm
        return bm
