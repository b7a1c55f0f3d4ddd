import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvr import MultiVectors, as_multivectors
from mvr.errors import (
    DimensionMismatchError,
    EmptyInputError,
    InvalidVectorsError,
    MVRError,
)


def _random_items(rng, lengths, dim=8):
    return [rng.standard_normal((n, dim)).astype(np.float32) for n in lengths]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=8), st.integers(1, 5))
def test_round_trip_from_arrays(lengths, dim):
    rng = np.random.default_rng(0)
    items = _random_items(rng, lengths, dim)
    mv = MultiVectors.from_arrays(items, dim=dim)
    assert len(mv) == len(items)
    assert mv.lengths.tolist() == lengths
    for a, b in zip(mv, items, strict=True):
        np.testing.assert_array_equal(a, b)
    padded, mask = mv.to_padded()
    back = MultiVectors.from_padded(padded, mask)
    np.testing.assert_array_equal(back.vectors, mv.vectors)
    np.testing.assert_array_equal(back.offsets, mv.offsets)


def test_indexing_slices_take():
    rng = np.random.default_rng(1)
    items = _random_items(rng, [3, 0, 2, 5])
    mv = MultiVectors.from_arrays(items)
    np.testing.assert_array_equal(mv[-1], items[3])
    sub = mv[1:3]
    assert sub.lengths.tolist() == [0, 2]
    np.testing.assert_array_equal(sub[1], items[2])
    picked = mv[np.array([3, 0])]
    np.testing.assert_array_equal(picked[0], items[3])
    np.testing.assert_array_equal(picked[1], items[0])
    masked = mv[np.array([True, False, False, True])]
    assert masked.lengths.tolist() == [3, 5]
    with pytest.raises(IndexError):
        mv[4]
    cat = MultiVectors.concat([mv, picked])
    assert len(cat) == 6 and cat.total_tokens == mv.total_tokens + picked.total_tokens


def test_fp16_kept_and_float64_converted():
    a16 = np.ones((2, 4), np.float16)
    assert MultiVectors.from_arrays([a16]).dtype == np.float16
    mv = MultiVectors(np.ones((2, 4)), np.array([0, 2]))
    assert mv.dtype == np.float32


@pytest.mark.parametrize(
    "items, kwargs, err, fragment",
    [
        ([np.ones((2, 4)), np.ones((2, 5))], {}, DimensionMismatchError, "expected dim 4, got 5"),
        ([np.ones((2, 4))], {"dim": 3}, DimensionMismatchError, "expected dim 3, got 4"),
        ([np.ones(4)], {}, InvalidVectorsError, "got 1-D"),
        ([np.array([[1.0, np.inf]])], {}, InvalidVectorsError, "item 0, token 0"),
        ([np.array([["a", "b"]])], {}, InvalidVectorsError, "numeric"),
        ([], {}, EmptyInputError, "dim"),
    ],
)
def test_from_arrays_errors(items, kwargs, err, fragment):
    with pytest.raises(err, match=fragment):
        MultiVectors.from_arrays(items, **kwargs)


def test_constructor_validation_names_values():
    v = np.ones((5, 3), np.float32)
    with pytest.raises(InvalidVectorsError, match=r"offsets\[-1\] == total_tokens == 5, got 4"):
        MultiVectors(v, np.array([0, 2, 4]))
    with pytest.raises(InvalidVectorsError, match=r"offsets\[0\] == 0, got 1"):
        MultiVectors(v, np.array([1, 5]))
    with pytest.raises(InvalidVectorsError, match="non-decreasing"):
        MultiVectors(v, np.array([0, 4, 2, 5]))
    with pytest.raises(InvalidVectorsError, match="2-D"):
        MultiVectors(np.ones(5), np.array([0, 5]))
    bad = v.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InvalidVectorsError, match="item 1, token 1"):
        MultiVectors(bad, np.array([0, 2, 5]))


def test_require_nonempty_and_errors_are_builtins():
    mv = MultiVectors.from_arrays([np.ones((1, 2)), np.ones((0, 2))])
    with pytest.raises(EmptyInputError, match="document 1 has 0 tokens") as e:
        mv.require_nonempty("document")
    assert isinstance(e.value, ValueError) and isinstance(e.value, MVRError)
    with pytest.raises(EmptyInputError, match="empty batch"):
        MultiVectors.empty(2).require_nonempty()


def test_as_multivectors():
    mv = as_multivectors([np.ones((2, 3))])
    assert as_multivectors(mv) is mv
    with pytest.raises(DimensionMismatchError, match="expected dim 4, got 3"):
        as_multivectors(mv, dim=4)
    with pytest.raises(InvalidVectorsError, match="wrap it in a list"):
        as_multivectors(np.ones((2, 3)))
    with pytest.raises(InvalidVectorsError, match="got str"):
        as_multivectors("text")
