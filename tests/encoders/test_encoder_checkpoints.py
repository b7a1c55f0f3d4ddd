"""Stanford and PyLate ColBERT loaders against their reference algorithms, on tiny checkpoints.

The references re-implement colbert-ai's ``QueryTokenizer``/``DocTokenizer`` + ``ColBERT.query``/
``doc`` and PyLate's ``ColBERT.tokenize`` + ``encode`` directly on the tokenizer and the
``transformers`` model, independently of ``encoders._transformer``.
"""

from __future__ import annotations

import json
import logging
import string

import numpy as np
import pytest
import torch
from _tiny_checkpoints import (
    PROJ,
    PYLATE_DLEN,
    PYLATE_QLEN,
    STANFORD_DLEN,
    STANFORD_QLEN,
    TEXTS,
    build_pylate,
    build_stanford,
)

import encoders
from mvr.errors import ConfigError, ModelFileNotFoundError


def _hf(directory):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModel.from_pretrained(directory, local_files_only=True).eval()
    return tok, model


def colbert_ai_reference(directory, texts, *, is_query):
    """colbert-ai: '. ' placeholder replaced by the marker, [MASK] augmentation, skiplist."""
    from safetensors.torch import load_file

    tok, model = _hf(directory)
    meta = json.loads((directory / "artifact.metadata").read_text())
    linear = load_file(str(directory / "model.safetensors"))["linear.weight"]
    batch = [". " + t for t in texts]
    if is_query:
        obj = tok(batch, padding="max_length", truncation=True, max_length=meta["query_maxlen"],
                  return_tensors="pt")
        ids, mask = obj["input_ids"], obj["attention_mask"]
        ids[:, 1] = tok.convert_tokens_to_ids(meta["query_token_id"])
        ids[ids == tok.pad_token_id] = tok.mask_token_id
        if meta["attend_to_mask_tokens"]:
            mask[ids == tok.mask_token_id] = 1
        keep = torch.ones_like(ids, dtype=torch.bool)
    else:
        obj = tok(batch, padding="longest", truncation="longest_first",
                  max_length=meta["doc_maxlen"], return_tensors="pt")
        ids, mask = obj["input_ids"], obj["attention_mask"]
        ids[:, 1] = tok.convert_tokens_to_ids(meta["doc_token_id"])
        skip = {tok.encode(s, add_special_tokens=False)[0] for s in string.punctuation}
        keep = torch.tensor([[(x not in skip) and (x != tok.pad_token_id) for x in row]
                             for row in ids.tolist()])
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask)[0]
        out = torch.nn.functional.normalize(hidden @ linear.T, p=2, dim=2)
    return [out[i][keep[i]].numpy() for i in range(len(texts))], ids


def pylate_reference(directory, texts, *, is_query, attend=False, expand=True):
    """PyLate: prefix id inserted after [CLS], [MASK] padding for queries, skiplist for docs."""
    from safetensors.torch import load_file

    tok, model = _hf(directory)
    dense = load_file(str(directory / "1_Dense" / "model.safetensors"))
    length = PYLATE_QLEN if is_query else PYLATE_DLEN
    padding = "max_length" if is_query and expand else "longest"
    obj = tok(texts, padding=padding, truncation=True, max_length=length - 1, return_tensors="pt")
    ids, mask = obj["input_ids"], obj["attention_mask"]
    ids[mask == 0] = tok.mask_token_id  # PyLate sets pad_token_id = mask_token_id
    prefix = tok.convert_tokens_to_ids("[Q] " if is_query else "[D] ")
    ins = torch.full((len(texts), 1), prefix)
    ids = torch.cat([ids[:, :1], ins, ids[:, 1:]], dim=1)
    mask = torch.cat([mask[:, :1], torch.ones_like(ins), mask[:, 1:]], dim=1)
    if is_query and attend:
        mask.fill_(1)
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))[0]
        proj = hidden @ dense["linear.weight"].T + dense.get("linear.bias", 0)
    if is_query and expand:
        keep = torch.ones_like(ids, dtype=torch.bool)
    else:
        skip = torch.tensor([tok.convert_tokens_to_ids(w) for w in string.punctuation])
        keep = mask.bool() & ~torch.isin(ids, skip) if not is_query else mask.bool()
    return [torch.nn.functional.normalize(proj[i][keep[i]], dim=-1).numpy()
            for i in range(len(texts))], ids


def _assert_same(mv, reference, atol=1e-5):
    assert len(mv) == len(reference)
    for i, ref in enumerate(reference):
        assert mv[i].shape == ref.shape, (i, mv[i].shape, ref.shape)
        np.testing.assert_allclose(mv[i], ref, atol=atol, err_msg=f"item {i}")


# ------------------------------------------------------------------ Stanford ColBERT
@pytest.mark.parametrize("attend", [False, True])
def test_stanford_matches_colbert_ai(tmp_path, stanford_dir, attend):
    directory = stanford_dir if not attend else build_stanford(tmp_path / "s", attend_to_mask_tokens=True)
    enc = encoders.load(directory, device="cpu", precision="fp32", batch_size=3, progress=False)
    assert enc.dim == PROJ and enc.identity["name"] == "stanford-colbert"
    ref_q, _ = colbert_ai_reference(directory, TEXTS, is_query=True)
    ref_d, _ = colbert_ai_reference(directory, TEXTS, is_query=False)
    _assert_same(enc.encode_queries(TEXTS), ref_q)
    _assert_same(enc.encode_documents(TEXTS), ref_d)


def test_stanford_markers_and_augmentation(stanford_dir):
    enc = encoders.load(stanford_dir, device="cpu", precision="fp32", progress=False)
    tok = enc.tokenizer
    q_marker, d_marker = tok.convert_tokens_to_ids(["[unused0]", "[unused1]"])
    seqs, _ = enc.tokenize(["the fox", ""], enc.query_spec)
    assert seqs[0][:2] == [tok.cls_token_id, q_marker] and seqs[1] == [tok.cls_token_id, q_marker, tok.sep_token_id]
    queries = enc.encode_queries(["the fox", ""])
    assert queries.lengths.tolist() == [STANFORD_QLEN, STANFORD_QLEN]  # [MASK]-augmented
    seqs, _ = enc.tokenize(["the fox"], enc.document_spec)
    assert seqs[0] == [tok.cls_token_id, d_marker, *tok.convert_tokens_to_ids(["the", "fox"]), tok.sep_token_id]
    docs = enc.encode_documents(["the fox", ""])
    assert docs.lengths.tolist() == [5, 3]  # no augmentation for documents
    assert enc.identity["config"]["query"]["marker"] == "[unused0]"


def test_stanford_skiplist_documents_only(stanford_dir):
    enc = encoders.load(stanford_dir, device="cpu", precision="fp32", progress=False)
    text = ["the fox , jumps ! over ."]  # 4 words + 3 punctuation
    docs, queries = enc.encode_documents(text), enc.encode_queries(text)
    assert docs.lengths.tolist() == [3 + 4]  # [CLS] [D] [SEP] + words, punctuation dropped
    seqs, _ = enc.tokenize(text, enc.query_spec)
    assert len(seqs[0]) == 3 + 7 and queries.lengths.tolist() == [STANFORD_QLEN]
    skip = set(enc.document_spec.skip_ids)
    assert set(enc.tokenizer.convert_tokens_to_ids([",", "!", "."])) <= skip
    assert enc.query_spec.skip_ids == ()


def test_stanford_truncation_counted_once(stanford_dir, caplog):
    enc = encoders.load(stanford_dir, device="cpu", precision="fp32", progress=False)
    long = " ".join(["fox"] * 40)
    with caplog.at_level(logging.WARNING, logger="encoders"):
        docs = enc.encode_documents([long, "a cat", long, long])
    records = [r for r in caplog.records if r.name == "encoders"]
    assert len(records) == 1 and "3 of 4 documents" in records[0].getMessage()
    assert docs.lengths.tolist()[0] == STANFORD_DLEN


@pytest.mark.parametrize("missing", ["artifact.metadata", "model.safetensors", "config.json", "vocab.txt"])
def test_stanford_incomplete_dir_names_file(stanford_dir, copy_dir, missing):
    directory = copy_dir(stanford_dir)
    (directory / missing).unlink()
    if missing == "vocab.txt":
        (directory / "tokenizer.json").unlink()
    with pytest.raises(ModelFileNotFoundError, match=missing.replace(".", r"\.")):
        encoders.load(directory, device="cpu", precision="fp32")


def test_stanford_unknown_marker(stanford_dir, copy_dir):
    directory = copy_dir(stanford_dir)
    meta = json.loads((directory / "artifact.metadata").read_text())
    meta["query_token_id"] = "[unused9]"
    (directory / "artifact.metadata").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"\[unused9\]"):
        encoders.load(directory, device="cpu", precision="fp32")


# ------------------------------------------------------------------ PyLate
@pytest.mark.parametrize(
    ("expand", "attend"), [(True, False), (True, True), (False, False)]
)
def test_pylate_matches_reference(tmp_path, pylate_dir, expand, attend):
    directory = pylate_dir if (expand, attend) == (True, False) else build_pylate(
        tmp_path / "p", do_query_expansion=expand, attend_to_expansion_tokens=attend
    )
    enc = encoders.load(directory, device="cpu", precision="fp32", batch_size=3, progress=False)
    assert enc.dim == PROJ and enc.identity["name"] == "pylate-colbert"
    ref_q, ids = pylate_reference(directory, TEXTS, is_query=True, attend=attend, expand=expand)
    ref_d, _ = pylate_reference(directory, TEXTS, is_query=False)
    _assert_same(enc.encode_queries(TEXTS), ref_q)
    _assert_same(enc.encode_documents(TEXTS), ref_d)


def test_pylate_prefix_after_cls_and_expansion(pylate_dir):
    enc = encoders.load(pylate_dir, device="cpu", precision="fp32", progress=False)
    tok = enc.tokenizer
    q_id, d_id = tok.convert_tokens_to_ids(["[Q] ", "[D] "])
    assert q_id >= 40 and d_id >= 40  # added tokens, after the base vocabulary
    seqs, _ = enc.tokenize(["the cat"], enc.query_spec)
    assert seqs[0] == [tok.cls_token_id, q_id, *tok.convert_tokens_to_ids(["the", "cat"]), tok.sep_token_id]
    assert enc.encode_queries(["the cat", ""]).lengths.tolist() == [PYLATE_QLEN, PYLATE_QLEN]
    docs = enc.encode_documents(["the cat , runs !", ""])
    assert docs.lengths.tolist() == [3 + 3, 3]  # punctuation dropped; "" -> [CLS] [D] [SEP]
    assert enc.identity["config"]["document"]["marker"] == "[D] "


@pytest.mark.parametrize(
    ("path", "match"),
    [("1_Dense/model.safetensors", r"model\.safetensors"), ("config_sentence_transformers.json", "config_sentence_transformers"),
     ("modules.json", "modules"), ("1_Dense/config.json", r"config\.json")],
)
def test_pylate_incomplete_dir_names_file(pylate_dir, copy_dir, path, match):
    directory = copy_dir(pylate_dir)
    (directory / path).unlink()
    with pytest.raises(ModelFileNotFoundError, match=match):
        encoders.load(directory, device="cpu", precision="fp32")


def test_pylate_dense_shape_mismatch(pylate_dir, copy_dir):
    directory = copy_dir(pylate_dir)
    cfg = json.loads((directory / "1_Dense" / "config.json").read_text())
    cfg["out_features"] = 8
    (directory / "1_Dense" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"\(8, 32\)"):
        encoders.load(directory, device="cpu", precision="fp32")


# ------------------------------------------------------------------ shared machinery
@pytest.mark.parametrize("which", ["stanford", "pylate"])
def test_batch_size_invariance_and_order(request, which):
    directory = request.getfixturevalue(f"{which}_dir")
    one = encoders.load(directory, device="cpu", precision="fp32", batch_size=1, progress=False)
    seven = encoders.load(directory, device="cpu", precision="fp32", batch_size=7, progress=False)
    texts = TEXTS * 2
    for side in ("encode_queries", "encode_documents"):
        a, b = getattr(one, side)(texts), getattr(seven, side)(texts)
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-5)
        # sorted batching hands results back in input order: item i == text i alone
        for i in (0, 3, 5, 9):
            alone = getattr(one, side)([texts[i]])
            np.testing.assert_allclose(b[i], alone[0], atol=1e-5)
        norms = np.linalg.norm(b.vectors, axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
        assert b.dim == PROJ and b.dtype == np.float32


def test_identity_stable_and_distinct(stanford_dir, pylate_dir, tmp_path):
    a = encoders.load(stanford_dir, device="cpu", precision="fp32")
    b = encoders.load(stanford_dir, device="cpu", precision="fp32", batch_size=5)
    assert a.identity == b.identity  # batch size is not part of the identity
    assert len(a.identity["weights_sha256"]) == 64
    c = encoders.load(stanford_dir, device="cpu", precision="fp32", query_maxlen=8)
    assert c.identity != a.identity and c.encode_queries(["the"]).lengths.tolist() == [8]
    assert encoders.load(pylate_dir, device="cpu", precision="fp32").identity != a.identity
    json.dumps(a.identity)  # JSON-able, for the manifest


def test_not_an_encoder_dir(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelFileNotFoundError, match="modules.json"):
        encoders.load(tmp_path)
    with pytest.raises(ModelFileNotFoundError, match="never downloaded"):
        encoders.load(tmp_path / "nope")


def test_options_validated_and_bf16_close(stanford_dir):
    with pytest.raises(ConfigError, match="fp16"):
        encoders.load(stanford_dir, device="cpu", precision="fp16")
    with pytest.raises(ConfigError, match="precision"):
        encoders.load(stanford_dir, device="cpu", precision="int4")
    with pytest.raises(ConfigError, match="batch_size"):
        encoders.load(stanford_dir, device="cpu", precision="fp32", batch_size=0)
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        encoders.load(stanford_dir, device="cpu", precision="fp32", doc_maxlen=65)
    with pytest.raises(TypeError):  # unknown options are refused, not ignored
        encoders.load(stanford_dir, device="cpu", precision="fp32", use_fast=True)
    fp32 = encoders.load(stanford_dir, device="cpu", precision="fp32", progress=True, batch_size=2)
    bf16 = encoders.load(stanford_dir, device="cpu", precision="bf16", batch_size=2)
    assert bf16.identity == fp32.identity  # same model: same identity
    a, b = fp32.encode_documents(TEXTS), bf16.encode_documents(TEXTS)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_allclose(a.vectors, b.vectors, atol=0.05)


def test_concurrent_calls_match_sequential(pylate_dir):
    from concurrent.futures import ThreadPoolExecutor

    enc = encoders.load(pylate_dir, device="cpu", precision="fp32", batch_size=2, progress=False)
    expected = enc.encode_documents(TEXTS)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: enc.encode_documents(TEXTS), range(8)))
    for got in results:
        np.testing.assert_array_equal(got.offsets, expected.offsets)
        np.testing.assert_allclose(got.vectors, expected.vectors, atol=1e-5)


def test_auto_precision_follows_the_cpu(stanford_dir):
    from encoders._transformer import cpu_has_native_bf16

    enc = encoders.load(stanford_dir, device="cpu", precision="auto")
    assert enc.precision == ("bf16" if cpu_has_native_bf16() else "fp32")
    # the default is "auto": bf16 autocast where the CPU computes bf16 natively
    assert encoders.load(stanford_dir, device="cpu").precision == enc.precision


def test_int8_quantises_the_linears_and_stays_close(stanford_dir):
    """``precision="int8"``: every ``nn.Linear`` of the model becomes a dynamically
    quantised one (the projection stays float); same identity, vectors close to fp32.
    ``"fast"`` is bf16 where the CPU has it natively, else int8."""
    import torch

    from encoders._transformer import cpu_has_native_bf16

    fp32 = encoders.load(stanford_dir, device="cpu", precision="fp32", batch_size=2)
    int8 = encoders.load(stanford_dir, device="cpu", precision="int8", batch_size=2)
    assert int8.precision == "int8" and int8.identity == fp32.identity
    linears = [m for m in int8.model.modules() if type(m) is torch.nn.Linear]
    quantised = [m for m in int8.model.modules()
                 if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    assert not linears and quantised
    assert type(int8.projection) is torch.nn.Linear
    a, b = fp32.encode_documents(TEXTS), int8.encode_documents(TEXTS)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    cos = np.sum(a.vectors * b.vectors, axis=1)
    assert cos.min() > 0.9, cos.min()
    assert not np.array_equal(a.vectors, b.vectors)  # it did run quantised
    fast = encoders.load(stanford_dir, device="cpu", precision="fast")
    assert fast.precision == ("bf16" if cpu_has_native_bf16() else "int8")
    with pytest.raises(ConfigError, match="int8"):
        encoders.load(stanford_dir, device="meta", precision="int8")
