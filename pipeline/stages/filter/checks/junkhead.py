"""The learned junk head the filter's certificate and hand checks consult.

A multinomial logistic regression on the EfficientNet-Lite0 vector
(:mod:`pipeline.core.embedding`: the average-pooled embedding and the max-pooled peaks,
each L2-normalised on its own): a 3 × 2560 matrix, a bias and a temperature,
scoring ``product`` / ``certificate`` / ``hand``. How it is trained, on what, and
how a project trains its own: :mod:`pipeline.stages.filter.head`. The shipped head,
``pipeline/weights/junk_head.npz``, comes with its training manifest (``.json``).

Example:
    >>> head = Head.load()                      # the shipped head
    >>> p = head.proba(embeddings)              # N × 3, columns LABELS
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.embedding import EMBEDDING, FEATURES
from pipeline.core.errors import UserError
from pipeline.core.probe import softmax

LABELS = ("product", "certificate", "hand")
SHIPPED = Path(__file__).resolve().parents[3] / "weights" / "junk_head.npz"


class HeadError(UserError, ValueError):
    """A head file that cannot be used (missing, damaged, wrong shape)."""


@dataclass
class Head:
    """Weights (3 × :data:`FEATURES`), bias (3), temperature; :meth:`proba` gives calibrated
    probabilities."""

    weights: np.ndarray
    bias: np.ndarray
    temperature: float = 1.0
    labels: tuple[str, ...] = LABELS

    def logits(self, emb: np.ndarray) -> np.ndarray:
        x = normalise(emb)
        return x @ self.weights.T + self.bias

    def proba(self, emb: np.ndarray) -> np.ndarray:
        return softmax(self.logits(np.atleast_2d(emb)) / self.temperature)

    def to_bytes(self) -> bytes:
        import io

        buf = io.BytesIO()
        np.savez(buf, weights=self.weights.astype(np.float32), bias=self.bias.astype(np.float32),
                 temperature=np.float32(self.temperature), labels=np.array(self.labels))
        return buf.getvalue()

    def save(self, path: str | Path, manifest: dict | None = None) -> None:
        """Write the head (and its training manifest as ``.json`` beside it), atomically."""
        from pipeline.core.atomic import write_bytes, write_text

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, self.to_bytes())
        if manifest is not None:
            write_text(path.with_suffix(".json"), json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path | None = None, verify_name: bool = False) -> Head:
        """The head in ``path`` (the shipped one by default).

        With ``verify_name``, a file named ``junk_head-<sha12>.npz`` (what ``train-head``
        writes) must hash to its name: a head edited or swapped on disk is refused.

        Raises:
            HeadError: Missing, unreadable, altered, or not a 3-label head on this layout's
                vectors (a head trained on the average alone, before the peaks joined it,
                must be trained again with ``gemcurate filter train-head``).
        """
        p = Path(path) if path else SHIPPED
        named = re.fullmatch(r"junk_head-([0-9a-f]{12})\.npz", p.name)
        if verify_name and named and p.is_file() \
                and hashlib.sha256(p.read_bytes()).hexdigest()[:12] != named.group(1):
            raise HeadError(f"filter.head: {p} does not hash to its name (altered on disk?)")
        try:
            with np.load(p, allow_pickle=False) as z:
                head = cls(z["weights"].astype(np.float32), z["bias"].astype(np.float32),
                           float(z["temperature"]), tuple(str(s) for s in z["labels"]))
        except FileNotFoundError:
            raise HeadError(f"filter.head: no head file {p}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise HeadError(f"filter.head: {p} is not a junk head ({exc})") from None
        if head.labels == LABELS and head.weights.shape == (len(LABELS), EMBEDDING):
            raise HeadError(f"filter.head: {p} was trained on the {EMBEDDING}-d average alone; "
                            "this version scores the average and the peaks: train it again "
                            "(gemcurate filter train-head)")
        if head.labels != LABELS or head.weights.shape != (len(LABELS), FEATURES) \
                or head.bias.shape != (len(LABELS),) or not np.isfinite(head.weights).all() \
                or not 0.01 <= head.temperature <= 100:
            raise HeadError(f"filter.head: {p} is not a {'/'.join(LABELS)} head on "
                            f"{FEATURES}-d vectors")
        return head


def normalise(emb: np.ndarray) -> np.ndarray:
    """Each :data:`EMBEDDING`-wide block (the average, the peaks) L2-normalised on its own,
    so both count whatever their scale."""
    emb = np.asarray(emb, np.float64)
    blocks = emb.reshape(*emb.shape[:-1], -1, EMBEDDING) if emb.shape[-1] % EMBEDDING == 0 \
        else emb[..., None, :]
    out = blocks / np.maximum(np.linalg.norm(blocks, axis=-1, keepdims=True), 1e-6)
    return out.reshape(emb.shape)
