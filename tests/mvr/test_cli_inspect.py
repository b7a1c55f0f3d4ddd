"""``mvr info`` and ``mvr verify`` on a tiny index built from generated vectors (with and
without document metadata)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures"))
from index_testlib import clustered_docs, small_config  # noqa: E402

from indexing import IndexWriter, build_index  # noqa: E402
from mvr._inspect_cli import bytes_by_part  # noqa: E402
from mvr._manifest import read_manifest  # noqa: E402
from mvr.cli import app  # noqa: E402


@pytest.fixture
def index(tmp_path: Path) -> Path:
    docs = clustered_docs(80, seed=5)
    out = tmp_path / "idx"
    build_index(out, docs[:50], None, small_config(), progress=False)
    with IndexWriter(out) as w:
        w.add(docs[50:])
        w.delete(["doc-1"])
    return out


def test_info_json_counts_and_bytes_per_part(index: Path) -> None:
    r = CliRunner().invoke(app, ["info", str(index), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    m = read_manifest(index)
    assert info["counts"] == {"documents": 80, "live": 79, "deleted": 1, "tokens": m["counts"]["tokens"]}
    assert info["format_version"] == m["format_version"] and info["config"] == m["config"]
    parts = info["bytes"]["parts"]
    segs = [s["name"] for s in m["segments"]]
    assert set(parts) == {*segs, "index"}  # two segments and the tombstones
    for seg in segs:  # every listed byte of the segment lands in one of its parts
        listed = sum(e["size"] for rel, e in m["files"].items() if f"/{seg}/" in rel)
        assert sum(parts[seg].values()) == listed
        on_disk = (index / "segments" / seg / "tokens.bin").stat().st_size
        assert parts[seg]["tokens.bin"] == on_disk
    assert "tombstones.json" in parts["index"]
    assert info["bytes"]["total"] == sum(e["size"] for e in m["files"].values())
    assert bytes_by_part(m) == parts


def test_info_table(index: Path) -> None:
    r = CliRunner().invoke(app, ["info", str(index)])
    assert r.exit_code == 0, r.output
    assert "80 (79 live, 1 deleted) in 2 segment(s)" in r.output
    assert "none recorded" in r.output  # built from vectors without an encoder
    table = [ln.split() for ln in r.output.splitlines() if ln.strip().startswith("tokens.bin")]
    assert len(table) == 1 and len(table[0]) >= 4  # part, two segments (+units), total
    r = CliRunner().invoke(app, ["info", str(index.parent / "nothing")])
    assert r.exit_code == 1 and "does not exist" in r.output


def _metadata(i: int) -> dict[str, Any] | None:
    """Document ``i``'s metadata: none on every 7th; ``source`` only on the added segment."""
    if i % 7 == 0:
        return None
    m: dict[str, Any] = {"year": 1990 + i % 25, "tags": ["bio", "med", "cs"][: i % 4],
                         "reviewed": i % 2 == 0}
    if i % 3:
        m["lang"] = ["en", "fr", "de"][i % 3]
    if i >= 50:
        m["source"] = f"feed-{i % 5}"
    return m


def test_info_shows_metadata_fields(tmp_path: Path) -> None:
    docs = clustered_docs(80, seed=5)
    metas = [_metadata(i) for i in range(80)]
    items = [{"id": d, "vectors": v, "metadata": m} for (d, v), m in zip(docs, metas, strict=True)]
    out = tmp_path / "meta"
    build_index(out, items[:50], None, small_config(), progress=False)
    with IndexWriter(out) as w:
        w.add(items[50:])
        w.delete(["doc-2", "doc-51"])  # both carry every field they can
    live = [m or {} for (d, _), m in zip(docs, metas, strict=True) if d not in ("doc-2", "doc-51")]

    r = CliRunner().invoke(app, ["info", str(out), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)["metadata"]
    assert got["documents"] == 78
    types = {"year": "number", "tags": "string_list", "reviewed": "boolean", "lang": "string",
             "source": "string"}
    assert {f: v["type"] for f, v in got["fields"].items()} == types
    for field, info in got["fields"].items():
        assert info["documents"] == sum(1 for m in live if field in m), field
    assert got["fields"]["lang"]["distinct"] == len({m["lang"] for m in live if "lang" in m})
    assert got["fields"]["tags"]["distinct"] == len({t for m in live for t in m.get("tags", [])})
    years = [m["year"] for m in live if "year" in m]
    assert (got["fields"]["year"]["min"], got["fields"]["year"]["max"]) == (min(years), max(years))

    r = CliRunner().invoke(app, ["info", str(out)])
    assert r.exit_code == 0, r.output
    assert "metadata   5 field(s) over 78 live documents" in r.output
    rows = {ln.split()[0]: ln.split() for ln in r.output.splitlines() if ln.startswith("  ")}
    for field, kind in types.items():
        assert rows[field][1] == kind and rows[field][2] == str(got["fields"][field]["documents"])
    assert rows["year"][3:] == [str(min(years)), "..", str(max(years))]


def test_info_says_when_an_index_has_no_metadata(index: Path) -> None:
    r = CliRunner().invoke(app, ["info", str(index), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["metadata"] == {"documents": 79, "fields": {}}
    r = CliRunner().invoke(app, ["info", str(index)])
    assert "metadata   none (no document has metadata fields)" in r.output


def test_verify_passes_then_names_the_damaged_file(index: Path) -> None:
    r = CliRunner().invoke(app, ["verify", str(index)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("ok: ")
    seg = read_manifest(index)["segments"][0]["name"]
    tokens = index / "segments" / seg / "tokens.bin"
    data = bytearray(tokens.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the checksum can tell
    tokens.write_bytes(bytes(data))
    r = CliRunner().invoke(app, ["verify", str(index)])
    assert r.exit_code == 1
    assert "tokens.bin" in r.output and "sha256" in r.output
    tokens.write_bytes(bytes(data[:-10]))
    r = CliRunner().invoke(app, ["verify", str(index)])
    assert r.exit_code == 1 and "truncated" in r.output
