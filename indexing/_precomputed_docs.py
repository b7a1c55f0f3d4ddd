"""Documents from precomputed vectors (``encoders.load(path)``), for ``build_index``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["PrecomputedDocuments"]


class PrecomputedDocuments:
    """Iterate a precomputed ``documents`` table as ``(id, text, vectors)`` items.

    Reads the table block by block (``block`` documents at a time), so the build stays
    bounded in memory; ``len()`` gives the count for the progress bar.

    Parameters
    ----------
    encoder : encoders.PrecomputedEncoder
        Its documents table is iterated; pass the same object to ``build_index`` so the
        identity it carries (the encoder that produced the vectors) is recorded.
    block : int
        Documents read per block.
    limit : int, optional
        Only the first ``limit`` documents.
    """

    def __init__(self, encoder: Any, *, block: int = 4096, limit: int | None = None) -> None:
        self.table = encoder.table("documents")
        self.block = block
        self.n = len(self.table) if limit is None else min(limit, len(self.table))

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[str, str | None, np.ndarray]]:
        texts = self.table.texts
        for lo in range(0, self.n, self.block):
            rows = np.arange(lo, min(lo + self.block, self.n))
            mv = self.table.get(rows)
            for j, r in enumerate(rows.tolist()):
                yield self.table.ids[r], None if texts is None else texts[r], mv[j]
