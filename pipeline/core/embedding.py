"""One ImageNet embedding per image, computed once and shared by the stages.

The pooled output of EfficientNet-Lite0 (offline ImageNet weights, run by ONNX
Runtime: :mod:`pipeline.models.lite0_onnx`) of the whole picture (decoded at 400 px,
:data:`EMBED_SIDE`) resized to 224 × 224, kept as one vector of :data:`FEATURES`
(2 × 1280) values: the last feature map's average (the *embedding* proper,
:func:`mean_part`) followed by its maximum over the picture (the *peaks*). The dedupe
stage computes it for every image (:func:`ensure`) and takes close pairs of the
average as near-duplicate candidates (:func:`cosine_pairs`); the filter's learned junk
heads score both halves (:mod:`pipeline.stages.filter.head`: a finger or a lab's seal is a small
part of a picture, which the maximum keeps where the average dilutes it); trainers
and ``similar`` can read the same vectors.

:class:`EmbeddingCache` keeps them by ``image_id`` (a content hash, so one id is
one picture forever) in ``<data_dir>/embeddings/<model>/``: parquet parts of
``image_id`` + the vector as float16 bytes (5 KB an image). A refresh embeds
only images it has not seen; shard workers each add their own part, and parts are
merged once there are many. The folder name carries the vector's layout and the
weights' hash: other weights or another layout are other vectors, never mixed.

Cost on this project's 2-core CI machine: 12 ms an image on one thread, 6.7 ms on
two (batch size changes little on CPU); see ``bench/embedding.py``.

Example:
    >>> cache = EmbeddingCache.for_data_dir("data")
    >>> vecs, found = cache.get(["3f2a…", "9b1c…"])
    >>> cache.add(new_ids, embed([rgb_a, rgb_b]))
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.atomic import atomic_path
from pipeline.models.efficientnet_lite import EMBEDDING

#: values in a cached vector: the average-pooled embedding, then the max-pooled peaks
FEATURES = 2 * EMBEDDING
#: the cache folder's name for this layout (a cache of another layout is never read)
LAYOUT = "meanmax"

logger = logging.getLogger(__name__)

MODEL = "efficientnet_lite0"
MAX_PARTS = 16
_SESSION = None
_SESSION_PID = 0


def model_dir_name() -> str:
    """``efficientnet_lite0-meanmax-<hash of the weights file>``."""
    from pipeline.models.lite0_onnx import weights_id

    return f"{MODEL}-{LAYOUT}-{weights_id()}"


def _session():
    """This process's ONNX Runtime session (one thread: the worker processes are the parallelism).

    A session is never used across a fork: a pool worker forked from a process that had
    already embedded (a small batch runs in the parent) would inherit it with its runtime
    state frozen mid-flight, and hang on its first run. The owner's pid says whose it is.
    """
    global _SESSION, _SESSION_PID
    if _SESSION is None or os.getpid() != _SESSION_PID:
        from pipeline.models.lite0_onnx import session_for

        _SESSION, _SESSION_PID = session_for(threads=1), os.getpid()
    return _SESSION


def embed(images: Sequence[np.ndarray], batch: int = 16) -> np.ndarray:
    """Vectors (N × :data:`FEATURES` float32: embedding, then peaks) of RGB uint8 images of
    any size."""
    from pipeline.models.lite0_onnx import fit_square, preprocess

    out = np.zeros((len(images), FEATURES), np.float32)
    for i in range(0, len(images), batch):
        x = np.stack([fit_square(im) for im in images[i:i + batch]])
        mean, peaks = _session().run(["embedding", "peaks"], {"image": preprocess(x)})
        out[i:i + len(x), :EMBEDDING] = mean
        out[i:i + len(x), EMBEDDING:] = peaks
    return out


def mean_part(vectors: np.ndarray) -> np.ndarray:
    """The average-pooled embedding of cached vectors (what near-duplicate search compares)."""
    return np.asarray(vectors)[..., :EMBEDDING]


def to_bytes(vec: np.ndarray) -> bytes:
    return np.asarray(vec, np.float32).astype("<f2").tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<f2").astype(np.float32)


class EmbeddingCache:
    """Embeddings by ``image_id`` in parquet parts under one folder (see the module doc)."""

    def __init__(self, folder: str | Path | None) -> None:
        """``folder`` None: a cache in memory only (a run that keeps nothing)."""
        self.folder = Path(folder) if folder is not None else None
        self._ids: np.ndarray | None = None
        self._vecs: np.ndarray | None = None

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> EmbeddingCache:
        return cls(Path(data_dir) / "embeddings" / model_dir_name())

    def parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet")) if self.folder and self.folder.is_dir() else []

    def _load(self) -> None:
        if self._ids is not None:
            return
        ids, blobs = [], []
        for part in self.parts():
            try:
                t = pq.read_table(part, columns=["image_id", "vector"])
            except (OSError, pa.ArrowException) as exc:  # a damaged part costs its rows, not the run
                logger.warning("embeddings: skipping unreadable %s (%s)", part.name, exc)
                continue
            ids += t.column("image_id").to_pylist()
            blobs += t.column("vector").to_pylist()
        keep = [i for i, b in enumerate(blobs) if isinstance(b, bytes) and len(b) == 2 * FEATURES]
        if len(keep) < len(blobs):
            logger.warning("embeddings: %d malformed rows skipped", len(blobs) - len(keep))
        frame = pd.DataFrame({"image_id": [ids[i] for i in keep]}).drop_duplicates("image_id", keep="last")
        self._ids = frame["image_id"].to_numpy(dtype=object)
        self._vecs = (np.frombuffer(b"".join(blobs[keep[i]] for i in frame.index), "<f2")
                      .reshape(-1, FEATURES) if len(frame) else np.zeros((0, FEATURES), "<f2"))

    def __len__(self) -> int:
        self._load()
        return len(self._ids)

    def get(self, image_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """(N × :data:`FEATURES` float32 with zeros where unknown, bool mask of the known rows)."""
        self._load()
        wanted = list(image_ids)
        pos = pd.Index(self._ids).get_indexer(wanted) if len(self._ids) else np.full(len(wanted), -1)
        found = pos >= 0
        out = np.zeros((len(wanted), FEATURES), np.float32)
        if found.any():
            out[found] = self._vecs[pos[found]].astype(np.float32)
        return out, found

    def add(self, image_ids: Sequence[str], vectors: np.ndarray) -> Path | None:
        """Write one part with these rows (atomically); merge parts once there are many."""
        if not len(image_ids):
            return None
        vectors = np.asarray(vectors, np.float32).reshape(len(image_ids), FEATURES)
        if self.folder is None:
            self._load()
            self._ids = np.concatenate([self._ids, np.asarray(list(image_ids), dtype=object)])
            self._vecs = np.concatenate([self._vecs, vectors.astype("<f2")])
            return None
        name = hashlib.sha256("\n".join(sorted(image_ids)).encode()).hexdigest()[:16]
        path = self._write(f"part-{name}.parquet", list(image_ids), vectors.astype("<f2"))
        self._ids = self._vecs = None
        if len(self.parts()) > MAX_PARTS:
            self.compact()
        return path

    def _write(self, name: str, ids: list[str], vecs_f2: np.ndarray) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        table = pa.table({"image_id": pa.array(ids, pa.string()),
                          "vector": pa.array([v.tobytes() for v in vecs_f2], pa.binary())})
        path = self.folder / name
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return path

    def compact(self) -> None:
        """Merge every part into one (the old parts go only once the merged one is in place)."""
        old = self.parts()
        self._ids = None
        self._load()
        if not len(self._ids):
            return
        name = "part-" + hashlib.sha256("\n".join(sorted(self._ids)).encode()).hexdigest()[:16] + ".parquet"
        merged = self._write(name, list(self._ids), self._vecs)
        for p in old:
            if p != merged:
                p.unlink(missing_ok=True)


# --------------------------------------------------------------------------- computing many
#: the decode every embedding is computed from (JPEG: a reduced-size decode), whichever stage
#: computes it, so an image's vector is the same wherever it came from
EMBED_SIDE = 400


def embedding_input(data: bytes) -> np.ndarray:
    from pipeline.core.imageio import load_rgb

    return load_rgb(data, max_side=EMBED_SIDE).array


def _embed_file(args: tuple[str, str]) -> tuple[str, bytes | None]:
    from pipeline.core.blobstore import BlobProblem, read_verified
    from pipeline.core.imageio import ImageError

    image_id, path = args
    try:
        return image_id, to_bytes(embed([embedding_input(read_verified(path, image_id))])[0])
    except (BlobProblem, ImageError, OSError):  # the stages report broken files; no vector here
        return image_id, None


def ensure(cache: EmbeddingCache, items: Sequence[tuple[str, str]], workers: int = 0,
           progress: bool = False) -> int:
    """Embed the ``(image_id, path)`` items the cache lacks, in worker processes; their
    vectors join the cache (one part per call). Returns how many were computed."""
    from pipeline.core.parallel import map_items

    _, found = cache.get([i for i, _ in items])
    todo = [it for it, f in zip(items, found, strict=True) if not f]
    if todo:
        rows = [r for r in map_items(_embed_file, todo, workers, "embed", progress) if r[1] is not None]
        if rows:
            cache.add([i for i, _ in rows], np.stack([from_bytes(b) for _, b in rows]))
    return len(rows) if todo else 0


def unit(vectors: np.ndarray) -> np.ndarray:
    """L2-normalised float32 rows (an all-zero row, an unknown image, stays zero)."""
    v = np.asarray(vectors, np.float32)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, n, out=np.zeros_like(v), where=n > 0)


def cosine_pairs(x: np.ndarray, min_cos: float, rows: np.ndarray | None = None,
                 block: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``(i < j)`` of unit rows with cosine ≥ ``min_cos`` that involves one of
    ``rows`` (all rows when None): exact, a blockwise brute force (``block`` × N floats at a
    time). An incremental run passes the new rows: new × old and new × new, once each."""
    n = len(x)
    rows = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    is_row = np.zeros(n, bool)
    is_row[rows] = True
    out_i, out_j, out_c = [], [], []
    for s in range(0, len(rows), block):
        r = rows[s:s + block]
        sims = x[r] @ x.T
        bi, bj = np.nonzero(sims >= min_cos)
        i, j = r[bi], bj
        keep = (i != j) & (~is_row[j] | (i < j))
        out_i.append(np.minimum(i, j)[keep])
        out_j.append(np.maximum(i, j)[keep])
        out_c.append(sims[bi, bj][keep])
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_c)
