"""PyLate / sentence-transformers ColBERT checkpoints (``modules.json``: Transformer + Dense).

Directory layout (what ``pylate.models.ColBERT.save`` writes):

* ``modules.json``: the module list; a ``...Transformer`` module (``path`` usually ``""``,
  the root) followed by one or more ``...Dense`` modules (usually ``1_Dense``).
* the Transformer's directory: ``config.json``, weights, tokenizer files; the tokenizer
  holds the prefix tokens (``"[Q] "``, ``"[D] "``) as added tokens.
* each Dense directory: ``config.json`` (``in_features``, ``out_features``, ``bias``) and
  ``model.safetensors`` or ``pytorch_model.bin`` (``linear.weight`` [, ``linear.bias``]).
  As in PyLate, the activation is not applied; consecutive Dense layers are folded
  into one linear map.
* ``config_sentence_transformers.json``: ``query_prefix`` / ``document_prefix``,
  ``query_length`` / ``document_length``, ``skiplist_words``, ``do_query_expansion``,
  ``attend_to_expansion_tokens`` (absent keys take PyLate's defaults).

Encoding follows PyLate: the prefix token is inserted right after ``[CLS]`` and the
whole sequence is at most ``query_length`` / ``document_length`` tokens; queries are
padded with ``[MASK]`` to ``query_length`` when ``do_query_expansion`` (every position
yields a vector; attended to only with ``attend_to_expansion_tokens``); documents drop
the tokens of ``skiplist_words`` (words that are not single tokens are ignored).
"""

from __future__ import annotations

import json
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
from encoders._stanford import read_tensor
from encoders._transformer import SideSpec, TransformerEncoder
from mvr.errors import ConfigError

__all__ = ["load_pylate", "PYLATE_DEFAULTS"]

WHAT = "PyLate ColBERT checkpoint"

PYLATE_DEFAULTS: dict[str, Any] = {
    "query_prefix": "[Q] ",
    "document_prefix": "[D] ",
    "query_length": 32,
    "document_length": 180,
    "skiplist_words": list(string.punctuation),
    "do_query_expansion": True,
    "attend_to_expansion_tokens": False,
}


def load_pylate(directory: Path, device: Any = None, **options: Any) -> TransformerEncoder:
    """Load a PyLate ColBERT directory (offline).

    ``options``: ``batch_size``, ``precision``, ``progress``, and ``query_maxlen`` /
    ``doc_maxlen`` overriding ``query_length`` / ``document_length``.
    """
    offline()
    from transformers import AutoModel, AutoTokenizer

    directory = Path(directory)
    transformer_dir, dense_dirs = _modules(directory)
    st_config = read_json(require_file(directory, "config_sentence_transformers.json", WHAT))
    cfg = {k: st_config.get(k) if st_config.get(k) is not None else v for k, v in PYLATE_DEFAULTS.items()}
    for option, key in (("query_maxlen", "query_length"), ("doc_maxlen", "document_length")):
        value = options.pop(option, None)
        if value is not None:
            cfg[key] = value
    require_file(transformer_dir, "config.json", WHAT)
    require_one_of(transformer_dir, TOKENIZER_CANDIDATES + ("tokenizer_config.json",), WHAT)
    weights = weights_files(transformer_dir, WHAT)
    projection, dense_weights = _dense_chain(dense_dirs)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(transformer_dir, local_files_only=True)
        model = AutoModel.from_pretrained(transformer_dir, local_files_only=True)
    skip = _skip_ids(tokenizer, cfg["skiplist_words"])
    return TransformerEncoder(
        name="pylate-colbert",
        model=model,
        tokenizer=tokenizer,
        query=SideSpec(
            max_length=int(cfg["query_length"]),
            marker_id=_prefix_id(tokenizer, cfg["query_prefix"], directory),
            marker=cfg["query_prefix"],
            expand=bool(cfg["do_query_expansion"]),
            attend_to_expansion=bool(cfg["attend_to_expansion_tokens"]),
        ),
        document=SideSpec(
            max_length=int(cfg["document_length"]),
            marker_id=_prefix_id(tokenizer, cfg["document_prefix"], directory),
            marker=cfg["document_prefix"],
            skip_ids=skip,
        ),
        projection=projection,
        weights_sha256=sha256_files(weights + dense_weights),
        config={"layout": "pylate-colbert", "model_type": model.config.model_type},
        device=device,
        source=str(directory),
        **options,
    )


def _modules(directory: Path) -> tuple[Path, list[Path]]:
    """The Transformer directory and the Dense directories, from ``modules.json``."""
    path = require_file(directory, "modules.json", WHAT)
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ConfigError(f"{path}: expected a JSON list of modules, could not parse it: {e}") from e
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ConfigError(f"{path}: expected a JSON list of module objects")
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer" or len(kinds) < 2 or any(k != "Dense" for k in kinds[1:]):
        raise ConfigError(
            f"{path}: expected a ColBERT module list [Transformer, Dense, ...], got {kinds}"
        )
    dirs = [directory / str(m.get("path", "")) for m in modules]
    return dirs[0], dirs[1:]


def _dense_chain(dirs: list[Path]) -> tuple[torch.nn.Linear, list[Path]]:
    """Fold the Dense layers (no activation, as PyLate) into one Linear; their weight files."""
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    files: list[Path] = []
    for d in dirs:
        cfg = read_json(require_file(d, "config.json", f"{WHAT} Dense module"))
        wfile = require_one_of(d, ("model.safetensors", "pytorch_model.bin"), f"{WHAT} Dense module")
        files.append(wfile)
        w = read_tensor([wfile], "linear.weight", f"Dense module {d}").float()
        b = read_tensor([wfile], "linear.bias", f"Dense module {d}").float() if cfg.get("bias", True) else None
        expected = (int(cfg.get("out_features", w.shape[0])), int(cfg.get("in_features", w.shape[1])))
        if tuple(w.shape) != expected:
            raise ConfigError(
                f"Dense module {d}: config.json says (out, in) = {expected}, weights have {tuple(w.shape)}"
            )
        if weight is None:
            weight, bias = w, b
        else:  # y = W2 (W1 x + b1) + b2
            if w.shape[1] != weight.shape[0]:
                raise ConfigError(f"Dense module {d}: expects {w.shape[1]} inputs, gets {weight.shape[0]}")
            folded = w @ bias if bias is not None else None
            if b is not None:
                folded = b if folded is None else folded + b
            weight, bias = w @ weight, folded
    assert weight is not None  # _modules guarantees one Dense at least
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear, files


def _prefix_id(tokenizer: Any, prefix: str, directory: Path) -> int:
    token_id = tokenizer.convert_tokens_to_ids(prefix)
    if token_id is None or (token_id == tokenizer.unk_token_id and prefix != tokenizer.unk_token):
        raise ConfigError(
            f"{WHAT} {directory}: prefix token {prefix!r} is not in the tokenizer's vocabulary "
            "(a PyLate checkpoint stores it as an added token)"
        )
    return int(token_id)


def _skip_ids(tokenizer: Any, words: list[str]) -> tuple[int, ...]:
    ids = set()
    for word in words:
        token_id = tokenizer.convert_tokens_to_ids(word)
        if token_id is not None and (token_id != tokenizer.unk_token_id or word == tokenizer.unk_token):
            ids.add(int(token_id))
    return tuple(sorted(ids))
