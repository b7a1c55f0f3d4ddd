"""Local model files: presence checks, JSON metadata, cached weight hashes, offline loading.

Nothing here ever reaches the network: loaders call :func:`offline` first and pass
``local_files_only=True`` to ``transformers``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mvr.errors import ConfigError, ModelFileNotFoundError

__all__ = [
    "offline",
    "require_file",
    "require_one_of",
    "read_json",
    "weights_files",
    "sha256_files",
    "quiet_transformers",
]

WEIGHT_CANDIDATES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_CANDIDATES = ("tokenizer.json", "vocab.txt")

_HASH_LOCK = threading.Lock()
# (realpath, size, mtime_ns) -> sha256 hex; a model's weights are hashed once per process.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def offline() -> None:
    """Make Hugging Face libraries refuse network access for the rest of the process.

    Only sets the variables when the user has not set them (an explicit
    ``HF_HUB_OFFLINE=0`` is obeyed; loaders still pass ``local_files_only=True``).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def require_file(directory: Path, name: str, what: str) -> Path:
    """Return ``directory / name`` or raise :class:`ModelFileNotFoundError` naming it."""
    path = directory / name
    if not path.is_file():
        raise ModelFileNotFoundError(
            f"{what} directory {directory} is incomplete: expected file {name!r}, not found"
        )
    return path


def require_one_of(directory: Path, names: Sequence[str], what: str) -> Path:
    """Return the first existing ``directory / name`` of ``names`` or raise naming them all."""
    for name in names:
        if (directory / name).is_file():
            return directory / name
    wanted = " or ".join(repr(n) for n in names)
    raise ModelFileNotFoundError(
        f"{what} directory {directory} is incomplete: expected {wanted}, found none of them"
    )


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object, raising :class:`ConfigError` with the path on bad content."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: expected a JSON object, could not parse it: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def weights_files(directory: Path, what: str) -> list[Path]:
    """The weight files of a transformers checkpoint (shards listed by the index file)."""
    first = require_one_of(directory, WEIGHT_CANDIDATES, what)
    if first.name != "model.safetensors.index.json":
        return [first]
    index = read_json(first)
    shards = sorted(set(index.get("weight_map", {}).values()))
    if not shards:
        raise ConfigError(f"{first}: expected a non-empty 'weight_map', got none")
    return [require_file(directory, s, what) for s in shards]


def sha256_files(paths: Sequence[Path]) -> str:
    """sha256 of one file, or of the concatenated per-file digests for several.

    Cached per process by (path, size, mtime), so loading the same model twice
    hashes its weights once.
    """
    digests = [_sha256_file(p) for p in paths]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def _sha256_file(path: Path) -> str:
    st = path.stat()
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        hit = _HASH_CACHE.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    with _HASH_LOCK:
        _HASH_CACHE[key] = digest
    return digest


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' weight-loading progress bar and info logs while loading."""
    from transformers.utils import logging as hf_logging

    was_disabled = hf_logging.is_progress_bar_enabled() is False
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if not was_disabled:
            hf_logging.enable_progress_bar()
