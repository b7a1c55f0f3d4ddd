"""mvr: multi-vector late-interaction retrieval.

The shared vocabulary and math every stage builds on: ragged
:class:`MultiVectors`, :class:`FDEConfig` and the MUVERA encoders, exact
:func:`maxsim`, errors, and the on-disk format contract (:mod:`mvr.format`).
"""

from pathlib import Path
from typing import Any

from mvr import errors
from mvr._config import FDEConfig, PoolingConfig
from mvr._fde import encode_document_fdes, encode_query_fdes
from mvr._index_config import FirstStageConfig, IndexConfig
from mvr._maxsim import maxsim, maxsim_candidates
from mvr._multivectors import MultiVectors, as_multivectors
from mvr._protocols import Encoder, FirstStage, SearchResults, TokenStore

__version__ = "0.1.0"

__all__ = [
    "errors",
    "MultiVectors",
    "as_multivectors",
    "FDEConfig",
    "encode_query_fdes",
    "encode_document_fdes",
    "maxsim",
    "maxsim_candidates",
    "PoolingConfig",
    "IndexConfig",
    "FirstStageConfig",
    "Encoder",
    "FirstStage",
    "TokenStore",
    "SearchResults",
    "open_index",
    "__version__",
]


def open_index(path: str | Path, **options: Any) -> Any:
    """Open an index for search: ``serving.Searcher.open(path, **options)``.

    Imported lazily: ``mvr``'s core never imports the stage packages, so
    ``import mvr`` does not load the serving stack.
    """
    from serving import Searcher

    return Searcher.open(path, **options)
