"""Per-searcher metadata: the columns of a searcher's snapshot, opened on first use.

The reader itself (:class:`FieldColumn`, :class:`SegmentMetadata`,
:class:`IndexMetadata`) reads only files, so it lives in :mod:`mvr._metadata` beside
the format contract, where ``mvr info`` uses it too; this module keeps one
:class:`IndexMetadata` per open :class:`serving.Searcher`, read through the
descriptors the searcher held at open time.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any

from mvr._metadata import FieldColumn, IndexMetadata, SegmentMetadata, summarise

__all__ = ["FieldColumn", "SegmentMetadata", "IndexMetadata", "index_metadata", "metadata_summary"]

_CACHE: weakref.WeakKeyDictionary[Any, IndexMetadata] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def index_metadata(searcher: Any) -> IndexMetadata:
    """The :class:`IndexMetadata` of an open :class:`serving.Searcher` (opened on first use,
    then kept with the searcher)."""
    with _CACHE_LOCK:
        meta = _CACHE.get(searcher)
        if meta is None:
            meta = IndexMetadata(Path(searcher.path), list(searcher.manifest["segments"]),
                                 searcher.manifest["files"], getattr(searcher, "_held", None))
            _CACHE[searcher] = meta
        return meta


def metadata_summary(searcher: Any) -> dict[str, Any]:
    """:func:`mvr._metadata.summarise` of an open searcher's metadata over its live rows.

    Returns
    -------
    dict
        ``{"documents": live documents, "fields": {name: {"type": str, "documents": int,
        ...}}}``; ``"type"`` is ``"a|b"`` when segments disagree.
    """
    return summarise(index_metadata(searcher), searcher.allowed)
