"""indexing package."""

from indexing._build import Document, build_index
from indexing._pooling import pool_tokens
from indexing._writer import IndexWriter
from indexing.corpus import BeirDataset, load_beir, read_corpus, stdlib_docs_corpus

__all__ = [
    "build_index",
    "Document",
    "IndexWriter",
    "pool_tokens",
    "BeirDataset",
    "load_beir",
    "read_corpus",
    "stdlib_docs_corpus",
]
