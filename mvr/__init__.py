"""mvr: multi-vector late-interaction retrieval.

The shared vocabulary and math every stage builds on: ragged
:class:`MultiVectors`, :class:`FDEConfig` and the MUVERA encoders, exact
:func:`maxsim`, errors, and the on-disk format contract (:mod:`mvr.format`).
"""

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
    "FDEConfig",
    "PoolingConfig",
    "MultiVectors",
    "as_multivectors",
    "Encoder",
    "FirstStage",
    "TokenStore",
    "SearchResults",
    "__version__",
]

__all__ += ["IndexConfig", "FirstStageConfig", "open_index"]
__all__ += ["maxsim", "maxsim_candidates"]
__all__ += ["encode_query_fdes", "encode_document_fdes"]


def open_index(path, **options):  # type: ignore[no-untyped-def]
    """Open an index for search: ``serving.Searcher.open(path, **options)``.

    Imported lazily so that ``import mvr`` does not load the serving stack.
    """
    from serving import Searcher

    return Searcher.open(path, **options)
