"""What a finished segment gets besides its vectors: the metadata columns and BM25.

Called by :meth:`indexing._build.BuildSession.finish` after the first stage, before
the segment's files are checksummed into the manifest (so both are covered).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexing._bm25 import build_bm25
from indexing._metadata import MetadataStaging, write_metadata_file

__all__ = ["finish_segment_extras"]


def finish_segment_extras(
    staging: MetadataStaging | None, seg_dir: Path, num_documents: int
) -> dict[str, Any]:
    """Write ``metadata.arrow`` (when a document has metadata) and ``bm25/`` (when the
    segment stores texts). Returns ``{"metadata": field types or None, "bm25": bool}``."""
    types = None
    if staging is not None:
        types = write_metadata_file(staging.path, seg_dir, num_documents)
    return {"metadata": types, "bm25": build_bm25(seg_dir, num_documents)}
