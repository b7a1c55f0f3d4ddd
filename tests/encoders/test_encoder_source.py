"""An index records how to reload its encoder (``manifest["encoder_source"]``); the
searcher and ``mvr serve`` reload it, or fail naming the path and the weights hash."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from _tiny_checkpoints import PROJ, TEXTS, build_pylate, build_stanford

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import small_config  # noqa: E402

import encoders  # noqa: E402
from indexing import build_index  # noqa: E402
from mvr._manifest import read_manifest  # noqa: E402
from mvr.errors import EncoderMismatchError, ModelFileNotFoundError  # noqa: E402
from serving import Searcher  # noqa: E402

DOCS = [(f"d{i}", t) for i, t in enumerate(TEXTS)]
QUERY = ["the quick fox"]


def _index(tmp_path: Path, builder) -> tuple[Path, Path, object]:  # type: ignore[no-untyped-def]
    ckpt = builder(tmp_path / "ckpt")
    enc = encoders.load(ckpt, progress=False)
    idx = tmp_path / "idx"
    build_index(idx, DOCS, enc, small_config(dim=PROJ), progress=False)
    return ckpt, idx, enc


@pytest.mark.parametrize("builder,layout", [(build_stanford, "stanford-colbert"),
                                            (build_pylate, "pylate-colbert")])
def test_searcher_reloads_the_recorded_checkpoint(tmp_path: Path, builder, layout) -> None:  # type: ignore[no-untyped-def]
    ckpt, idx, enc = _index(tmp_path, builder)
    source = read_manifest(idx)["encoder_source"]
    assert source["load"] == str(ckpt.resolve()) and source["layout"] == layout
    assert source["weights_sha256"] == enc.identity["weights_sha256"]
    with Searcher.open(idx, encoder=enc) as s:
        expected = s.search(QUERY, k=3)
    with Searcher.open(idx) as s:  # no encoder given: loaded from the manifest
        got = s.search(QUERY, k=3)
        assert s.encoder.identity == enc.identity
    assert got.ids == expected.ids
    np.testing.assert_allclose(got.scores[0], expected.scores[0], rtol=1e-5)


def test_moved_checkpoint_fails_naming_path_and_hash(tmp_path: Path) -> None:
    ckpt, idx, enc = _index(tmp_path, build_stanford)
    sha = enc.identity["weights_sha256"]
    shutil.move(ckpt, tmp_path / "elsewhere")
    with Searcher.open(idx) as s, pytest.raises(ModelFileNotFoundError) as err:
        s.search(QUERY, k=3)
    assert str(ckpt.resolve()) in str(err.value) and sha in str(err.value)
    # the same weights elsewhere still serve when passed in
    with Searcher.open(idx, encoder=encoders.load(tmp_path / "elsewhere", progress=False)) as s:
        assert len(s.search(QUERY, k=3).ids[0]) == 3


def test_changed_weights_fail_naming_both_hashes(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    ckpt, idx, enc = _index(tmp_path, build_stanford)
    state = load_file(str(ckpt / "model.safetensors"))
    state["linear.weight"] = state["linear.weight"] * 2
    save_file(state, str(ckpt / "model.safetensors"))
    changed = encoders.load(ckpt, progress=False).identity["weights_sha256"]
    with Searcher.open(idx) as s, pytest.raises(EncoderMismatchError) as err:
        s.search(QUERY, k=3)
    msg = str(err.value)
    assert enc.identity["weights_sha256"] in msg and changed in msg and str(ckpt.resolve()) in msg


def test_serve_preloads_the_recorded_encoder_or_names_it(tmp_path: Path) -> None:
    from serving.http import ServerSettings
    from serving.http._app import open_searcher

    ckpt, idx, enc = _index(tmp_path, build_pylate)
    searcher = open_searcher(ServerSettings(index_path=idx))
    try:
        assert searcher._encoder is not None and searcher.encoder.identity == enc.identity
    finally:
        searcher.close()
    shutil.rmtree(ckpt)
    with pytest.raises(ModelFileNotFoundError, match="serve with --encoder") as err:
        open_searcher(ServerSettings(index_path=idx))
    assert str(ckpt.resolve()) in str(err.value)


def test_precomputed_vectors_are_never_reloaded_as_the_query_encoder(tmp_path: Path) -> None:
    from index_testlib import clustered_docs

    docs = clustered_docs(20, seed=1)
    table = tmp_path / "vectors.npz"
    encoders.save_precomputed(table, [i for i, _ in docs], [v for _, v in docs])
    enc = encoders.load(table)
    build_index(tmp_path / "idx", ((i, i, v) for i, v in docs), enc, small_config(),
                progress=False)
    assert read_manifest(tmp_path / "idx")["encoder_source"] is None
    with Searcher.open(tmp_path / "idx") as s, pytest.raises(EncoderMismatchError,
                                                              match="records no path"):
        s.search(["doc-3"], k=1)
