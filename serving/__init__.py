"""serving package: open an index and search it.

:class:`Searcher` runs query FDEs -> first stage -> exact MaxSim re-ranking over a
:class:`mvr.TokenStore` (in memory, memory-mapped, or on SSD).
"""

import mvr  # noqa: F401  (first: it picks OpenBLAS's kernels before numpy loads them)
from serving._filters import filter_mask
from serving._first_stage import ExactFirstStage
from serving._first_stage_faiss import FaissFirstStage
from serving._hybrid import HybridConfig
from serving._metadata import metadata_summary
from serving._searcher import Searcher
from serving._stores import MemoryTokenStore, MmapTokenStore, TableLayout, make_store

__all__ = [
    "Searcher",
    "ExactFirstStage",
    "FaissFirstStage",
    "MemoryTokenStore",
    "MmapTokenStore",
    "TableLayout",
    "make_store",
    "filter_mask",
    "metadata_summary",
    "HybridConfig",
]

# The HTTP service (FastAPI) and the evaluation tools load on first use, so that
# ``import serving`` stays light for library users.
_LAZY = {
    "create_app": "serving.http",
    "ServerSettings": "serving.http",
}
__all__ += list(_LAZY)


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'serving' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
