"""Validation of the texts handed to an encoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mvr.errors import InvalidInputError

__all__ = ["check_texts"]


def check_texts(texts: Any, what: str) -> list[str]:
    """Validate an input batch: a sequence (not a single string) of strings."""
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError(
            f"{what}: expected a sequence of strings, got a single {type(texts).__name__}; "
            "wrap it in a list"
        )
    if not isinstance(texts, Sequence) and not isinstance(texts, np.ndarray):
        raise InvalidInputError(
            f"{what}: expected a sequence of strings, got {type(texts).__name__}"
        )
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InvalidInputError(
                f"{what}: item {i}: expected str, got {type(t).__name__} ({t!r:.60})"
            )
    return out
