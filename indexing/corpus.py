"""Corpus and dataset loaders: what goes into an index and what evaluates it.

* :func:`read_corpus` streams ``(id, text)`` pairs from BEIR ``corpus.jsonl[.gz]``,
  plain JSONL (``{"id"|"_id", "text"[, "title"]}``) or TSV (``id<TAB>text``).
* :func:`load_beir` reads a BEIR-layout dataset directory: ``corpus.jsonl[.gz]``,
  ``queries.jsonl[.gz]``, ``qrels/<split>.tsv``.
* :func:`stdlib_docs_corpus` builds a real corpus every Python install carries:
  the standard library's documentation (``pydoc_data`` topics plus module,
  class and function docstrings) split into passages.

Malformed input raises :class:`mvr.errors.DatasetError` naming the file and the
line, so that a broken dataset never surfaces as a deep traceback.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import itertools
import json
import pkgutil
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mvr.errors import ConfigError, DatasetError

__all__ = ["BeirDataset", "load_beir", "read_corpus", "stdlib_docs_corpus"]

_TSV_ID_HEADERS = frozenset({"id", "_id", "doc_id", "docid", "pid", "corpus-id", "corpus_id"})
_CORPUS_NAMES = ("corpus.jsonl", "corpus.jsonl.gz", "corpus.tsv", "corpus.tsv.gz")


# ---------------------------------------------------------------------- reading lines
def _open_binary(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` of every non-blank line (1-based), decoded as UTF-8."""
    if not path.is_file():
        raise DatasetError(f"{path}: expected a file, but it does not exist")
    with _open_binary(path) as f:
        lineno = 0
        try:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DatasetError(f"{path}:{lineno}: expected UTF-8 text, got {e}") from e
                if lineno == 1:
                    line = line.lstrip("\ufeff")
                line = line.rstrip("\r\n")
                if line.strip():
                    yield lineno, line
        except (OSError, EOFError) as e:  # truncated or corrupt gzip stream
            raise DatasetError(f"{path}:{lineno + 1}: could not read the file: {e}") from e


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".tsv"):
        return "tsv"
    raise DatasetError(
        f"{path}: unknown corpus format; expected a name ending in .jsonl, .jsonl.gz, .tsv or .tsv.gz"
    )


# ---------------------------------------------------------------------- corpus files
def _parse_json_record(path: Path, lineno: int, line: str) -> tuple[str, str, Any]:
    where = f"{path}:{lineno}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{where}: expected a JSON object, got invalid JSON ({e.msg})") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    key = "_id" if "_id" in obj else "id" if "id" in obj else None
    if key is None:
        raise DatasetError(f"{where}: expected an '_id' or 'id' field, got keys {sorted(obj)}")
    doc_id = obj[key]
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
        raise DatasetError(f"{where}: expected '{key}' to be a string, got {doc_id!r}")
    doc_id = str(doc_id)
    if not doc_id:
        raise DatasetError(f"{where}: expected a non-empty '{key}', got ''")
    text = obj.get("text")
    if not isinstance(text, str):
        raise DatasetError(f"{where}: expected a string 'text' field, got {text!r}")
    title = obj.get("title")
    if title is not None and not isinstance(title, str):
        raise DatasetError(f"{where}: expected 'title' to be a string or null, got {title!r}")
    if title and title.strip():
        text = f"{title} {text}".strip()
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise DatasetError(
            f"{where}: expected 'metadata' to be a JSON object or null, got {type(meta).__name__}"
        )
    return doc_id, text, meta


def _read_jsonl(path: Path) -> Iterator[tuple[int, str, str, Any]]:
    for lineno, line in _lines(path):
        doc_id, text, meta = _parse_json_record(path, lineno, line)
        yield lineno, doc_id, text, meta


def _read_tsv(path: Path) -> Iterator[tuple[int, str, str, Any]]:
    title_col: int | None = None
    for lineno, line in _lines(path):
        fields = line.split("\t")
        if lineno == 1 and fields[0].strip().lower() in _TSV_ID_HEADERS:
            names = [f.strip().lower() for f in fields]
            if len(names) < 2:
                raise DatasetError(f"{path}:1: expected a header 'id<TAB>text', got {line!r}")
            title_col = names.index("title") if "title" in names else None
            continue
        if len(fields) < 2:
            raise DatasetError(
                f"{path}:{lineno}: expected 'id<TAB>text', got no tab in {line[:80]!r}"
            )
        if title_col is None:
            doc_id, text = fields[0], "\t".join(fields[1:])
        else:
            if len(fields) <= title_col:
                raise DatasetError(
                    f"{path}:{lineno}: expected at least {title_col + 1} tab-separated fields "
                    f"(header names a title column), got {len(fields)}"
                )
            doc_id = fields[0]
            title = fields[title_col]
            text = "\t".join(f for i, f in enumerate(fields[1:], start=1) if i != title_col)
            text = f"{title} {text}".strip() if title.strip() else text
        doc_id = doc_id.strip()
        if not doc_id:
            raise DatasetError(f"{path}:{lineno}: expected a non-empty id, got ''")
        yield lineno, doc_id, text, None


def _resolve_corpus_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    found = [path / name for name in _CORPUS_NAMES if (path / name).is_file()]
    if not found:
        raise DatasetError(
            f"{path}: expected one of {list(_CORPUS_NAMES)} in this directory, found none"
        )
    return found[0]


def read_corpus(path: str | Path, *, metadata: bool = False) -> Iterator[tuple[Any, ...]]:
    """Stream ``(id, text)`` pairs (``(id, text, metadata)`` with ``metadata=True``) from a
    corpus file.

    Parameters
    ----------
    path : str or Path
        One of:

        * BEIR ``corpus.jsonl`` / ``corpus.jsonl.gz``: ``{"_id", "title", "text"}``;
          the text is ``(title + " " + text).strip()`` when the title is non-empty.
        * JSONL with ``"_id"`` or ``"id"``, ``"text"`` and optionally ``"title"``.
        * TSV ``id<TAB>text`` (``.tsv`` / ``.tsv.gz``), with an optional header line
          whose first field is ``id`` (a ``title`` column is then honoured).
        * A directory holding ``corpus.jsonl[.gz]`` or ``corpus.tsv[.gz]``.

        A JSON record may carry ``"metadata"``: a flat object of strings, numbers,
        booleans and lists of strings (the filterable fields of the document).
    metadata : bool
        Yield each record's metadata object (or None) as a third item, the form
        :func:`indexing.build_index` takes.

    Yields
    ------
    (str, str)
        Document id and text, in file order. Texts may be empty (the indexer
        decides what to do with them).

    Raises
    ------
    mvr.errors.DatasetError
        A missing file, an unknown format, a malformed line or a duplicate id;
        the message names the file and the line.

    Examples
    --------
    >>> for doc_id, text in read_corpus("data/scifact/corpus.jsonl.gz"):  # doctest: +SKIP
    ...     print(doc_id, text[:40])
    """
    path = _resolve_corpus_file(Path(path))
    reader = _read_jsonl if _format_of(path) == "jsonl" else _read_tsv
    seen: dict[str, int] = {}
    for lineno, doc_id, text, meta in reader(path):
        first = seen.setdefault(doc_id, lineno)
        if first != lineno:
            raise DatasetError(
                f"{path}:{lineno}: duplicate id {doc_id!r} (first seen on line {first})"
            )
        yield (doc_id, text, meta) if metadata else (doc_id, text)


# ---------------------------------------------------------------------- BEIR datasets
@dataclass(frozen=True)
class BeirDataset:
    """A BEIR-layout dataset, one split.

    Attributes
    ----------
    corpus_path : Path
        The corpus file; stream it with :meth:`corpus` (never held in memory here).
    queries : dict[str, str]
        Query id -> text, only the queries judged in ``qrels`` (file order); every
        query when the dataset has no judgments.
    qrels : dict[str, dict[str, int]]
        Query id -> {document id -> relevance grade}; empty without judgments.
    qrels_path : Path
        The qrels file of the split (for error messages).
    split : str
        The split name (``"test"``, ``"dev"``, ...).
    has_judgments : bool
        False for a dataset without a ``qrels/`` folder (corpus and queries only).
    """

    corpus_path: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    qrels_path: Path
    split: str = "test"
    has_judgments: bool = True

    def corpus(self) -> Iterator[tuple[str, str]]:
        """Stream the corpus as ``(id, text)``; see :func:`read_corpus`."""
        return read_corpus(self.corpus_path)

    def unknown_doc_ids(self, known_ids: Iterable[str]) -> list[str]:
        """Judged document ids that are not in ``known_ids``, sorted."""
        known = known_ids if isinstance(known_ids, set | frozenset) else set(known_ids)
        return sorted({d for judged in self.qrels.values() for d in judged} - known)

    def first_judgment_of(self, doc_ids: Iterable[str]) -> tuple[int, str, str] | None:
        """``(qrels line, query id, document id)`` of the first line judging one of
        ``doc_ids``."""
        wanted = set(doc_ids)
        if not wanted or not self.has_judgments:
            return None
        return next(((lineno, qid, did) for lineno, qid, did, _ in _qrels_rows(self.qrels_path)
                     if did in wanted), None)

    def check_doc_ids(self, known_ids: Iterable[str]) -> None:
        """Raise if a qrels line names a document that is not in ``known_ids``.

        Raises
        ------
        mvr.errors.DatasetError
            Names the qrels file, the first offending line and how many judged
            ids are unknown in all.
        """
        known = known_ids if isinstance(known_ids, set | frozenset) else set(known_ids)
        missing = sorted({d for judged in self.qrels.values() for d in judged} - known)
        if not missing:
            return
        first = next(
            (lineno, qid, did)
            for lineno, qid, did, _ in _qrels_rows(self.qrels_path)
            if did in missing
        )
        shown = ", ".join(repr(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DatasetError(
            f"{self.qrels_path}:{first[0]}: query {first[1]!r} judges document {first[2]!r}, which is "
            f"not in the corpus {self.corpus_path}; {len(missing)} judged document id(s) unknown in "
            f"all: {shown}"
        )


def _find_file(root: Path, stem: str) -> Path:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"{root}: expected {stem}.jsonl or {stem}.jsonl.gz in the dataset directory")


def _qrels_rows(path: Path) -> Iterator[tuple[int, str, str, int]]:
    """``(line, query id, doc id, grade)``; header and TREC 4-column lines accepted."""
    for lineno, line in _lines(path):
        fields = line.split("\t") if "\t" in line else line.split()
        if lineno == 1 and fields[0].strip().lower() in {"query-id", "query_id", "qid"}:
            continue
        if len(fields) == 4:  # TREC: qid iteration docid grade
            fields = [fields[0], fields[2], fields[3]]
        if len(fields) != 3:
            raise DatasetError(
                f"{path}:{lineno}: expected 'query-id<TAB>corpus-id<TAB>score', got {len(fields)} "
                f"field(s) in {line[:80]!r}"
            )
        qid, did, score = (f.strip() for f in fields)
        try:
            grade = int(score)
        except ValueError:
            try:
                as_float = float(score)
            except ValueError:
                as_float = float("nan")
            if not as_float.is_integer():
                raise DatasetError(
                    f"{path}:{lineno}: expected an integer relevance score, got {score!r}"
                ) from None
            grade = int(as_float)
        if not qid or not did:
            raise DatasetError(
                f"{path}:{lineno}: expected non-empty query and corpus ids, got {line!r}"
            )
        yield lineno, qid, did, grade


def _read_qrels(path: Path) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    first_line: dict[str, int] = {}
    where: dict[tuple[str, str], int] = {}
    for lineno, qid, did, grade in _qrels_rows(path):
        judged = qrels.setdefault(qid, {})
        first_line.setdefault(qid, lineno)
        if did in judged and judged[did] != grade:
            raise DatasetError(
                f"{path}:{lineno}: query {qid!r} judges document {did!r} {grade}, but line "
                f"{where[qid, did]} judged it {judged[did]}"
            )
        where.setdefault((qid, did), lineno)
        judged[did] = grade
    return qrels, first_line


def _all_queries(queries_path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    seen: dict[str, int] = {}
    for lineno, qid, text, _ in _read_jsonl(queries_path):
        if qid in seen:
            raise DatasetError(
                f"{queries_path}:{lineno}: duplicate query id {qid!r} (first seen on line {seen[qid]})"
            )
        seen[qid] = lineno
        queries[qid] = text
    return queries


def load_beir(path: str | Path, split: str = "test", *, check_corpus: bool = False) -> BeirDataset:
    """Load a BEIR-layout dataset directory.

    Parameters
    ----------
    path : str or Path
        Directory with ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]`` and
        ``qrels/<split>.tsv`` (header ``query-id<TAB>corpus-id<TAB>score``). Without
        a ``qrels/`` folder at all (corpus and queries only) the dataset has no
        judgments: every query is kept and ``has_judgments`` is False.
    split : str
        Which qrels file to use.
    check_corpus : bool
        Also read the corpus once and check that every judged document exists
        (the evaluator does this anyway while indexing).

    Returns
    -------
    BeirDataset
        Queries restricted to those judged in the split, and the qrels.

    Raises
    ------
    mvr.errors.DatasetError
        Missing files, malformed lines, or qrels naming a query id that is not in
        the queries file (or, with ``check_corpus``, a document that is not in the
        corpus); the message names the file and the line.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: expected a BEIR dataset directory, but it does not exist")
    corpus_path = _resolve_corpus_file(root)
    queries_path = _find_file(root, "queries")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not (root / "qrels").exists():
        return BeirDataset(corpus_path=corpus_path, queries=_all_queries(queries_path), qrels={},
                           qrels_path=qrels_path, split=split, has_judgments=False)
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise DatasetError(
            f"{qrels_path}: no qrels for split {split!r}; available splits: {available}"
        )
    qrels, first_line = _read_qrels(qrels_path)
    if not qrels:
        raise DatasetError(f"{qrels_path}: expected at least one judgment, got none")
    queries: dict[str, str] = {}
    seen: dict[str, int] = {}
    for lineno, qid, text, _ in _read_jsonl(queries_path):
        if qid in seen:
            raise DatasetError(
                f"{queries_path}:{lineno}: duplicate query id {qid!r} (first seen on line {seen[qid]})"
            )
        seen[qid] = lineno
        if qid in qrels:
            queries[qid] = text
    missing = [q for q in qrels if q not in queries]
    if missing:
        q = min(missing, key=first_line.__getitem__)
        raise DatasetError(
            f"{qrels_path}:{first_line[q]}: query id {q!r} is not in {queries_path} "
            f"({len(missing)} judged query id(s) missing in all)"
        )
    dataset = BeirDataset(
        corpus_path=corpus_path, queries=queries, qrels=qrels, qrels_path=qrels_path, split=split
    )
    if check_corpus:
        dataset.check_doc_ids(doc_id for doc_id, _ in read_corpus(corpus_path))
    return dataset


# ---------------------------------------------------------------------- stdlib documentation
# Modules whose import has side effects (opens a browser, prints, touches the
# terminal or a display, writes caches) or that are huge test suites.
_SKIP_MODULES = frozenset(
    {
        "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3",
        "readline", "rlcompleter", "pydoc_data", "__main__", "ensurepip", "venv", "msilib",
        "winreg", "winsound", "msvcrt", "nt", "encodings", "distutils", "pip",
    }
)  # fmt: skip
_SKIP_PARTS = frozenset({"test", "tests", "idle_test", "__main__"})
_UNDERLINE = re.compile(r"^\s*([*=~^\-])\1{2,}\s*$")
_TARGET_WORDS = 150
_MAX_WORDS = 250
_MIN_DOC_WORDS = 4


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks, with reST underlines dropped."""
    lines = [
        ln.rstrip() for ln in text.replace("\r\n", "\n").split("\n") if not _UNDERLINE.match(ln)
    ]
    blocks = re.split(r"\n\s*\n", "\n".join(lines))
    return [b.strip("\n") for b in blocks if b.strip()]


def _split_long(block: str) -> list[str]:
    """Split a block longer than ``_MAX_WORDS`` at line (then word) boundaries."""
    if len(block.split()) <= _MAX_WORDS:
        return [block]
    pieces: list[str] = []
    current: list[str] = []
    count = 0
    for line in block.split("\n"):
        words = line.split()
        if len(words) > _MAX_WORDS:  # one enormous line: cut by words
            pieces.extend(
                " ".join(words[i : i + _TARGET_WORDS]) for i in range(0, len(words), _TARGET_WORDS)
            )
            continue
        if current and count + len(words) > _TARGET_WORDS:
            pieces.append("\n".join(current))
            current, count = [], 0
        current.append(line)
        count += len(words)
    if current:
        pieces.append("\n".join(current))
    return [p for p in pieces if p.strip()]


def split_passages(text: str) -> list[str]:
    """Split documentation text into passages of about 150-250 words.

    Paragraphs (blank-line separated) are packed greedily: a passage is closed
    once it holds at least 150 words or when the next paragraph would push it
    past 250; an over-long paragraph is cut at line boundaries. A short tail is
    merged into the previous passage.
    """
    blocks = [piece for block in _paragraphs(text) for piece in _split_long(block)]
    passages: list[str] = []
    current: list[str] = []
    count = 0
    for block in blocks:
        n = len(block.split())
        if current and (count >= _TARGET_WORDS or count + n > _MAX_WORDS):
            passages.append("\n\n".join(current))
            current, count = [], 0
        current.append(block)
        count += n
    if current:
        tail = "\n\n".join(current)
        merged = len(passages[-1].split()) + count if passages else 0
        if passages and (merged <= _MAX_WORDS or (count < 50 and merged <= _MAX_WORDS + 50)):
            passages[-1] = passages[-1] + "\n\n" + tail
        else:
            passages.append(tail)
    return passages


def _topic_passages() -> Iterator[tuple[str, str]]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        for i, passage in enumerate(split_passages(topics[name])):
            yield f"topic:{name}#{i}", passage


def _import_quietly(name: str) -> Any | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001 (platform-specific or broken modules are skipped)
            return None


def _module_names() -> Iterator[str]:
    """Public stdlib modules and their public submodules, sorted, depth <= 2."""
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in _SKIP_MODULES:
            continue
        module = _import_quietly(top)
        if module is None:
            continue
        yield top
        paths = getattr(module, "__path__", None)
        if not paths:
            continue
        subs = sorted(m.name for m in pkgutil.iter_modules(paths) if not m.name.startswith("_"))
        for sub in subs:
            if sub not in _SKIP_PARTS:
                yield f"{top}.{sub}"


def _own_doc(obj: Any) -> str | None:
    try:
        doc = getattr(obj, "__doc__", None)
    except Exception:  # noqa: BLE001 (lazy module attributes may fail to resolve)
        return None
    if not isinstance(doc, str):
        return None
    doc = inspect.cleandoc(doc)
    return doc if len(doc.split()) >= _MIN_DOC_WORDS else None


def _heading(qualname: str, obj: Any) -> str:
    try:
        sig = str(inspect.signature(obj)) if callable(obj) else ""
    except (TypeError, ValueError):
        sig = ""
    return f"{qualname}{sig}"


def _member_docs(module: Any, modname: str) -> Iterator[tuple[str, Any, str]]:
    """``(qualified name, object, docstring)`` of a module and its public members."""
    doc = _own_doc(module)
    if doc:
        yield modname, module, doc
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != modname:
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        doc = _own_doc(obj)
        if doc:
            yield f"{modname}.{name}", obj, doc
        if inspect.isclass(obj):
            for attr, member in sorted(vars(obj).items()):
                if attr.startswith("_"):
                    continue
                member = getattr(member, "__func__", member)
                if not (inspect.isroutine(member) or isinstance(member, property)):
                    continue
                mdoc = _own_doc(member)
                if mdoc and mdoc != doc:
                    yield f"{modname}.{name}.{attr}", member, mdoc


def _docstring_passages() -> Iterator[tuple[str, str]]:
    for modname in _module_names():
        module = _import_quietly(modname)
        if module is None:
            continue
        for qualname, obj, doc in _member_docs(module, modname):
            heading = _heading(qualname, obj) if not inspect.ismodule(obj) else f"Module {qualname}"
            passages = split_passages(doc)
            for i, passage in enumerate(passages):
                pid = f"doc:{qualname}" if len(passages) == 1 else f"doc:{qualname}#{i}"
                yield (
                    pid,
                    f"{heading}\n\n{passage}" if i == 0 else f"{qualname} (continued)\n\n{passage}",
                )


def stdlib_docs_corpus(max_passages: int | None = None) -> list[tuple[str, str]]:
    """The Python standard library's own documentation as ``(id, text)`` passages.

    First the ``pydoc_data.topics`` help topics (ids ``"topic:assert#0"``), then
    module, class, method and function docstrings of the public stdlib modules
    and their direct submodules (ids ``"doc:json.loads"``; ``"#i"`` is appended
    when one docstring yields several passages). Modules with import side effects
    (``antigravity``, ``this``, ``tkinter``, ``turtle``, ``idlelib``, ...) and
    modules that fail to import on this platform are skipped. Needs no network;
    the order is deterministic for a given Python build; identical texts are kept
    once.

    Parameters
    ----------
    max_passages : int, optional
        Stop after this many passages (topics come first).

    Returns
    -------
    list of (str, str)
    """
    if max_passages is not None and (
        isinstance(max_passages, bool) or not isinstance(max_passages, int) or max_passages < 0
    ):
        raise ConfigError(f"max_passages: expected an int >= 0 or None, got {max_passages!r}")
    out: list[tuple[str, str]] = []
    seen_ids: set[str] = set()
    seen_texts: set[str] = set()
    passages = itertools.chain(_topic_passages(), _docstring_passages())
    # Deprecated modules warn on import and on attribute access (typing.io, ...).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for pid, text in passages:
            if max_passages is not None and len(out) >= max_passages:
                break
            if pid in seen_ids or text in seen_texts:
                continue
            seen_ids.add(pid)
            seen_texts.add(text)
            out.append((pid, text))
    return out
