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
from serving._held_files import HeldFiles

__all__ = ["IndexBM25", "index_bm25"]


class _SegmentBM25:
    def __init__(self, folder: Path, at: dict[str, Path]) -> None:
        """``at``: where to read each file of ``folder`` (by name; absent: in ``folder``)."""
        import bm25s

        names = {k: str(at[v]) for k, v in _BM25S_FILES.items() if v in at}
        self.settings = json.loads(Path(at.get(BM25_SETTINGS_FILE, folder / BM25_SETTINGS_FILE))
                                   .read_text())
        # bm25s joins each name to the folder: an absolute name (a held /dev/fd/N) wins
        self.retriever = bm25s.BM25.load(str(folder), mmap=True, show_progress=False, **names)
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


# bm25s.BM25.load's keyword -> the file it reads (bm25s 0.2 - 0.3 names)
_BM25S_FILES = {"data_name": "data.csc.index.npy", "indices_name": "indices.csc.index.npy",
                "indptr_name": "indptr.csc.index.npy", "vocab_name": "vocab.index.json",
                "params_name": "params.index.json", "nnoc_name": "nonoccurrence_array.index.npy"}


class IndexBM25:
    """BM25 over every segment of a searcher's snapshot.

    Raises
    ------
    ConfigError
        A segment has no BM25 index (it was built without stored texts).
    """

    def __init__(self, root: Path, segments: list[dict[str, Any]], files: dict[str, Any],
                 held: HeldFiles | None = None) -> None:
        """``held``: the descriptors the searcher opened at open time, read instead of the
        paths (a compaction since may have unlinked them); released once loaded (the
        arrays' mappings keep their inodes)."""
        from mvr._manifest import verify_files

        self.parts: list[_SegmentBM25] = []
        self.sizes: list[int] = []
        # memory-mapped and read piecemeal from here on: hashed once, when first used
        prefixes = tuple(f"{SEGMENTS_DIR}/{seg['name']}/{BM25_DIR}/" for seg in segments)
        rels = sorted(k for k in files if k.startswith(prefixes))
        at = held.paths(rels) if held is not None else {}
        verify_files(root, {"files": {k: files[k] for k in rels}}, paths=at)
        for seg in segments:
            rel = f"{SEGMENTS_DIR}/{seg['name']}/{BM25_DIR}/{BM25_SETTINGS_FILE}"
            if rel not in files:
                raise ConfigError(
                    f"hybrid search needs a BM25 index in every segment; segment {seg['name']} "
                    f"of {root} has none (no stored texts: built from vectors only or with "
                    "store_text=False)"
                )
            prefix = f"{SEGMENTS_DIR}/{seg['name']}/{BM25_DIR}/"
            seg_at = {k[len(prefix):]: p for k, p in at.items() if k.startswith(prefix)}
            self.parts.append(_SegmentBM25(root / SEGMENTS_DIR / seg["name"] / BM25_DIR, seg_at))
            self.sizes.append(int(seg["documents"]))
        if held is not None:
            held.release(rels)

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
                           searcher.manifest["files"], getattr(searcher, "_held", None))
            _CACHE[searcher] = bm
        return bm
