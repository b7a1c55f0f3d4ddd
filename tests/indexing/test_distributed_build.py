"""Distributed build on a real local Ray cluster (loopback, 2 CPUs): the index equals the
single-machine build's, byte for byte once its segments are concatenated; a SIGKILLed
encoder actor is retried and the committed index is the same; a rerun skips the
segments that verify and rebuilds the one that does not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

# Ray's own processes outlive its Popen objects (they are reaped by the raylet): not ours
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::ResourceWarning",
                               "ignore::pytest.PytestUnraisableExceptionWarning"),
]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from index_testlib import (  # noqa: E402
    DIM,
    HashEncoder,
    brute_maxsim,
    clustered_docs,
    queries_like,
    small_config,
)
from ray_testlib import init_local_ray  # noqa: E402

import encoders  # noqa: E402
import mvr  # noqa: E402
from indexing import build_index  # noqa: E402
from indexing._distributed import DistributedConfig, build_index_distributed  # noqa: E402
from mvr.format import SEGMENTS_DIR  # noqa: E402
from serving import Searcher  # noqa: E402

WORDS = [f"w{i}" for i in range(60)]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():  # type: ignore[no-untyped-def]
    init_local_ray(2, extra_pythonpath=[str(Path(__file__).parent)])
    yield
    ray.shutdown()


def text_docs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [(f"d{i}", " ".join(rng.choice(WORDS, size=int(rng.integers(1, 10)))))
            for i in range(n)]


def config(**kw):  # type: ignore[no-untyped-def]
    # res4 table + codec + centroid ids: every globally trained part is exercised
    return small_config(batch_size=32, table_dtype="res4", codec_train_tokens=400,
                        codec_centroids=16, default_rerank=20, **kw)


def concat(root: Path, manifest: dict, name: str) -> bytes:
    return b"".join((root / SEGMENTS_DIR / s["name"] / name).read_bytes()
                    for s in manifest["segments"])


def assert_same_index(a: Path, ma: dict, b: Path, mb: dict) -> None:
    """Same documents, same codec, same coded tokens, in the same order."""
    assert ma["counts"] == mb["counts"] and ma["config"] == mb["config"]
    assert (a / ma["codec"]).read_bytes() == (b / mb["codec"]).read_bytes()
    for name in ("ids.jsonl", "lengths.bin", "tokens.bin", "cids.bin"):
        assert concat(a, ma, name) == concat(b, mb, name), name


def test_vectors_build_equals_single_build(tmp_path: Path) -> None:
    docs = clustered_docs(300, seed=3)
    single = build_index(tmp_path / "one", docs, config=config(), progress=False)
    dist = build_index_distributed(
        tmp_path / "dist", docs, encoder=None, config=config(), progress=False,
        cluster=DistributedConfig(concurrency=2, segment_size=64),
    )
    assert [s["documents"] for s in dist["segments"]] == [64, 64, 64, 64, 44]
    assert dist["distributed"] == {"segments": 5, "built": 5, "skipped": 0}
    assert_same_index(tmp_path / "one", single, tmp_path / "dist", dist)
    q = queries_like(docs, 20, seed=5)
    with Searcher.open(tmp_path / "one") as s1, Searcher.open(tmp_path / "dist") as s2:
        r1, r2 = s1.search(q, k=10), s2.search(q, k=10)
        assert r1.ids == r2.ids
        for x, y in zip(r1.scores, r2.scores, strict=True):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
        # and both are right: exhaustive MaxSim over the stored tokens vs brute force
        ref = brute_maxsim(q, [s2.store.get(np.array([r]))[0] for r in range(300)])
        ex = s2.exhaustive(q, k=5)
        for i in range(len(q)):
            np.testing.assert_allclose(ex.scores[i], np.sort(ref[i])[::-1][:5], atol=2e-3)


def test_text_build_equals_single_build(tmp_path: Path) -> None:
    docs = text_docs(200)
    enc = HashEncoder(DIM)
    single = build_index(tmp_path / "one", docs, enc, config(), progress=False)
    dist = build_index_distributed(tmp_path / "dist", docs, encoder=enc, config=config(),
                                   progress=False, cluster=DistributedConfig(segment_size=64))
    assert dist["encoder"] == single["encoder"] and len(dist["segments"]) == 4
    assert_same_index(tmp_path / "one", single, tmp_path / "dist", dist)
    queries = [" ".join(WORDS[i : i + 3]) for i in range(0, 45, 3)]
    with Searcher.open(tmp_path / "one", encoder=enc) as s1, \
            Searcher.open(tmp_path / "dist", encoder=enc) as s2:
        r1, r2 = s1.search(queries, k=10), s2.search(queries, k=10)
        assert s1.get_texts(["d7"]) == s2.get_texts(["d7"]) == [docs[7][1]]
    assert r1.ids == r2.ids
    for x, y in zip(r1.scores, r2.scores, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6)


def test_codec_sample_batches_are_encoded_once(tmp_path: Path) -> None:
    """The driver's codec sample encodes the first batches; their part tasks take that
    output instead of encoding them again: every batch goes through the encoder once,
    and the index is the single build's."""
    docs = text_docs(200, seed=1)
    log = tmp_path / "calls.log"
    enc = FailingEncoder(str(log), None)
    single = build_index(tmp_path / "one", docs, HashEncoder(DIM), config(), progress=False)
    dist = build_index_distributed(tmp_path / "dist", docs, encoder=enc, config=config(),
                                   progress=False, cluster=DistributedConfig(segment_size=64))
    assert_same_index(tmp_path / "one", single, tmp_path / "dist", dist)
    calls = log.read_text().splitlines()
    batches = [docs[i][1] for i in range(0, 200, 32)]  # the first text of each batch
    assert sorted(calls) == sorted(batches), (len(calls), len(batches))
    assert not (tmp_path / "dist" / ".build").exists()  # the sample went with the build


def test_a_damaged_sample_file_is_encoded_again(tmp_path: Path) -> None:
    from indexing._build import Document, _encode_batch
    from indexing._distributed import _encoded_path, _save_encoded, _with_encoded

    enc = HashEncoder(DIM)
    batch = [Document(i, t) for i, t in text_docs(5, seed=2)]
    raw = _encode_batch(batch, enc, DIM)
    digest = _save_encoded(tmp_path, 3, batch, raw)
    got = _with_encoded(tmp_path, 3, digest, batch)
    for d, a in zip(got, enc.encode_documents([d.text for d in batch]), strict=True):
        np.testing.assert_array_equal(d.vectors, a)
    assert _with_encoded(tmp_path, 3, None, batch) is batch  # not in the plan
    assert _with_encoded(tmp_path, 4, digest, batch) is batch  # no file
    other = [Document(f"x{i}", d.text) for i, d in enumerate(batch)]
    assert _with_encoded(tmp_path, 3, digest, other) is other  # other ids: not taken
    path = _encoded_path(tmp_path, 3)
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))
    assert _with_encoded(tmp_path, 3, digest, batch) is batch


class KillOnceEncoder(HashEncoder):
    """SIGKILLs its own worker process the first time it sees ``trigger`` (a real kill:
    no cleanup, no exception), after writing its pid to ``marker``."""

    def __init__(self, marker: str, trigger: str) -> None:
        super().__init__(DIM)
        self.marker, self.trigger = marker, trigger

    def encode_documents(self, texts):  # type: ignore[no-untyped-def]
        if self.trigger in texts and not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode_documents(texts)


class FailingEncoder(HashEncoder):
    """Raises on ``trigger``; logs the first text of every call to ``log``."""

    def __init__(self, log: str, trigger: str | None) -> None:
        super().__init__(DIM)
        self.log, self.trigger = log, trigger

    def encode_documents(self, texts):  # type: ignore[no-untyped-def]
        with open(self.log, "a") as f:
            f.write(texts[0] + "\n")
        if self.trigger is not None and self.trigger in texts:
            raise RuntimeError("encoder failed on purpose")
        return super().encode_documents(texts)


def test_killed_actor_is_retried_and_index_is_the_same(tmp_path: Path) -> None:
    docs = text_docs(200, seed=1)
    docs[110] = ("d110", "kill here please")  # part 1 (64 docs a part), its second batch
    cluster = DistributedConfig(concurrency=2, segment_size=64)
    ref = build_index_distributed(tmp_path / "ref", docs, encoder=HashEncoder(DIM),
                                  config=config(), progress=False, cluster=cluster)
    marker = tmp_path / "killed.pid"
    enc = KillOnceEncoder(str(marker), "kill here please")
    got = build_index_distributed(tmp_path / "dist", docs, encoder=enc, config=config(),
                                  progress=False, cluster=cluster)
    pid = int(marker.read_text())  # the kill happened, in another process
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert got["files"] == ref["files"]  # every file's size and SHA-256
    assert got["segments"] == ref["segments"]


def test_resume_skips_verified_segments(tmp_path: Path) -> None:
    docs = text_docs(200, seed=2)
    docs[196] = ("d196", "fail here please")  # part 3 (documents 192-199)
    cluster = DistributedConfig(concurrency=1, segment_size=64)
    ref = build_index_distributed(tmp_path / "ref", docs, encoder=HashEncoder(DIM),
                                  config=config(), progress=False, cluster=cluster)
    out = tmp_path / "dist"
    log = tmp_path / "calls.log"
    with pytest.raises(Exception, match="encoder failed on purpose"):
        build_index_distributed(out, docs, encoder=FailingEncoder(str(log), "fail here please"),
                                config=config(), progress=False, cluster=cluster)
    with pytest.raises(mvr.errors.IncompleteIndexError):
        Searcher.open(out)
    done = sorted(int(p.parent.name[-5:]) for p in (out / ".build" / "tasks").glob("*/done.json"))
    assert done and 3 not in done  # parts finished before the failure; never the failed one
    damaged = done[0]
    bad = out / SEGMENTS_DIR / f"seg-000001-{damaged:05d}" / "tokens.bin"  # damage a done one
    raw = bytearray(bad.read_bytes())
    raw[0] ^= 0xFF
    bad.write_bytes(bytes(raw))
    log.unlink()
    plan = json.loads((out / ".build" / "distributed.json").read_text())
    sampled = {int(g) for g in plan["encoded_batches"]}  # the codec sample's batches
    assert sampled and 6 not in sampled  # part 3 is batch 6, never reached by the sample
    got = build_index_distributed(out, docs, encoder=FailingEncoder(str(log), None),
                                  config=config(), resume=True, progress=False, cluster=cluster)
    skipped = [p for p in done if p != damaged]
    assert got["distributed"] == {"segments": 4, "built": 4 - len(skipped),
                                  "skipped": len(skipped)}
    firsts = set(log.read_text().splitlines())
    for p in range(4):  # the first text of each part's first batch (batch 2p of 32 docs):
        # a skipped part is not encoded, a rebuilt one is unless the sample kept that batch
        assert (docs[64 * p][1] in firsts) == (p not in skipped and 2 * p not in sampled), p
    assert got["files"] == ref["files"]
    with Searcher.open(out, encoder=HashEncoder(DIM)) as s:
        assert s.num_documents == 200


def _mvr(*args: str) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a fresh process (its own Ray driver)."""
    return subprocess.run([sys.executable, "-c", "from mvr.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=600)


def test_cli_ray_build_equals_cli_build(tmp_path: Path) -> None:
    """``mvr index VECTORS --out DIR --ray --ray-address ADDR``: a driver process that
    connects to a running cluster (this test's), its actors load the encoder from the
    path; the index equals the one ``mvr index`` builds on one machine at the same
    options, and the summary line counts the segments."""
    docs = clustered_docs(150, seed=21, dim=16)
    vectors = tmp_path / "vectors.npz"
    encoders.save_precomputed(vectors, [i for i, _ in docs], [v for _, v in docs],
                              texts=[f"text of {i}" for i, _ in docs])
    opts = ["--pool-factor", "1", "--batch-size", "32", "--no-progress"]
    one = _mvr("index", str(vectors), "--out", str(tmp_path / "one"), *opts)
    assert one.returncode == 0, one.stderr
    address = ray.get_runtime_context().gcs_address
    dist = _mvr("index", str(vectors), "--out", str(tmp_path / "dist"), *opts, "--ray",
                "--ray-address", address, "--workers", "2", "--segment-size", "64")
    assert dist.returncode == 0, dist.stderr
    assert "indexed 150 documents" in dist.stdout
    from mvr._manifest import read_manifest

    m1, m2 = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "dist")
    assert [s["documents"] for s in m2["segments"]] == [64, 64, 22]  # whole 32-doc batches
    assert m2["encoder"] == m1["encoder"] == encoders.load(str(vectors)).identity
    for name in ("ids.jsonl", "lengths.bin", "tokens.bin"):
        assert concat(tmp_path / "one", m1, name) == concat(tmp_path / "dist", m2, name), name
    q = queries_like(docs, 12, seed=4)
    with Searcher.open(tmp_path / "one") as s1, Searcher.open(tmp_path / "dist") as s2:
        for a, b in ((s1.search(q, k=5), s2.search(q, k=5)),
                     (s1.exhaustive(q, k=5), s2.exhaustive(q, k=5))):
            assert a.ids == b.ids
            for x, y in zip(a.scores, b.scores, strict=True):
                np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
    # --ray-address without --ray is refused before any work
    bad = _mvr("index", str(vectors), "--out", str(tmp_path / "x"), "--ray-address", address)
    assert bad.returncode != 0 and "--ray-address needs --ray" in bad.stderr
    assert not (tmp_path / "x").exists()
