"""Tiny randomly initialised checkpoints, written in each published layout.

A 2-layer BERT (hidden 32) over a 66-token vocabulary, saved as a Stanford ColBERT
directory (``bert.*`` + ``linear.weight`` safetensors, ``artifact.metadata``) and as a
PyLate directory (``modules.json``, ``1_Dense/``, ``config_sentence_transformers.json``,
``[Q] ``/``[D] `` added tokens).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

VOCAB = [
    "[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    *string.punctuation,
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "a", "cat",
    "runs", "fast", "and", "sleeps", "on", "mat", "red", "blue", "green", "is",
    "##s", "##ed", "##ing", "big",
]
HIDDEN, PROJ, STANFORD_QLEN, STANFORD_DLEN = 32, 16, 12, 20
PYLATE_QLEN, PYLATE_DLEN = 10, 18


def _tokenizer(directory: Path):
    from transformers import BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return BertTokenizer.from_pretrained(directory, local_files_only=True)


def _bert(vocab_size: int, seed: int):
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    return BertModel(config).eval()


def build_stanford(directory: Path, *, attend_to_mask_tokens: bool = False) -> Path:
    """A Stanford ColBERT checkpoint directory (colbert-ai's HF_ColBERT layout)."""
    from safetensors.torch import save_file

    tokenizer = _tokenizer(directory)
    model = _bert(len(tokenizer), seed=0)
    gen = torch.Generator().manual_seed(1)
    state = {f"bert.{k}": v.contiguous() for k, v in model.state_dict().items()}
    state["linear.weight"] = torch.randn(PROJ, HIDDEN, generator=gen)
    save_file(state, str(directory / "model.safetensors"))
    model.config.architectures = ["HF_ColBERT"]
    model.config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    meta = {
        "query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_token": "[Q]",
        "doc_token": "[D]", "dim": PROJ, "query_maxlen": STANFORD_QLEN,
        "doc_maxlen": STANFORD_DLEN, "mask_punctuation": True,
        "attend_to_mask_tokens": attend_to_mask_tokens, "similarity": "cosine",
    }
    (directory / "artifact.metadata").write_text(json.dumps(meta, indent=2))
    return directory


def build_pylate(directory: Path, *, do_query_expansion: bool = True,
                 attend_to_expansion_tokens: bool = False, bias: bool = True) -> Path:
    """A PyLate ColBERT directory (what pylate.models.ColBERT.save writes)."""
    from safetensors.torch import save_file

    tokenizer = _tokenizer(directory)
    tokenizer.add_tokens(["[Q] ", "[D] "])
    model = _bert(len(tokenizer), seed=2)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    dense = directory / "1_Dense"
    dense.mkdir()
    gen = torch.Generator().manual_seed(3)
    weights = {"linear.weight": torch.randn(PROJ, HIDDEN, generator=gen)}
    if bias:
        weights["linear.bias"] = torch.randn(PROJ, generator=gen)
    save_file(weights, str(dense / "model.safetensors"))
    (dense / "config.json").write_text(json.dumps({
        "in_features": HIDDEN, "out_features": PROJ, "bias": bias,
        "activation_function": "torch.nn.modules.linear.Identity",
    }))
    (directory / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]))
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": PYLATE_DLEN - 1, "do_lower_case": False})
    )
    (directory / "config_sentence_transformers.json").write_text(json.dumps({
        "query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": PYLATE_QLEN,
        "document_length": PYLATE_DLEN, "attend_to_expansion_tokens": attend_to_expansion_tokens,
        "skiplist_words": list(string.punctuation), "do_query_expansion": do_query_expansion,
        "similarity_fn_name": "MaxSim",
    }))
    return directory


TEXTS = [
    "the quick brown fox jumps over the lazy dog .",
    "a cat",
    "",
    "the red cat runs fast , and the blue dog sleeps on the mat !",
    "big green fox ? the dog ; a cat : runs",
    "dog",
    "the the the the the the the the the the the the the the the the the the the the the the",
    "quick (brown) fox - jumps",
]
