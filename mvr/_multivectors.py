"""Ragged batches of multi-vectors: one flat ``(total, dim)`` array plus offsets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mvr.errors import DimensionMismatchError, EmptyInputError, InvalidVectorsError

__all__ = ["MultiVectors", "as_multivectors"]

_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


class MultiVectors:
    """A ragged batch of token-vector sets.

    Item ``i`` is ``vectors[offsets[i]:offsets[i + 1]]``. Items may hold zero
    tokens (the container allows it); functions that cannot score an empty item
    call :meth:`require_nonempty`.

    Parameters
    ----------
    vectors : np.ndarray
        Shape: (total_tokens, dim). float16, float32 or float64 (stored as given
        for float16/float32; float64 is converted to float32).
    offsets : np.ndarray
        Shape: (n + 1,). Integer, ``offsets[0] == 0``, non-decreasing,
        ``offsets[-1] == total_tokens``. Stored as int64.
    validate : bool
        Check shapes, offsets and finiteness (default). Pass ``False`` only for
        arrays produced by mvr itself.

    Examples
    --------
    >>> mv = MultiVectors.from_arrays([np.ones((3, 4)), np.ones((1, 4))])
    >>> len(mv), mv.dim, mv.lengths.tolist()
    (2, 4, [3, 1])
    """

    __slots__ = ("vectors", "offsets")

    def __init__(self, vectors: np.ndarray, offsets: np.ndarray, *, validate: bool = True) -> None:
        vectors = np.asarray(vectors)
        offsets = np.asarray(offsets)
        if validate:
            _check_vectors(vectors, "vectors")
            check_offsets(offsets, vectors.shape[0])
            _check_finite(vectors, offsets)
        if vectors.dtype == np.float64:
            vectors = vectors.astype(np.float32)
        self.vectors: np.ndarray = vectors
        self.offsets: np.ndarray = offsets.astype(np.int64, copy=False)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        arrays: Sequence[Any],
        *,
        dim: int | None = None,
        dtype: Any = None,
    ) -> MultiVectors:
        """Build from a sequence of ``(t_i, dim)`` arrays.

        Parameters
        ----------
        arrays : sequence of array-like
            Each of shape (t_i, dim); ``t_i`` may be 0.
        dim : int, optional
            Expected dimension; required when ``arrays`` is empty.
        dtype : numpy dtype, optional
            Output dtype (default: float16 if every input is float16, else float32).
        """
        if isinstance(arrays, np.ndarray) and arrays.ndim == 2:
            raise InvalidVectorsError(
                "expected a sequence of (t_i, dim) arrays, got a single 2-D array of shape "
                f"{arrays.shape}; wrap it in a list for one item"
            )
        items = []
        for i, a in enumerate(arrays):
            arr = np.asarray(a)
            if arr.dtype.kind not in "fiu":
                raise InvalidVectorsError(
                    f"item {i}: expected a numeric array, got dtype {arr.dtype}"
                )
            if arr.ndim != 2:
                raise InvalidVectorsError(
                    f"item {i}: expected a 2-D array (tokens, dim), got {arr.ndim}-D "
                    f"with shape {arr.shape}"
                )
            if dim is None:
                dim = int(arr.shape[1])
            elif arr.shape[1] != dim:
                raise DimensionMismatchError(
                    f"item {i}: expected dim {dim}, got {arr.shape[1]} (shape {arr.shape})"
                )
            items.append(arr)
        if dim is None:
            raise EmptyInputError("cannot infer dim from an empty sequence; pass dim=")
        if dtype is None:
            all16 = bool(items) and all(a.dtype == np.float16 for a in items)
            dtype = np.float16 if all16 else np.float32
        lengths = np.fromiter((a.shape[0] for a in items), dtype=np.int64, count=len(items))
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if items:
            flat = np.concatenate([a.astype(dtype, copy=False) for a in items], axis=0)
        else:
            flat = np.zeros((0, dim), dtype=dtype)
        flat = flat.reshape(-1, dim)
        _check_finite(flat, offsets)
        return cls(flat, offsets, validate=False)

    @classmethod
    def empty(cls, dim: int, dtype: Any = np.float32) -> MultiVectors:
        """A batch of zero items."""
        return cls(np.zeros((0, dim), dtype=dtype), np.zeros(1, dtype=np.int64), validate=False)

    @classmethod
    def from_padded(cls, padded: np.ndarray, mask: np.ndarray) -> MultiVectors:
        """Build from a padded ``(n, t, dim)`` array and a boolean ``(n, t)`` mask."""
        padded = np.asarray(padded)
        mask = np.asarray(mask, dtype=bool)
        if padded.ndim != 3 or mask.shape != padded.shape[:2]:
            raise InvalidVectorsError(
                f"expected padded (n, t, dim) and mask (n, t), got {padded.shape} and {mask.shape}"
            )
        lengths = mask.sum(axis=1)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(padded[mask], offsets)

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self.vectors.dtype

    @property
    def lengths(self) -> np.ndarray:
        """Shape: (n,). Token count of each item."""
        return np.diff(self.offsets)

    @property
    def total_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def nbytes(self) -> int:
        return int(self.vectors.nbytes + self.offsets.nbytes)

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.vectors[self.offsets[i] : self.offsets[i + 1]]

    def __getitem__(self, key: Any) -> Any:
        """``mv[i]`` is the ``(t_i, dim)`` view of item i; a slice or an index array gives a
        new :class:`MultiVectors`."""
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if i < -n or i >= n:
                raise IndexError(f"item index {i} out of range for {n} items")
            i %= n
            return self.vectors[self.offsets[i] : self.offsets[i + 1]]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                lo, hi = self.offsets[start], self.offsets[max(start, stop)]
                return MultiVectors(
                    self.vectors[lo:hi], self.offsets[start : max(start, stop) + 1] - lo,
                    validate=False,
                )
            key = np.arange(start, stop, step)
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean mask of shape {idx.shape} for {n} items")
            idx = np.flatnonzero(idx)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise IndexError(f"cannot index MultiVectors with {key!r}")
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"item indices out of range for {n} items")
        return self.take(idx % n if n else idx)

    def take(self, idx: np.ndarray) -> MultiVectors:
        """Items ``idx`` (in that order) as a new batch (copies)."""
        idx = np.asarray(idx, dtype=np.int64)
        starts = self.offsets[idx]
        lengths = self.offsets[idx + 1] - starts
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if len(idx) == 0:
            return MultiVectors.empty(self.dim, self.dtype)
        rows = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return MultiVectors(self.vectors[rows], offsets, validate=False)

    def to_list(self) -> list[np.ndarray]:
        return list(self)

    def astype(self, dtype: Any) -> MultiVectors:
        if np.dtype(dtype) == self.dtype:
            return self
        return MultiVectors(self.vectors.astype(dtype), self.offsets, validate=False)

    def to_padded(self, pad_value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(padded (n, max_t, dim), mask (n, max_t))``."""
        n, lengths = len(self), self.lengths
        t = int(lengths.max()) if n else 0
        padded = np.full((n, t, self.dim), pad_value, dtype=self.dtype)
        mask = np.arange(t)[None, :] < lengths[:, None]
        padded[mask] = self.vectors
        return padded, mask

    def require_nonempty(self, what: str = "item") -> None:
        """Raise :class:`EmptyInputError` if the batch is empty or any item has no tokens."""
        if len(self) == 0:
            raise EmptyInputError(f"expected at least one {what}, got an empty batch")
        empty = np.flatnonzero(self.lengths == 0)
        if empty.size:
            raise EmptyInputError(
                f"{what} {int(empty[0])} has 0 tokens (expected >= 1); "
                f"{empty.size} empty {what}(s) in total"
            )

    @staticmethod
    def concat(batches: Sequence[MultiVectors]) -> MultiVectors:
        """Concatenate batches of equal dim."""
        if not batches:
            raise EmptyInputError("concat needs at least one batch")
        dim = batches[0].dim
        for j, b in enumerate(batches):
            if b.dim != dim:
                raise DimensionMismatchError(f"batch {j}: expected dim {dim}, got {b.dim}")
        vectors = np.concatenate([b.vectors for b in batches], axis=0)
        lengths = np.concatenate([b.lengths for b in batches])
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return MultiVectors(vectors, offsets, validate=False)

    def __repr__(self) -> str:
        return f"MultiVectors(n={len(self)}, total_tokens={self.total_tokens}, dim={self.dim}, dtype={self.dtype})"


def as_multivectors(
    obj: Any, *, dim: int | None = None, name: str = "vectors"
) -> MultiVectors:
    """Coerce a :class:`MultiVectors` or a sequence of ``(t_i, dim)`` arrays.

    Raises :class:`DimensionMismatchError` when ``dim`` is given and differs.
    """
    if isinstance(obj, MultiVectors):
        mv = obj
    elif isinstance(obj, np.ndarray) and obj.ndim == 2:
        raise InvalidVectorsError(
            f"{name}: expected a MultiVectors or a sequence of (t_i, dim) arrays, got one 2-D "
            f"array of shape {obj.shape}; wrap it in a list for a single item"
        )
    elif isinstance(obj, (list, tuple)) or (isinstance(obj, np.ndarray) and obj.ndim == 3):
        if len(obj) == 0 and dim is None:
            raise EmptyInputError(f"{name}: got an empty sequence")
        mv = MultiVectors.from_arrays(list(obj), dim=dim)
    else:
        raise InvalidVectorsError(
            f"{name}: expected a MultiVectors or a sequence of (t_i, dim) arrays, "
            f"got {type(obj).__name__}"
        )
    if dim is not None and mv.dim != dim:
        raise DimensionMismatchError(f"{name}: expected dim {dim}, got {mv.dim}")
    return mv


def _check_vectors(vectors: np.ndarray, name: str) -> None:
    if vectors.ndim != 2:
        raise InvalidVectorsError(
            f"{name}: expected a 2-D (total_tokens, dim) array, got {vectors.ndim}-D with shape "
            f"{vectors.shape}"
        )
    if vectors.dtype not in _FLOAT_DTYPES:
        raise InvalidVectorsError(
            f"{name}: expected float16/float32/float64, got dtype {vectors.dtype}"
        )
    if vectors.shape[1] == 0:
        raise InvalidVectorsError(f"{name}: expected dim >= 1, got shape {vectors.shape}")


def check_offsets(
    offsets: np.ndarray, total: int, *, name: str = "offsets", total_name: str = "total_tokens"
) -> None:
    """Validate ragged offsets: 1-D integers, ``[0] == 0``, non-decreasing, ``[-1] == total``.

    Raises :class:`InvalidVectorsError` naming ``name`` and the expected and actual values.
    """
    if offsets.ndim != 1 or offsets.shape[0] < 1:
        raise InvalidVectorsError(f"{name}: expected shape (n + 1,), got {offsets.shape}")
    if offsets.dtype.kind not in "iu":
        raise InvalidVectorsError(f"{name}: expected an integer dtype, got {offsets.dtype}")
    if offsets[0] != 0:
        raise InvalidVectorsError(f"{name}: expected {name}[0] == 0, got {int(offsets[0])}")
    if offsets[-1] != total:
        raise InvalidVectorsError(
            f"{name}: expected {name}[-1] == {total_name} == {total}, got {int(offsets[-1])}"
        )
    bad = np.flatnonzero(np.diff(offsets) < 0)
    if bad.size:
        i = int(bad[0])
        raise InvalidVectorsError(
            f"{name}: expected non-decreasing values, got {name}[{i}]={int(offsets[i])} > "
            f"{name}[{i + 1}]={int(offsets[i + 1])}"
        )


def _check_finite(vectors: np.ndarray, offsets: np.ndarray) -> None:
    finite = np.isfinite(vectors).all(axis=1) if vectors.size else np.ones(0, bool)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        item = int(np.searchsorted(offsets, row, side="right") - 1)
        raise InvalidVectorsError(
            f"non-finite value (NaN or inf) in item {item}, token {row - int(offsets[item])}; "
            "expected finite floats"
        )
