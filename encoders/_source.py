"""Where an index's encoder comes from, recorded in its manifest so that it can be loaded again.

``manifest["encoder_source"]`` (written by the index build) is ``None`` or::

    {"load": "default" | "/abs/path/to/checkpoint",
     "layout": "default" | "stanford-colbert" | "pylate-colbert",
     "options": {"query_maxlen": 32, "doc_maxlen": 180},   # the token budgets
     "weights_sha256": "..."}                                # the identity's

:func:`load_index_encoder` loads it again (``Searcher.open``, ``mvr serve``, ``mvr add``,
``mvr eval``): the recorded directory must still exist and hold weights with the
recorded hash, else the error names the path and the hash it expected. Without a
recorded source (older indexes, indexes built from precomputed vectors) the encoder is
loaded by the identity's name, which works for ``"default"`` only: precomputed vectors
are never reloaded as a query encoder (they can only look up the texts they hold).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mvr.errors import EncoderMismatchError, ModelFileNotFoundError

__all__ = ["encoder_source", "load_index_encoder"]

def encoder_source(encoder: Any) -> dict[str, Any] | None:
    """How to load ``encoder`` again, or ``None`` when it cannot be told.

    A model (:class:`encoders.TransformerEncoder`) records its checkpoint directory
    (``"default"`` for the built-in one), its token budgets and its weights hash. Any
    other object may provide a ``source_spec`` attribute of the same shape; precomputed
    vectors have none.
    """
    spec = getattr(encoder, "source_spec", None)
    return dict(spec) if spec is not None else None


def _describe(source: dict[str, Any]) -> str:
    layout = source.get("layout", "encoder")
    return f"{layout} encoder at {source.get('load')!r}"


def load_index_encoder(
    identity: dict[str, Any] | None, source: dict[str, Any] | None, *,
    where: str = "the index", **options: Any,
) -> Any:
    """Load the encoder an index was built with.

    Parameters
    ----------
    identity : dict or None
        ``manifest["encoder"]``.
    source : dict or None
        ``manifest.get("encoder_source")``.
    where : str
        Names the index in error messages.
    **options
        Loader options that do not change the vectors (``progress``, ``batch_size``,
        ``device``, ``precision``); ignored for precomputed vectors.

    Raises
    ------
    ModelFileNotFoundError
        The recorded checkpoint directory is gone (names the path and weights hash).
    EncoderMismatchError
        It holds other weights (names the expected and the actual hash), the index
        records no encoder, or no source and a name other than ``"default"``.
    """
    import encoders

    if identity is None:
        raise EncoderMismatchError(
            f"{where} was built from vectors without an encoder: expected an encoder "
            "identity in its manifest, got none; pass an encoder to search texts"
        )
    expected_sha = identity.get("weights_sha256")
    if source is None:
        return _load_by_name(identity, where, options)
    target = source.get("load")
    if target != "default" and not Path(str(target)).exists():
        raise ModelFileNotFoundError(
            f"{where} was built with the {_describe(source)} (weights sha256 {expected_sha}); "
            f"expected that directory, but {target!r} does not exist (move it back, or pass "
            "another copy of the same weights as the encoder)"
        )
    device = options.pop("device", None)
    enc = encoders.load(target, device, **{**(source.get("options") or {}), **options})
    actual = enc.identity.get("weights_sha256")
    if actual != expected_sha:
        raise EncoderMismatchError(
            f"{where} was built with the {_describe(source)}: expected weights sha256 "
            f"{expected_sha}, got {actual} (the checkpoint changed since the build)"
        )
    return enc


def _load_by_name(identity: dict[str, Any], where: str, options: dict[str, Any]) -> Any:
    """No recorded source: the identity's name, with its token budgets ("default" only)."""
    import encoders

    name = identity.get("name", "default")
    if name != "default":
        raise EncoderMismatchError(
            f"{where} was built with a {name!r} encoder (weights sha256 "
            f"{identity.get('weights_sha256')}) but records no path to load it from; "
            "expected 'encoder_source' in its manifest (indexes built before it was recorded "
            "lack it): pass the encoder"
        )
    cfg = identity.get("config") or {}
    for side, key in (("query", "query_maxlen"), ("document", "doc_maxlen")):
        if isinstance(cfg.get(side), dict) and "max_length" in cfg[side]:
            options.setdefault(key, cfg[side]["max_length"])
    device = options.pop("device", None)
    return encoders.load(name, device, **options)
