"""indexing package."""

import mvr  # noqa: F401  (first: it picks OpenBLAS's kernels before numpy loads them)
from indexing._build import Document, build_index
from indexing._pool_clusters import pool_with_clusters
from indexing._pooling import pool_tokens
from indexing._writer import IndexWriter
from indexing.corpus import BeirDataset, load_beir, read_corpus, stdlib_docs_corpus

__all__ = [
    "build_index",
    "Document",
    "IndexWriter",
    "pool_tokens",
    "pool_with_clusters",
    "BeirDataset",
    "load_beir",
    "read_corpus",
    "stdlib_docs_corpus",
]
