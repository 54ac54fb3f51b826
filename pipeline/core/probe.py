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

from dataclasses import dataclass

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero)."""
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


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
        from scipy.optimize import minimize

        labels = np.asarray(labels).astype(str)
        classes = sorted(set(labels))
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in labels])
        xn = unit_rows(x)
        n, d = xn.shape
        k = len(classes)
        if k < 2:
            return cls(np.zeros((k, d)), np.zeros(k), classes)
        onehot = np.eye(k)[y]
        counts = np.bincount(y, minlength=k).astype(np.float64)
        sw = (1.0 / counts[y]) if balanced else np.ones(n)
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

        res = minimize(loss, np.zeros(k * d + k), jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter})
        return cls(res.x[: k * d].reshape(k, d) * scale, res.x[k * d:], classes)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if len(self.classes) < 2:
            return np.ones((len(x), len(self.classes)))
        return softmax(unit_rows(x) @ self.weights.T + self.bias)
