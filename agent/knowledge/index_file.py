"""The chunks' vectors cached beside the knowledge: prompts/knowledge/.index/<key>.npz.

Embedding a catalogue costs a few cents and seconds; a restart must not pay it again.
The file is keyed by the knowledge files' bytes, the chunker's version and the model,
so any edit (or a new model) means a new key and a rebuild, and an old file is never
read for new text. One .npz (vectors + a JSON header as bytes, no pickle) written to a
temporary name and renamed, so a crash never leaves half an index.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.knowledge.chunking import CHUNKER_VERSION, Chunk
from agent.knowledge.embeddings import Vectors
from agent.knowledge.sources import content_hash, knowledge_files
from core.logging import get_logger

log = get_logger(__name__)

INDEX_DIR_NAME = ".index"


@dataclass(frozen=True, slots=True)
class IndexFile:
    path: Path
    key: str
    model: str


def index_file(knowledge_dir: Path, model: str) -> IndexFile:
    key = content_hash(knowledge_files(knowledge_dir), model, f"chunker-{CHUNKER_VERSION}")
    return IndexFile(knowledge_dir / INDEX_DIR_NAME / f"{key[:32]}.npz", key, model)


def load_vectors(index: IndexFile, chunks: list[Chunk]) -> Vectors | None:
    """The cached vectors when they are this knowledge's and this model's, else None."""
    if not index.path.is_file():
        return None
    try:
        with np.load(index.path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            vectors = np.asarray(data["vectors"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("knowledge_index_unreadable", path=str(index.path), error=type(exc).__name__)
        return None
    if header.get("key") != index.key or vectors.shape[0] != len(chunks):
        log.warning("knowledge_index_stale", path=str(index.path))
        return None
    return vectors


def save_vectors(index: IndexFile, vectors: Vectors, chunks: list[Chunk]) -> bool:
    """Write the index and drop older ones; False (logged) where the folder is read-only."""
    header = {
        "key": index.key,
        "model": index.model,
        "chunks": len(chunks),
        "dims": int(vectors.shape[1]) if vectors.ndim == 2 else 0,
        "chunker": CHUNKER_VERSION,
    }
    folder = index.path.parent
    tmp: str | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".building-", suffix=".npz")
        with os.fdopen(fd, "wb") as out:
            np.savez(out, vectors=vectors, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
        os.replace(tmp, index.path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)  # a full disk leaves no half file behind
        log.warning("knowledge_index_not_saved", path=str(index.path), error=str(exc))
        return False
    for old in folder.glob("*.npz"):
        if old != index.path:
            old.unlink(missing_ok=True)
    return True


__all__ = ["INDEX_DIR_NAME", "IndexFile", "index_file", "load_vectors", "save_vectors"]
