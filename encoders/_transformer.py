"""The shared transformer token encoder: tokenise, length-sorted batches, forward, keep, normalise.

Every model-backed encoder (the default MiniLM, Stanford ColBERT, PyLate) is a
:class:`TransformerEncoder` with two :class:`SideSpec` (queries, documents) and an
optional linear projection; only the loaders differ.

A sequence is built as ``prefix + [marker] + body + suffix`` where ``prefix`` /
``suffix`` are the tokenizer's own special tokens (``[CLS]`` / ``[SEP]`` for BERT)
and ``marker`` is the side's marker token (ColBERT's ``[unused0]``/``[unused1]``,
PyLate's ``[Q] ``/``[D] ``), inserted right after ``[CLS]``. ``body`` is the text's
tokens truncated so that the whole sequence is at most ``max_length`` tokens.
With ``expand`` (ColBERT query augmentation) the sequence is padded with
``[MASK]`` to exactly ``max_length`` and every position yields a vector.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from encoders._inputs import check_texts
from mvr._multivectors import MultiVectors
from mvr._progress import SUMMABLE
from mvr.errors import ConfigError

__all__ = ["SideSpec", "TransformerEncoder", "resolve_device"]

logger = logging.getLogger("encoders")

_PRECISIONS = ("fp32", "bf16", "fp16", "int8", "auto", "fast")


@dataclass(frozen=True, kw_only=True)
class SideSpec:
    """How one side (queries or documents) is tokenised and which token vectors it keeps.

    Parameters
    ----------
    max_length : int
        Tokens per sequence, special tokens and marker included.
    marker_id : int, optional
        Token inserted right after the tokenizer's leading special token.
    marker : str, optional
        The marker token's text (recorded in the identity).
    expand : bool
        Pad with the mask token to ``max_length`` and keep those vectors (query augmentation).
    attend_to_expansion : bool
        Whether the expansion tokens are attended to (attention mask 1) or not.
    skip_ids : tuple of int
        Token ids whose vectors are dropped (ColBERT's punctuation skiplist, documents only).
    """

    max_length: int
    marker_id: int | None = None
    marker: str | None = None
    expand: bool = False
    attend_to_expansion: bool = False
    skip_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        minimum = 3 if self.marker_id is not None else 2
        if self.max_length < minimum:
            raise ConfigError(
                f"max_length must be >= {minimum} (special tokens"
                f"{' and marker' if self.marker_id is not None else ''}), got {self.max_length}"
            )

    def describe(self, tokenizer: Any) -> dict[str, Any]:
        """JSON-able summary for the encoder identity."""
        skip = sorted(set(self.skip_ids))
        return {
            "max_length": self.max_length,
            "marker": self.marker,
            "marker_id": self.marker_id,
            "expand": self.expand,
            "attend_to_expansion": self.attend_to_expansion,
            "skiplist": tokenizer.convert_ids_to_tokens(skip) if skip else [],
        }


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device: expected e.g. 'cpu' or 'cuda:0', got {device!r}") from e


class TransformerEncoder:
    """A transformer (+ optional linear projection) producing L2-normalised token vectors.

    Use :func:`encoders.load` rather than this constructor.

    Parameters
    ----------
    name : str
        Identity name (``"default"``, ``"stanford-colbert"``, ``"pylate-colbert"``).
    model : torch.nn.Module
        A ``transformers`` encoder whose output's first element is the last hidden state.
    tokenizer : transformers tokenizer
    query, document : SideSpec
    projection : torch.nn.Linear, optional
        Applied to the hidden states before normalisation.
    weights_sha256 : str
    config : dict
        Extra identity config (model name, source layout...).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    precision : {"fp32", "bf16", "fp16", "int8", "auto", "fast"}, optional
        Default ``"auto"``: fp16 on CUDA, bf16 autocast on CPUs with native bf16
        (AVX512-BF16 / AMX, detected at run time from the CPU flags), else fp32.
        ``"bf16"`` forces bf16 autocast on CPU. ``"int8"`` (CPU only): the model's
        ``Linear`` layers dynamically quantised to int8 (``torch.ao`` dynamic quantisation:
        int8 weights, activations quantised per batch; the projection stays float).
        ``"fast"``: the fastest: fp16 on CUDA, bf16 where the CPU has it natively, else
        int8 (its SciFact quality against fp32: EVALUATION.md). Not part of the identity (same model, same vectors up to rounding:
        SciFact nDCG@10 is 0.7072 with fp32 and with bf16).
    batch_size : int
        Texts per forward pass (default 32); texts are sorted by length first.
    progress : bool
        Show a tqdm bar when a call needs more than one batch (default True).
    source : str, optional
        Where the model was loaded from (not part of the identity).
    """

    def __init__(
        self,
        *,
        name: str,
        model: torch.nn.Module,
        tokenizer: Any,
        query: SideSpec,
        document: SideSpec,
        projection: torch.nn.Linear | None = None,
        weights_sha256: str,
        config: dict[str, Any],
        device: str | torch.device | None = None,
        precision: str | None = None,
        batch_size: int = 32,
        progress: bool = True,
        source: str | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.device = resolve_device(device)
        self.precision = _resolve_precision(precision, self.device)
        self.batch_size = batch_size
        self.progress = progress
        self.source = source
        self.tokenizer = tokenizer
        # fast tokenizers are not safe to call from several threads at once ("Already borrowed")
        self._tokenizer_lock = threading.Lock()
        # we truncate ourselves; silence the tokenizer's "sequence too long" notice
        tokenizer.model_max_length = 1 << 30
        self.query_spec = query
        self.document_spec = document
        self._prefix, self._suffix = _special_layout(tokenizer)
        self._pad_id = _token_id(tokenizer, "pad_token_id", 0)
        self._mask_id = _token_id(tokenizer, "mask_token_id", None)
        if query.expand and self._mask_id is None:
            raise ConfigError("query expansion needs a mask token; the tokenizer has none")
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.model = model.to(self.device, dtype=dtype).eval()
        if self.precision == "int8":
            self.model = _quantize_linear_int8(self.model)
        self.projection = (
            projection.to(self.device, dtype=dtype).eval() if projection is not None else None
        )
        positions = getattr(model.config, "max_position_embeddings", None)
        for side, spec in (("query", query), ("document", document)):
            if positions is not None and spec.max_length > positions:
                raise ConfigError(
                    f"{side} max_length must be <= the model's max_position_embeddings "
                    f"({positions}), got {spec.max_length}"
                )
        hidden = int(model.config.hidden_size)
        self._dim = int(projection.out_features) if projection is not None else hidden
        if projection is not None and projection.in_features != hidden:
            raise ConfigError(
                f"projection expects {projection.in_features} inputs, the model's hidden size "
                f"is {hidden}"
            )
        self._identity = {
            "name": name,
            "config": {
                **config,
                "dim": self._dim,
                "normalize": True,
                "query": query.describe(tokenizer),
                "document": document.describe(tokenizer),
            },
            "weights_sha256": weights_sha256,
        }

    # ------------------------------------------------------------------ protocol
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def identity(self) -> dict[str, Any]:
        return _deep_copy(self._identity)

    @property
    def source_spec(self) -> dict[str, Any] | None:
        """How to load this encoder again (recorded in an index's manifest; see
        :mod:`encoders._source`): the checkpoint directory (``"default"`` for the built-in
        model), the token budgets and the weights hash. ``None`` without a source."""
        name = self._identity["name"]
        if name != "default" and self.source is None:
            return None
        from pathlib import Path

        return {
            "load": "default" if name == "default" else str(Path(self.source).resolve()),
            "layout": name,
            "options": {"query_maxlen": self.query_spec.max_length,
                        "doc_maxlen": self.document_spec.max_length},
            "weights_sha256": self._identity["weights_sha256"],
        }

    def encode_queries(self, texts: Sequence[str]) -> MultiVectors:
        """Token vectors of queries, float32, L2-normalised.

        An empty string encodes to the special tokens only (``[CLS] [SEP]``, plus the
        marker and, with query augmentation, the ``[MASK]`` padding).

        Returns
        -------
        MultiVectors
            ``len(texts)`` items of shape (t_i, dim), in input order.
        """
        return self._encode(check_texts(texts, "queries"), self.query_spec, "queries")

    def encode_documents(self, texts: Sequence[str]) -> MultiVectors:
        """Token vectors of documents, float32, L2-normalised; skiplist tokens dropped.

        An empty string encodes to the special tokens only (``[CLS] [SEP]`` plus the marker).
        """
        return self._encode(check_texts(texts, "documents"), self.document_spec, "documents")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self._identity['name']!r}, dim={self.dim}, "
            f"device={self.device}, precision={self.precision!r}, batch_size={self.batch_size})"
        )

    # ------------------------------------------------------------------ internals
    def tokenize(self, texts: list[str], spec: SideSpec) -> tuple[list[list[int]], int]:
        """Token id sequences (special tokens and marker included) and the truncation count."""
        bodies: list[list[int]] = []
        if texts:
            with self._tokenizer_lock:
                bodies = self.tokenizer(
                    texts, add_special_tokens=False, truncation=False, return_attention_mask=False
                )["input_ids"]
        marker = [spec.marker_id] if spec.marker_id is not None else []
        room = spec.max_length - len(self._prefix) - len(self._suffix) - len(marker)
        truncated = 0
        seqs = []
        for body in bodies:
            if len(body) > room:
                truncated += 1
                body = body[:room]
            seqs.append(self._prefix + marker + list(body) + self._suffix)
        return seqs, truncated

    def _encode(self, texts: list[str], spec: SideSpec, what: str) -> MultiVectors:
        if not texts:
            return MultiVectors.empty(self.dim, np.float32)
        seqs, truncated = self.tokenize(texts, spec)
        if truncated:
            logger.warning(
                "%d of %d %s exceeded %d tokens and were truncated",
                truncated, len(texts), what, spec.max_length,
                extra={SUMMABLE: (0, 1)},  # a stage sums these (mvr._progress)
            )
        keeps = [self._keep_mask(s, spec) for s in seqs]
        lengths = np.fromiter((int(k.sum()) for k in keeps), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        out = np.empty((int(offsets[-1]), self.dim), dtype=np.float32)
        order = np.argsort([-len(s) for s in seqs], kind="stable")
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in _progress(batches, self.progress, f"encoding {what}"):
            vectors = self._forward([seqs[i] for i in batch], [keeps[i] for i in batch], spec)
            rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in batch])
            out[rows] = vectors
        return MultiVectors(out, offsets, validate=False)

    def _keep_mask(self, seq: list[int], spec: SideSpec) -> np.ndarray:
        """Which positions of ``seq`` (expansion included) yield a vector."""
        ids = np.asarray(seq, dtype=np.int64)
        keep = np.ones(len(ids), dtype=bool)
        if spec.skip_ids:
            # the special tokens and the marker are never skipped
            inner = slice(len(self._prefix), len(ids) - len(self._suffix))
            keep[inner] = ~np.isin(ids[inner], np.asarray(spec.skip_ids, dtype=np.int64))
        if spec.expand:
            keep = np.concatenate([keep, np.ones(spec.max_length - len(ids), dtype=bool)])
        return keep

    @torch.inference_mode()
    def _forward(self, seqs: list[list[int]], keeps: list[np.ndarray], spec: SideSpec) -> np.ndarray:
        """Run one batch; returns the kept vectors, item after item. Shape: (kept, dim)."""
        width = spec.max_length if spec.expand else max(len(s) for s in seqs)
        ids = np.full((len(seqs), width), self._pad_id, dtype=np.int64)
        attn = np.zeros((len(seqs), width), dtype=np.int64)
        keep = np.zeros((len(seqs), width), dtype=bool)
        for j, (s, k) in enumerate(zip(seqs, keeps, strict=True)):
            ids[j, : len(s)] = s
            attn[j, : len(s)] = 1
            keep[j, : len(k)] = k
            if spec.expand:
                ids[j, len(s) :] = self._mask_id
                if spec.attend_to_expansion:
                    attn[j, len(s) :] = 1
        input_ids = torch.from_numpy(ids).to(self.device)
        attention = torch.from_numpy(attn).to(self.device)
        with self._autocast():
            hidden = self.model(
                input_ids=input_ids,
                attention_mask=attention,
                token_type_ids=torch.zeros_like(input_ids),
            )[0]
            selected = hidden[torch.from_numpy(keep).to(self.device)]
            if self.projection is not None:
                selected = self.projection(selected)
        selected = torch.nn.functional.normalize(selected.float(), p=2, dim=-1)
        return selected.cpu().numpy()

    def _autocast(self) -> Any:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=self.device.type, enabled=False)


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16; Linux flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False


def _resolve_precision(precision: str | None, device: torch.device) -> str:
    if precision is None:  # the default: "auto"
        precision = "auto"
    if precision in ("auto", "fast"):  # bf16 only where the CPU has it natively
        if device.type == "cuda":
            return "fp16"
        if device.type == "cpu" and cpu_has_native_bf16():
            return "bf16"
        return "int8" if precision == "fast" and device.type == "cpu" else "fp32"
    if precision not in _PRECISIONS:
        raise ConfigError(f"precision: expected one of {_PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("precision 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
    if precision == "int8" and device.type != "cpu":
        raise ConfigError(f"precision 'int8' runs on the CPU only, got device {device}")
    return precision


def _quantize_linear_int8(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every ``nn.Linear`` replaced by a dynamically quantised int8 one
    (fbgemm / x86 kernels: int8 weights per tensor, activations quantised per call)."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch.ao's notice that eager quantisation is moving to torchao (still supported)
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _special_layout(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The tokenizer's special tokens around a single sequence: ``([CLS]], [SEP]])`` for BERT."""
    probe = "hello world"
    body = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(body) + 1):
        if full[start : start + len(body)] == body:
            return list(full[:start]), list(full[start + len(body) :])
    raise ConfigError("cannot locate the text inside the tokenizer's special-token template")


def _token_id(tokenizer: Any, attr: str, default: int | None) -> int | None:
    value = getattr(tokenizer, attr, None)
    return int(value) if value is not None else default


def _progress(batches: list[np.ndarray], enabled: bool, desc: str) -> Any:
    if not enabled or len(batches) <= 1:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc=desc, unit="batch", total=len(batches))


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj
