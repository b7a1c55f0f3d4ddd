"""mvr: multi-vector late-interaction retrieval.

The shared vocabulary and math every stage builds on: ragged
:class:`MultiVectors`, :class:`FDEConfig` and the MUVERA encoders, exact
:func:`maxsim`, errors, and the on-disk format contract (:mod:`mvr.format`).

Names load on first use (PEP 562), so ``import mvr`` -- and the ``mvr`` command's
``--help`` -- import neither numpy's heavy users nor numba.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mvr._cpu_blas import tune_openblas

tune_openblas()  # before anything loads numpy's or faiss's OpenBLAS (see mvr._cpu_blas)

from mvr import errors  # noqa: E402

__version__ = "0.1.0"

_LAZY = {
    "MultiVectors": "mvr._multivectors",
    "as_multivectors": "mvr._multivectors",
    "FDEConfig": "mvr._config",
    "PoolingConfig": "mvr._config",
    "encode_query_fdes": "mvr._fde",
    "encode_document_fdes": "mvr._fde",
    "maxsim": "mvr._maxsim",
    "maxsim_candidates": "mvr._maxsim",
    "IndexConfig": "mvr._index_config",
    "FirstStageConfig": "mvr._index_config",
    "Encoder": "mvr._protocols",
    "FirstStage": "mvr._protocols",
    "TokenStore": "mvr._protocols",
    "SearchResults": "mvr._protocols",
}

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
    "__version__",
]

if TYPE_CHECKING:
    from mvr._config import FDEConfig, PoolingConfig
    from mvr._fde import encode_document_fdes, encode_query_fdes
    from mvr._index_config import FirstStageConfig, IndexConfig
    from mvr._maxsim import maxsim, maxsim_candidates
    from mvr._multivectors import MultiVectors, as_multivectors
    from mvr._protocols import Encoder, FirstStage, SearchResults, TokenStore


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mvr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
