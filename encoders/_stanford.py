"""Stanford ColBERT checkpoints (``colbert-ai``: ``HF_ColBERT`` = BERT + ``linear``).

Directory layout: ``config.json`` (a BERT-family config, ``architectures:
["HF_ColBERT"]``), weights (``model.safetensors``, sharded safetensors or
``pytorch_model.bin``) holding ``bert.*`` and ``linear.weight`` (no bias), the tokenizer
(``tokenizer.json`` or ``vocab.txt``), and ``artifact.metadata`` (JSON) with
``query_maxlen``, ``doc_maxlen``, ``query_token_id`` / ``doc_token_id`` (the markers,
``[unused0]`` / ``[unused1]``), ``mask_punctuation``, ``attend_to_mask_tokens``; a key
that is absent takes colbert-ai's default.

Encoding follows colbert-ai: ``[CLS] marker tokens... [SEP]`` with the marker right after
``[CLS]``, at most ``query_maxlen`` / ``doc_maxlen`` tokens in all. Queries are padded
with ``[MASK]`` to ``query_maxlen`` (query augmentation) and every position yields a
vector; the mask tokens are attended to only with ``attend_to_mask_tokens``. Documents
keep their non-padding tokens except punctuation (``string.punctuation``'s first
word pieces, never ``[UNK]``) when ``mask_punctuation``. Vectors = ``linear(hidden)`` L2-normalised.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch

from encoders._files import (
    TOKENIZER_CANDIDATES,
    offline,
    quiet_transformers,
    read_json,
    require_file,
    require_one_of,
    sha256_files,
    weights_files,
)
from encoders._transformer import SideSpec, TransformerEncoder
from mvr.errors import ConfigError

__all__ = ["load_stanford", "is_stanford_dir", "COLBERT_DEFAULTS", "read_tensor"]

WHAT = "Stanford ColBERT checkpoint"

# colbert-ai's defaults (ColBERTConfig) for keys a checkpoint's metadata may lack.
COLBERT_DEFAULTS: dict[str, Any] = {
    "query_maxlen": 32,
    "doc_maxlen": 220,
    "query_token_id": "[unused0]",
    "doc_token_id": "[unused1]",
    "mask_punctuation": True,
    "attend_to_mask_tokens": False,
}


def is_stanford_dir(path: Path) -> bool:
    """``artifact.metadata`` present, or a ``config.json`` naming ``HF_ColBERT``."""
    if (path / "artifact.metadata").is_file():
        return True
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        architectures = read_json(config).get("architectures") or []
    except ConfigError:
        return False
    return "HF_ColBERT" in architectures


def read_tensor(files: list[Path], key: str, what: str) -> torch.Tensor:
    """Tensor ``key`` from safetensors / ``pytorch_model.bin`` weight files."""
    for path in files:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                if key in f.keys():
                    return f.get_tensor(key)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if key in state:
                return state[key]
    names = ", ".join(p.name for p in files)
    raise ConfigError(f"{what}: expected tensor {key!r} in {names}, not found")


def load_stanford(directory: Path, device: Any = None, **options: Any) -> TransformerEncoder:
    """Load a Stanford ColBERT checkpoint directory (offline).

    ``options``: ``batch_size``, ``precision``, ``progress``, and ``query_maxlen`` /
    ``doc_maxlen`` overriding the metadata.
    """
    offline()
    from transformers import AutoModel, AutoTokenizer

    directory = Path(directory)
    require_file(directory, "config.json", WHAT)
    meta_path = require_file(directory, "artifact.metadata", WHAT)
    require_one_of(directory, TOKENIZER_CANDIDATES, WHAT)
    weights = weights_files(directory, WHAT)
    meta = {**COLBERT_DEFAULTS, **_pick(read_json(meta_path))}
    for key in ("query_maxlen", "doc_maxlen"):
        if options.get(key) is not None:
            meta[key] = options.pop(key)
        else:
            options.pop(key, None)
    linear_weight = read_tensor(weights, "linear.weight", f"{WHAT} {directory}")
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = AutoModel.from_pretrained(directory, local_files_only=True)
    projection = torch.nn.Linear(linear_weight.shape[1], linear_weight.shape[0], bias=False)
    with torch.no_grad():
        projection.weight.copy_(linear_weight)
    q_marker = _marker_id(tokenizer, meta["query_token_id"], directory)
    d_marker = _marker_id(tokenizer, meta["doc_token_id"], directory)
    skip = _punctuation_ids(tokenizer) if meta["mask_punctuation"] else ()
    return TransformerEncoder(
        name="stanford-colbert",
        model=model,
        tokenizer=tokenizer,
        query=SideSpec(
            max_length=int(meta["query_maxlen"]),
            marker_id=q_marker,
            marker=meta["query_token_id"],
            expand=True,
            attend_to_expansion=bool(meta["attend_to_mask_tokens"]),
        ),
        document=SideSpec(
            max_length=int(meta["doc_maxlen"]),
            marker_id=d_marker,
            marker=meta["doc_token_id"],
            skip_ids=skip,
        ),
        projection=projection,
        weights_sha256=sha256_files(weights),
        config={"layout": "stanford-colbert", "model_type": model.config.model_type},
        device=device,
        source=str(directory),
        **options,
    )


def _pick(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in COLBERT_DEFAULTS if k in meta and meta[k] is not None}


def _marker_id(tokenizer: Any, token: str, directory: Path) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or (token_id == tokenizer.unk_token_id and token != tokenizer.unk_token):
        raise ConfigError(
            f"{WHAT} {directory}: marker token {token!r} is not in the tokenizer's vocabulary"
        )
    return int(token_id)


def _punctuation_ids(tokenizer: Any) -> tuple[int, ...]:
    """colbert-ai's skiplist: the first word piece of every ``string.punctuation`` symbol."""
    ids = set()
    for symbol in string.punctuation:
        pieces = tokenizer.encode(symbol, add_special_tokens=False)
        if pieces and pieces[0] != tokenizer.unk_token_id:  # never drop [UNK] words
            ids.add(int(pieces[0]))
    return tuple(sorted(ids))
