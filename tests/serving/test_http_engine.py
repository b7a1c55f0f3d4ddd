"""The HTTP engine's batches against a real searcher: a fault of the index fails the
batch's jobs once (never re-run one by one, which multiplied the reads of a failing
disk); an error of one job's input still reaches only that job."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import clustered_docs, queries_like, small_config  # noqa: E402

from indexing import build_index  # noqa: E402
from mvr.errors import DocumentNotFoundError, TokenReadError  # noqa: E402
from serving import Searcher  # noqa: E402
from serving.http._batcher import Job  # noqa: E402
from serving.http._engine import Engine, RerankOutput, RerankPayload  # noqa: E402


@pytest.fixture
def index(tmp_path: Path) -> tuple[Path, list]:
    docs = clustered_docs(30, seed=2)
    build_index(tmp_path / "idx", docs, None, small_config(), progress=False)
    return tmp_path / "idx", docs


def _jobs(docs: list, id_lists: list[list[str]]) -> list[Job]:
    q = queries_like(docs, len(id_lists))
    return [Job("rerank_ids", None, RerankPayload(None, q[i : i + 1], ids, None, None, False))
            for i, ids in enumerate(id_lists)]


def test_a_disk_fault_fails_the_batch_once_without_rereading(index) -> None:  # type: ignore[no-untyped-def]
    path, docs = index
    id_lists = [["doc-1", "doc-2"], ["doc-3", "doc-4"], ["doc-5", "doc-6"]]
    with Searcher.open(path, mode="ssd", prefetch=False, read_threads=2) as s:
        os.truncate(path / "segments" / "seg-000001" / "tokens.bin", 0)  # the disk lost it
        out = Engine(s).run(_jobs(docs, id_lists))
        assert all(isinstance(r, TokenReadError) for r in out), out
        assert "short read" in str(out[0])
        # each of the 6 rows was read (and failed) once: the batch was not re-run per job
        assert s.store.stats()["read_errors"] == 6


def test_an_input_error_still_reaches_only_its_job(index) -> None:  # type: ignore[no-untyped-def]
    path, docs = index
    with Searcher.open(path) as s:
        out = Engine(s).run(_jobs(docs, [["doc-1"], ["doc-2", "nope"], ["doc-3"]]))
    assert isinstance(out[0], RerankOutput) and out[0].ids == ["doc-1"]
    assert isinstance(out[1], DocumentNotFoundError) and "nope" in str(out[1])
    assert isinstance(out[2], RerankOutput) and out[2].ids == ["doc-3"]
