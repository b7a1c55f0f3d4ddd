"""``mvr info`` and ``mvr verify``: read an index's manifest, and check its files against it.

Both read only ``manifest.json`` and the files it lists (no encoder, no torch; ``info``
also reads the metadata columns and tombstones): they are the format contract's own
tools, so they live in ``mvr``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from mvr._console import Quiet, Verbose, console_logging

__all__ = ["info_command", "verify_command", "index_info", "bytes_by_part"]

_GENERATION = re.compile(r"-\d+(?=\.|$)")


def _part(rel: str) -> tuple[str, str]:
    """``("seg-000001", "tokens.bin")`` for a segment file (a folder such as ``fde.zarr``
    counts as one part), ``("index", "tombstones.json")`` for the index's own files."""
    parts = rel.split("/")
    if len(parts) >= 3 and parts[0] == "segments":
        return parts[1], parts[2]
    return "index", _GENERATION.sub("", parts[-1])


def bytes_by_part(manifest: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Bytes of the files ``manifest["files"]`` lists, per segment (or ``"index"``) and part.

    Returns
    -------
    dict
        ``{"seg-000001": {"tokens.bin": 123, "fde.zarr": 45, ...}, "index": {...}}``.
    """
    out: dict[str, dict[str, int]] = {}
    for rel, entry in manifest["files"].items():
        where, part = _part(rel)
        group = out.setdefault(where, {})
        group[part] = group.get(part, 0) + int(entry["size"])
    return out


def index_info(path: str | Path) -> dict[str, Any]:
    """What ``mvr info --json`` prints: counts, bytes per part, configs, encoder, format,
    and the metadata fields (:func:`mvr._metadata.read_metadata_summary`)."""
    from mvr._manifest import read_manifest
    from mvr._metadata import read_metadata_summary

    m = read_manifest(path)
    by_part = bytes_by_part(m)
    return {
        "path": str(path),
        "format_version": m["format_version"],
        "writer": m["writer"],
        "generation": m["generation"],
        "counts": m["counts"],
        "dim": m["dim"],
        "fde_dim": m["fde_dim"],
        "encoder": m["encoder"],
        "encoder_source": m.get("encoder_source"),
        "config": m["config"],
        "dtypes": m["dtypes"],
        "segments": m["segments"],
        "metadata": read_metadata_summary(path, m),
        "bytes": {"parts": by_part,
                  "total": sum(sum(g.values()) for g in by_part.values()),
                  "files": len(m["files"])},
    }


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n:,} B" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n:,} B"  # pragma: no cover


def _bytes_table(parts: dict[str, dict[str, int]]) -> list[str]:
    groups = sorted(parts, key=lambda g: (g == "index", g))
    names = sorted({p for g in groups for p in parts[g]})
    header = ["part", *groups, "total"]
    rows = [[n, *(_size(parts[g][n]) if n in parts[g] else "-" for g in groups),
             _size(sum(parts[g].get(n, 0) for g in groups))] for n in names]
    rows.append(["total", *(_size(sum(parts[g].values())) for g in groups),
                 _size(sum(sum(parts[g].values()) for g in groups))])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    def line(r: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True)))
    return [line(header), *(line(r) for r in rows)]


def _encoder_line(info: dict[str, Any]) -> str:
    ident = info["encoder"]
    if ident is None:
        return "none recorded (built from vectors: search with vectors or pass an encoder)"
    cfg = ident.get("config") or {}
    what = cfg.get("model") or cfg.get("layout") or ""
    sha = str(ident.get("weights_sha256") or "")
    src = info["encoder_source"]
    load = f"loads from {src.get('load')}" if src else "loaded by name (no source recorded)"
    return (f"{ident.get('name')}{f' ({what})' if what else ''}, dim {cfg.get('dim', info['dim'])}, "
            f"weights sha256 {sha[:16]}{'...' if len(sha) > 16 else ''}; {load}")


def _metadata_lines(summary: dict[str, Any]) -> list[str]:
    fields = summary["fields"]
    if not fields:
        return ["metadata   none (no document has metadata fields)"]
    rows = [["field", "type", "documents", "values"]]
    for name, f in fields.items():
        values = (f"{f['distinct']:,} distinct" if "distinct" in f else
                  f"{f['min']} .. {f['max']}" if "min" in f else "-")
        rows.append([name, f["type"], f"{f['documents']:,}", values])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    table = ["  " + "  ".join(c.rjust(w) if i == 2 else c.ljust(w)
                              for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in rows]
    return [f"metadata   {len(fields)} field(s) over {summary['documents']:,} live documents",
            *table]


def format_info(info: dict[str, Any]) -> str:
    """The table ``mvr info`` prints."""
    c, cfg = info["counts"], info["config"]
    fde = cfg.get("fde") or {}
    pooling = cfg.get("pooling") or {}
    first = cfg.get("first_stage") or {}
    lines = [
        f"index      {info['path']}",
        f"format     version {info['format_version']}, written by "
        f"{info['writer'].get('name')} {info['writer'].get('version')}, generation "
        f"{info['generation']}",
        f"documents  {c['documents']:,} ({c['live']:,} live, {c['deleted']:,} deleted) in "
        f"{len(info['segments'])} segment(s); {c['tokens']:,} pooled tokens",
        f"encoder    {_encoder_line(info)}",
        f"vectors    dim {info['dim']}, table {cfg.get('table_dtype')} "
        f"(records aligned to {cfg.get('record_alignment')} B)",
        f"FDE        {info['fde_dim']:,} dims (R={fde.get('num_repetitions')}, "
        f"k={fde.get('num_simhash_projections')}, d_proj={fde.get('projection_dim')}, "
        f"final={fde.get('final_projection_dim')})",
        f"pooling    pool_factor={pooling.get('pool_factor')}",
        f"first      {first.get('kind')} "
        f"(per segment: {', '.join(s['first_stage'] for s in info['segments'])}), "
        f"default candidates {cfg.get('default_candidates')}",
        *_metadata_lines(info["metadata"]),
        "",
        f"bytes      {_size(info['bytes']['total'])} in {info['bytes']['files']} files",
        *("  " + row for row in _bytes_table(info["bytes"]["parts"])),
    ]
    return "\n".join(lines)


def info_command(
    index: Annotated[Path, typer.Argument(help="Index directory")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Show an index: counts, bytes per part, configs, encoder, format version.

    Bytes are the sizes the manifest lists, per segment and part (tokens.bin, fde.zarr, ...).
    Metadata: each field's type, how many live documents have it, and its distinct values
    (strings) or range (numbers).

    Example: mvr info scifact.mvr --json
    """
    from mvr.errors import MVRError

    with console_logging(verbose, quiet):
        try:
            info = index_info(index)
        except MVRError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from e
    typer.echo(json.dumps(info, indent=2) if as_json else format_info(info))


def verify_command(
    index: Annotated[Path, typer.Argument(help="Index directory")],
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Check every file the manifest lists: present, its size, its SHA-256.

    Exit status 0 when all match; else 1 with the first mismatch (file, expected and
    actual value).

    Example: mvr verify scifact.mvr
    """
    from mvr._manifest import read_manifest, verify_files
    from mvr.errors import MVRError

    with console_logging(verbose, quiet):
        try:
            manifest = read_manifest(index)
            verify_files(index, manifest, checksums=True)
        except MVRError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from e
    total = sum(int(e["size"]) for e in manifest["files"].values())
    if not quiet:
        typer.echo(f"ok: {len(manifest['files'])} files, {_size(total)}, match {index}/manifest.json "
                   "(sizes and SHA-256)")
