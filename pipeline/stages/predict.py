"""``gemcurate predict`` and ``gemcurate similar``: the trained model on new photos.

A photo goes through the same crop as the pipeline (the object's box, a square with the
crop margin, padded with the background colour, the crop's target size), then the
model. ``predict`` answers the top-5 classes with probabilities; ``similar`` the nearest
*other* products by cosine similarity of the model's embedding (exact search over the
embeddings the evaluate stage stored).

A file that is missing, not an image or corrupt gets an error of its own; the other files
are still answered.

Example:
    $ gemcurate predict photo1.jpg photo2.png --json
    $ gemcurate similar photo1.jpg --k 10
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from pipeline.core.config import Params
from pipeline.core.cropbox import MAX_PHOTO_BYTES as MAX_BYTES
from pipeline.core.cropbox import photo_input
from pipeline.core.imageio import ImageError
from pipeline.core.retrieval import VectorIndex
from pipeline.stages import evaluate

logger = logging.getLogger(__name__)


def prepare(path: str | Path, params: Params, size: int) -> tuple[np.ndarray, dict]:
    """The model's input for one photo (the pipeline's crop, then ``size`` px) and crop notes.

    Raises:
        ImageError: Missing, too large, not an image, or corrupt.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ImageError(f"larger than {MAX_BYTES // 1_000_000} MB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except IsADirectoryError:
        raise ImageError("a folder, not an image") from None
    img, notes = photo_input(data, params.crop, size)
    notes["sha256"] = hashlib.sha256(data).hexdigest()
    return img, notes


def predict(paths: list[str], params: Params, model_dir: str | Path, top: int = 5) -> list[dict]:
    """One answer per path: ``{"path", "top5": [{"label", "probability"}], ...}`` or ``{"path", "error"}``."""
    model, info, _, _ = evaluate.load_model(model_dir)
    names = info["classes"]
    out = []
    for path in paths:
        try:
            img, notes = prepare(path, params, info["image_size"])
        except (ImageError, OSError) as exc:
            out.append({"path": str(path), "error": str(exc)})
            continue
        batch = np.stack([img, img[:, ::-1]]) if params.evaluate.tta == "flip" else img[None]
        probs = np.asarray(model.predict_on_batch(batch), np.float64).mean(0)
        best = np.argsort(-probs)[:top]
        out.append({"path": str(path), f"top{top}": [
            {"label": names[i], "probability": round(float(probs[i]), 4)} for i in best],
            "crop": {k: v for k, v in notes.items() if k != "sha256"}})
    return out


def similar(path: str, params: Params, model_dir: str | Path, embeddings: str | Path,
            k: int = 10) -> dict:
    """The ``k`` nearest other products to the photo at ``path`` (cosine; exact, or an
    approximate index on large datasets: :mod:`pipeline.core.retrieval`).

    Each product counts once (its closest image); the photo's own product, when the photo
    is a dataset image, is left out.
    """
    _, info, backbone, _ = evaluate.load_model(model_dir)
    try:
        img, notes = prepare(path, params, info["image_size"])
    except (ImageError, OSError) as exc:
        return {"path": str(path), "error": str(exc)}
    q = np.asarray(backbone.predict_on_batch(img[None]), np.float32)[0]
    table, emb = evaluate.read_embeddings(embeddings)
    if emb.shape[1] != q.shape[0]:
        return {"path": str(path), "error": f"{embeddings} holds {emb.shape[1]}-d embeddings of another "
                                            "model: run `gemcurate evaluate` with this one"}
    own = set(table.loc[table["image_id"] == notes["sha256"], "product_id"])
    # exact up to core.retrieval.EXACT_UP_TO images, an approximate (HNSW) index above; enough
    # neighbours that k other products remain once each product counts once
    index = VectorIndex(emb)
    idx, sims = index.search(q, min(len(emb), 40 * k))
    found, seen = [], set(own)
    for i, s in zip(idx, sims, strict=True):
        pid = table.at[i, "product_id"]
        if pid in seen:
            continue
        seen.add(pid)
        found.append({"product_id": pid, "label": table.at[i, "label"],
                      "image_id": table.at[i, "image_id"], "similarity": round(float(s), 4)})
        if len(found) == k:
            break
    return {"path": str(path), "similar": found, "excluded_own_product": sorted(own), "index": index.kind}
