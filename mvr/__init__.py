"""mvr: multi-vector late-interaction retrieval.

The shared vocabulary and math every stage builds on: ragged
:class:`MultiVectors`, :class:`FDEConfig` and the MUVERA encoders, exact
:func:`maxsim`, errors, and the on-disk format contract (:mod:`mvr.format`).
"""

from mvr import errors
from mvr._config import FDEConfig, PoolingConfig
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
