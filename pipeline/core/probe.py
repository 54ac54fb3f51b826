"""A linear probe: multinomial logistic regression on frozen embeddings.

The cheapest honest classifier on the shared embedding (``core/embedding.py``): L2-normalised
vectors, a softmax layer fitted by L-BFGS with an L2 penalty, no randomness (the same rows
give the same probe). The evaluate stage fits one on the raw, uncurated training photos as
the baseline a curated dataset must beat; label-issue detection fits one per fold.

Example:
    >>> probe = Probe.fit(train_vectors, train_labels, l2=1e-3)
    >>> probs = probe.predict_proba(test_vectors)     # rows × len(probe.classes)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero)."""
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise (last axis) softmax, stable for large logits."""
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@contextmanager
def scipy_blas_single_thread() -> Iterator[None]:
    """scipy's own OpenBLAS at one thread for the duration.

    The PyPI wheels of numpy and scipy each ship an OpenBLAS with its own thread pool; an
    L-BFGS fit calls both in turn, and on a small machine their busy-waiting threads take
    the cores from each other: the demo's labels stage took 8.6 s on 2 idle cores, 1.3 s
    with scipy's pool at one thread (2026-12-07). L-BFGS's own vector work never gains from
    threads; numpy's matrix products keep theirs. A build with one shared BLAS (conda, MKL)
    has no scipy-only library, and nothing changes.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - scikit-learn (cleanlab's) brings it
        yield
        return
    ctl = ThreadpoolController()
    own = [c.filepath for c in ctl.lib_controllers if "scipy" in Path(c.filepath).parent.name]
    if not own:
        yield
        return
    with ctl.select(filepath=own).limit(limits=1):
        yield


def fit_softmax(xn: np.ndarray, y: np.ndarray, k: int, l2: float = 1e-3,
                sample_weight: np.ndarray | None = None,
                max_iter: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by L-BFGS on rows already normalised: weights
    (``k`` × features) and biases. ``y`` holds class indices; ``sample_weight`` (default
    equal) is scaled to sum 1; an L2 penalty on the weights. Deterministic."""
    from scipy.optimize import minimize

    n, d = xn.shape
    onehot = np.eye(k)[y]
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    sw = sw / sw.sum()
    scale = 10.0  # unit vectors are small: a scaled parameterisation converges faster

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: k * d].reshape(k, d) * scale
        p = softmax(xn @ w.T + theta[k * d:])
        nll = -float((sw * np.log(np.clip((p * onehot).sum(1), 1e-12, None))).sum())
        g = (p - onehot) * sw[:, None]
        gw = (g.T @ xn) * scale + l2 * theta[: k * d].reshape(k, d)
        return (nll + 0.5 * l2 * float((theta[: k * d] ** 2).sum()),
                np.concatenate([gw.ravel(), g.sum(0)]))

    with scipy_blas_single_thread():
        res = minimize(loss, np.zeros(k * d + k), jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter})
    return res.x[: k * d].reshape(k, d) * scale, res.x[k * d:]


@dataclass
class Probe:
    """Weights (classes × features), biases, and the class names in their order."""

    weights: np.ndarray
    bias: np.ndarray
    classes: list[str]

    @classmethod
    def fit(cls, x: np.ndarray, labels: list[str] | np.ndarray, l2: float = 1e-3,
            max_iter: int = 500, balanced: bool = True) -> Probe:
        """Fit on rows ``x`` with string ``labels``; ``balanced`` weighs each class equally."""
        labels = np.asarray(labels).astype(str)
        classes = sorted(set(labels))
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in labels])
        xn = unit_rows(x)
        k = len(classes)
        if k < 2:
            return cls(np.zeros((k, xn.shape[1])), np.zeros(k), classes)
        counts = np.bincount(y, minlength=k).astype(np.float64)
        sw = (1.0 / counts[y]) if balanced else None
        weights, bias = fit_softmax(xn, y, k, l2=l2, sample_weight=sw, max_iter=max_iter)
        return cls(weights, bias, classes)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if len(self.classes) < 2:
            return np.ones((len(x), len(self.classes)))
        return softmax(unit_rows(x) @ self.weights.T + self.bias)
