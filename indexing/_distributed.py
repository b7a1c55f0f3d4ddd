"""Distributed index build on Ray (the ``mvr[distributed]`` extra).

The single-machine build (:mod:`indexing._build`) is run once per segment, on a pool
of encoder actors; the driver only stages the input, trains what needs global
training and commits::

    driver   documents --stage--> .build/inputs/part-<i>.jsonl (+ .npz vectors), S docs each
    task     the first batches (as the single build takes them) --encode+pool--> tokens
             (the encoder's output of each batch kept in .build/sample/, for its part)
    driver   tokens --train_token_codec--> .build/codec.faiss         (global: one codec)
    actors   Ray Data over the parts: part i --BuildSession--> segments/seg-<gen>-<i>/
             (encode, pool, FDE, cids + codes, metadata, BM25, first stage, checksums)
             then .build/tasks/<segment>/done.json
    driver   verify every segment, commit_new_index: codec + ONE manifest, atomically

Part ``i`` always holds documents ``[i*S, (i+1)*S)`` and ``S`` is a multiple of the
batch size, so every encoder call sees the batches a single build would: the segments
hold what a single build's one segment holds, split at part boundaries, and the codec
is trained on the same tokens. A task killed mid-segment (its worker process dies) is
retried by Ray Data on a restarted actor, which starts the segment afresh; a rerun with
``resume=True`` reuses the staged parts and skips every segment whose ``done.json``
files still have their recorded sizes and SHA-256.

The codec sample encodes the first ``codec_train_tokens`` pooled tokens' worth of
batches (about 12,600 PyPI summaries, 1,100 SciFact abstracts); their encoder outputs
are written to ``.build/sample/batch-<g>.npz`` (float32, ~2 x that many token vectors:
~400 MB at the defaults) with their SHA-256 in the plan, and the part task of batch
``g`` takes them instead of encoding it again (at 4,000 documents, the whole corpus
would otherwise be encoded twice). A file that is missing, does not match its hash or
holds other ids is ignored and the batch encoded: the segment is the same either way.

Ray is imported here only, lazily: ``import indexing`` does not need it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexing._build import (
    CODEC_TMP,
    BuildSession,
    Document,
    _as_document,
    _batches,
    _codec_dtype,
    _encode_batch,
    _pool_batch,
    commit_new_index,
    previous_generation,
    train_token_codec,
)
from mvr._index_config import IndexConfig
from mvr._manifest import BUILD_DIR, atomic_write_bytes, atomic_write_json
from mvr.errors import (
    ChecksumMismatchError,
    ConfigError,
    CorruptIndexError,
    EmptyInputError,
    EncoderMismatchError,
)

__all__ = ["DistributedConfig", "build_index_distributed", "segment_name"]

PLAN_FILE = "distributed.json"  # .build/distributed.json: what every task needs
INPUTS_DIR = "inputs"
TASKS_DIR = "tasks"
SAMPLE_DIR = "sample"  # .build/sample/batch-<g>.npz: the codec sample's encoder outputs
DONE_FILE = "done.json"


@dataclass(frozen=True, kw_only=True)
class DistributedConfig:
    """Where and how the distributed build runs.

    Parameters
    ----------
    address : str, optional
        Ray cluster address (``"auto"``, ``"ray://head:10001"``, ``"127.0.0.1:6379"``);
        None: the already initialised Ray, else a local one started for the build.
    concurrency : int
        Encoder actors (one segment at a time each).
    num_cpus, num_gpus : float
        Resources per encoder actor (``num_gpus=1``: one GPU each; the encoder picks CUDA).
    segment_size : int
        Documents per segment (rounded up to a multiple of the build batch size).
    device : str, optional
        torch device of the actors' encoders (default: CUDA when the actor sees a GPU).
    """

    address: str | None = None
    concurrency: int = 2
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    segment_size: int = 50_000
    device: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigError(f"concurrency: expected an int >= 1, got {self.concurrency!r}")
        if not isinstance(self.segment_size, int) or self.segment_size < 1:
            raise ConfigError(f"segment_size: expected an int >= 1, got {self.segment_size!r}")
        for name in ("num_cpus", "num_gpus"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or v < 0:
                raise ConfigError(f"{name}: expected a number >= 0, got {v!r}")


def segment_name(generation: int, part: int) -> str:
    return f"seg-{generation:06d}-{part:05d}"


# ---------------------------------------------------------------------- staging
def _part_paths(root: Path, part: int) -> tuple[Path, Path]:
    base = root / BUILD_DIR / INPUTS_DIR / f"part-{part:05d}"
    return base.with_suffix(".jsonl"), base.with_suffix(".npz")


def _write_part(root: Path, part: int, docs: list[Document]) -> None:
    """One part's documents: ids, texts and metadata as JSON lines, given vectors in an
    ``.npz`` (flat float32 + offsets; never pickled), each file written atomically."""
    jpath, vpath = _part_paths(root, part)
    lines = [json.dumps({"id": d.id, "text": d.text, "metadata": d.metadata,
                         "vectors": d.vectors is not None}, ensure_ascii=False) for d in docs]
    arrays = [np.asarray(d.vectors, np.float32) for d in docs if d.vectors is not None]
    if arrays:
        import io

        offsets = np.zeros(len(arrays) + 1, np.int64)
        np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
        buf = io.BytesIO()
        np.savez(buf, vectors=np.concatenate(arrays), offsets=offsets)
        atomic_write_bytes(vpath, buf.getvalue())
    atomic_write_bytes(jpath, ("\n".join(lines) + "\n").encode())


def read_part(root: Path, part: int) -> Iterator[Document]:
    """The documents of a staged part, in order."""
    jpath, vpath = _part_paths(root, part)
    vectors = None
    if vpath.is_file():
        with np.load(vpath, allow_pickle=False) as z:
            vectors, offsets = z["vectors"], z["offsets"]
    j = 0
    with open(jpath, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            vec = None
            if d["vectors"]:
                assert vectors is not None
                vec = vectors[offsets[j] : offsets[j + 1]]
                j += 1
            yield Document(d["id"], d["text"], vec, d["metadata"])


def _stage(root: Path, documents: Iterable[Any], segment_size: int) -> tuple[int, int, int | None]:
    """Cut ``documents`` into parts of ``segment_size``; returns (parts, documents, the
    token dim of given vectors or None). Ids must be unique, as in a single build."""
    (root / BUILD_DIR / INPUTS_DIR).mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    parts = total = 0
    dim = None
    it = iter(documents)
    while True:
        chunk = list(itertools.islice(it, segment_size))
        if not chunk:
            break
        docs = [_as_document(x, total + j) for j, x in enumerate(chunk)]
        for d in docs:
            if d.id in seen:
                raise ConfigError(f"duplicate document id {d.id!r}: expected unique ids")
            seen.add(d.id)
            if dim is None and d.vectors is not None:
                dim = int(np.asarray(d.vectors).shape[-1])
        _write_part(root, parts, docs)
        parts += 1
        total += len(docs)
    if total == 0:
        raise EmptyInputError(f"no documents to index at {root}: got an empty stream")
    return parts, total, dim


# ---------------------------------------------------------------------- the encoder
def _load_encoder(spec: Any, device: str | None) -> Any:
    """An encoder from a name/path (``encoders.load``), an encoder object, or None."""
    if spec is None or not isinstance(spec, str):
        return spec
    import encoders
    from encoders._precomputed import is_precomputed

    if is_precomputed(Path(spec)):  # vectors take no model options (no bars to silence)
        return encoders.load(spec)
    return encoders.load(spec, device=device, progress=False)


def _encoder_facts(encoder: Any) -> dict[str, Any]:
    if encoder is None:
        return {"identity": None, "dim": None, "source": None}
    from indexing._build import _encoder_source

    return {"identity": encoder.identity, "dim": int(encoder.dim),
            "source": _encoder_source(encoder)}


def _sample_task(root: str, parts: int, spec: Any, device: str | None,
                 config: dict[str, Any], tokens: int) -> dict[str, Any]:
    """On a worker: the encoder's identity, and the pooled tokens of the first batches
    (batch_size documents each) until ``tokens`` are reached: the single build's sample."""
    cfg = IndexConfig.from_dict(config)
    encoder = _load_encoder(spec, device)
    out = _encoder_facts(encoder)
    pooled: list[np.ndarray] = []
    encoded: dict[str, str] = {}
    if tokens > 0:
        docs = itertools.chain.from_iterable(read_part(Path(root), p) for p in range(parts))
        got = 0
        for g, batch in enumerate(_batches(docs, cfg.batch_size, 0)):
            raw = _encode_batch(batch, encoder, out["dim"])
            if any(d.vectors is None for d in batch):  # the encoder ran: keep its output
                encoded[str(g)] = _save_encoded(Path(root), g, batch, raw)
            mv = _pool_batch(raw, cfg)
            pooled.append(np.asarray(mv.vectors, np.float32))
            out["dim"] = int(mv.dim)
            got += mv.total_tokens
            if got >= tokens:
                break
    out["tokens"] = pooled
    out["encoded"] = encoded
    return out


def _encoded_path(root: Path, g: int) -> Path:
    return root / BUILD_DIR / SAMPLE_DIR / f"batch-{g:06d}.npz"


def _save_encoded(root: Path, g: int, batch: list[Document], raw: Any) -> str:
    """Write batch ``g``'s encoder output (ids, offsets, float32 vectors); its SHA-256."""
    buf = io.BytesIO()
    np.savez(buf, ids=np.array([d.id for d in batch], dtype=str),
             offsets=raw.offsets, vectors=np.asarray(raw.vectors, np.float32))
    data = buf.getvalue()
    path = _encoded_path(root, g)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _with_encoded(root: Path, g: int, digest: str | None,
                  batch: list[Document]) -> list[Document]:
    """``batch`` with the sample's encoder output of batch ``g`` as its vectors, when
    that file is there, has ``digest`` and holds these ids; else ``batch`` unchanged."""
    if digest is None or any(d.vectors is not None for d in batch):
        return batch
    try:
        data = _encoded_path(root, g).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            return batch
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            ids, offsets, vectors = z["ids"].tolist(), z["offsets"], z["vectors"]
    except (OSError, ValueError, KeyError):
        return batch
    if ids != [d.id for d in batch] or len(offsets) != len(batch) + 1:
        return batch
    return [dataclasses.replace(d, vectors=vectors[offsets[i]:offsets[i + 1]])
            for i, d in enumerate(batch)]


# ---------------------------------------------------------------------- the segment task
class _PartSession(BuildSession):
    """A :class:`BuildSession` whose progress and staging live in its own task folder,
    so that many sessions write one index directory side by side."""

    @property
    def build_dir(self) -> Path:
        return self.root / BUILD_DIR / TASKS_DIR / self.segment


def _done_path(root: Path, segment: str) -> Path:
    return root / BUILD_DIR / TASKS_DIR / segment / DONE_FILE


def build_part(root: Path, plan: dict[str, Any], part: int, encoder: Any, codec: Any) -> dict:
    """Write part ``part`` as its segment (the single build's session) and record it done."""
    name = segment_name(plan["generation"], part)
    session = _PartSession(root, "build", IndexConfig.from_dict(plan["config"]),
                           plan["identity"], plan["dim"], name, plan["generation"])
    shutil.rmtree(session.seg_dir, ignore_errors=True)  # a retried attempt starts afresh
    shutil.rmtree(session.build_dir, ignore_errors=True)
    session.codec = codec
    try:
        session.open(None)
        size = session.config.batch_size
        first = part * (plan["segment_size"] // size)  # the global index of its first batch
        encoded = plan.get("encoded_batches", {})
        for j, batch in enumerate(_batches(read_part(root, part), size, 0)):
            batch = _with_encoded(root, first + j, encoded.get(str(first + j)), batch)
            session.add_batch(batch, encoder, set())
        done = session.finish()
    finally:
        session.close()
    atomic_write_json(_done_path(root, name), done)
    return done


class _SegmentTask:
    """The Ray Data actor: one encoder, loaded once; a call builds the segments of its rows."""

    def __init__(self, root: str, plan: dict[str, Any], spec: Any, device: str | None) -> None:
        self.root = Path(root)
        self.plan = plan
        self.encoder = _load_encoder(spec, device)
        if self.encoder is not None and self.encoder.identity != plan["identity"]:
            raise EncoderMismatchError(
                f"encoder identity: the build at {root} records {plan['identity']!r}, this "
                f"worker loaded {self.encoder.identity!r}"
            )
        self.codec = None
        cfg = IndexConfig.from_dict(plan["config"])
        if cfg.uses_codec:
            from mvr._codec import TokenCodec

            self.codec = TokenCodec.load(self.root / BUILD_DIR / CODEC_TMP, _codec_dtype(cfg))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parts = [int(p) for p in batch["part"]]
        docs = [build_part(self.root, self.plan, p, self.encoder, self.codec)["entry"]["documents"]
                for p in parts]
        return {"part": np.asarray(parts, np.int64), "documents": np.asarray(docs, np.int64)}


# ---------------------------------------------------------------------- driver
def _verified(root: Path, segment: str) -> dict[str, Any] | None:
    """The segment's ``done.json`` when every file it lists has its size and SHA-256."""
    from mvr._json_files import read_json
    from mvr._manifest import verify_files

    p = _done_path(root, segment)
    if not p.is_file():
        return None
    try:
        done = read_json(p, required=("entry", "files"))
        verify_files(root, done, checksums=True)
    except (CorruptIndexError, ChecksumMismatchError, OSError):
        return None
    return done


def _connect(address: str | None) -> bool:
    """Connect to Ray; True when this call started it (and so shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    return True


def _fresh_start(root: Path, overwrite: bool, resuming: bool) -> int:
    """Check that ``root`` may be built into (as ``build_index``); the new generation."""
    generation = previous_generation(root, overwrite, resuming) + 1
    shutil.rmtree(root / BUILD_DIR, ignore_errors=True)
    return generation


def _plan(root: Path, documents: Iterable[Any], spec: Any, config: IndexConfig | None,
          ray_cfg: DistributedConfig, overwrite: bool, timings: dict[str, float],
          resuming: bool = False) -> dict:
    """Stage the input, sample and train the codec; write and return the plan
    (``resuming``: a resume that found no plan)."""
    import ray

    t = time.perf_counter()
    generation = _fresh_start(root, overwrite, resuming)
    cfg = config or IndexConfig()
    size = -(-ray_cfg.segment_size // cfg.batch_size) * cfg.batch_size
    parts, total, vec_dim = _stage(root, documents, size)
    timings["stage"] = time.perf_counter() - t
    t = time.perf_counter()
    sample = ray.remote(num_cpus=ray_cfg.num_cpus, num_gpus=ray_cfg.num_gpus)(_sample_task)
    facts = ray.get(sample.remote(str(root), parts, spec, ray_cfg.device, cfg.to_dict(),
                                  cfg.codec_train_tokens if cfg.uses_codec else 0))
    dim = facts["dim"] or vec_dim
    if dim is None:
        raise ConfigError("cannot tell the token dim: pass an encoder or documents with vectors")
    resolved = cfg.resolved(int(dim))
    if resolved.uses_codec:
        train_token_codec(facts["tokens"], resolved).save(root / BUILD_DIR / CODEC_TMP)
    timings["codec_train"] = time.perf_counter() - t
    plan = {"kind": "distributed", "generation": generation, "config": resolved.to_dict(),
            "identity": facts["identity"], "dim": int(dim), "source": facts["source"],
            "parts": parts, "documents": total, "segment_size": size,
            "encoded_batches": facts["encoded"]}
    atomic_write_json(root / BUILD_DIR / PLAN_FILE, plan)
    return plan


def _resumed_plan(root: Path, config: IndexConfig | None) -> dict[str, Any] | None:
    from mvr._json_files import read_json

    p = root / BUILD_DIR / PLAN_FILE
    if not p.is_file():
        return None
    plan = read_json(p, required=("generation", "config", "identity", "dim", "parts"))
    if config is not None and config.resolved(plan["dim"]).to_dict() != plan["config"]:
        raise ConfigError(
            f"cannot resume with another config: expected {plan['config']}, got "
            f"{config.resolved(plan['dim']).to_dict()}"
        )
    return plan


def _run_parts(root: Path, plan: dict[str, Any], todo: list[int], spec: Any,
               ray_cfg: DistributedConfig, progress: bool) -> None:
    """Ray Data over the parts still to build: one row per part, one block per row."""
    import ray
    from tqdm.auto import tqdm

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    ds = ray.data.from_items([{"part": p} for p in todo], override_num_blocks=len(todo))
    ds = ds.map_batches(
        _SegmentTask, batch_size=1, concurrency=ray_cfg.concurrency,
        num_cpus=ray_cfg.num_cpus, num_gpus=ray_cfg.num_gpus,
        fn_constructor_kwargs={"root": str(root), "plan": plan, "spec": spec,
                               "device": ray_cfg.device},
    )
    with tqdm(total=plan["documents"], unit="doc", desc="indexing", disable=not progress,
              initial=plan["documents"] - sum(_part_len(root, p) for p in todo)) as bar:
        for row in ds.iter_rows():
            bar.update(int(row["documents"]))


def _part_len(root: Path, part: int) -> int:
    with open(_part_paths(root, part)[0], "rb") as f:
        return sum(1 for line in f if line.strip())


def build_index_distributed(
    path: str | Path,
    documents: Iterable[Any],
    encoder: Any = "default",
    config: IndexConfig | None = None,
    *,
    cluster: DistributedConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Build an index at ``path`` with encoder actors on a Ray cluster.

    ``path`` must be on a filesystem every node of the cluster sees at the same path.
    The result is the index :func:`indexing.build_index` writes for the same documents,
    encoder and config, split into segments of ``cluster.segment_size`` documents.

    Parameters
    ----------
    path : str or Path
        Index directory (created).
    documents : iterable
        The forms :func:`indexing.build_index` takes; read once, by the driver, and
        staged into ``.build/inputs/`` (ignored on a resume that finds them staged).
    encoder : str, mvr.Encoder or None
        An ``encoders.load`` name or path (loaded by each actor), or a picklable encoder
        object (sent to the actors); None when every document carries vectors.
    config : IndexConfig, optional
        Build settings (default ``IndexConfig()``).
    cluster : DistributedConfig, optional
        Cluster address, actors, resources per actor, segment size.
    resume : bool
        Continue an interrupted distributed build: staged parts are reused and segments
        whose files verify are skipped. Without one, builds from scratch.
    progress : bool
        A tqdm bar over documents (segment by segment).
    overwrite : bool
        Replace an existing index (readable until the new manifest is committed).

    Returns
    -------
    dict
        The committed manifest, plus ``"build_timings"`` and ``"distributed"`` (segments
        built and skipped).
    """
    from filelock import FileLock, Timeout

    from mvr.errors import IndexLockedError
    from mvr.format import LOCK_NAME

    ray_cfg = cluster or DistributedConfig()
    root = Path(path).resolve()
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout as e:
        raise IndexLockedError(f"{root}: another writer holds {LOCK_NAME}") from e
    started = False
    try:
        started = _connect(ray_cfg.address)
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        plan = _resumed_plan(root, config) if resume else None
        if plan is None:
            plan = _plan(root, documents, encoder, config, ray_cfg, overwrite, timings,
                         resuming=resume)
        elif not isinstance(encoder, str) and encoder is not None \
                and encoder.identity != plan["identity"]:
            raise EncoderMismatchError(
                f"cannot resume with another encoder: the interrupted build used "
                f"{plan['identity']!r}, got {encoder.identity!r}"
            )
        names = [segment_name(plan["generation"], p) for p in range(plan["parts"])]
        todo = [p for p, name in enumerate(names) if _verified(root, name) is None]
        t = time.perf_counter()
        if todo:
            _run_parts(root, plan, todo, encoder, ray_cfg, progress)
        timings["segments"] = time.perf_counter() - t
        dones = []
        for name in names:
            done = _verified(root, name)
            if done is None:
                raise CorruptIndexError(
                    f"segment {name}: its task reported done but its files do not verify"
                )
            dones.append(done)
        cfg = IndexConfig.from_dict(plan["config"])
        manifest = commit_new_index(
            root, dones, identity=plan["identity"], dim=plan["dim"], config=cfg,
            generation=plan["generation"], encoder_source=plan["source"],
            has_codec=cfg.uses_codec,
        )
        timings["total"] = time.perf_counter() - t0
        manifest["build_timings"] = timings
        manifest["distributed"] = {"segments": len(names), "built": len(todo),
                                   "skipped": len(names) - len(todo)}
        return manifest
    finally:
        if started:
            import ray

            ray.shutdown()
        lock.release()
