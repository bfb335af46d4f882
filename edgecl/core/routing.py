"""The paper's inference-stage routing baselines, as pure functions (issue 9).

- naive-router: offloads a random tau fraction of the queries;
- router: a binary classifier on the prompt predicts that the local model fails, and the
  queries it scores highest are offloaded, at a threshold calibrated to tau on a split
  disjoint from its training items;
- cloud-only: every query goes to the cloud (the upper reference row of the paper's tables).

The classifier is a logistic regression on standardised features (edgecl.routing gives it
pooled hidden states of the local model), fitted by gradient descent with an L2 penalty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ROUTERS = ("naive-router", "router", "cloud-only")


def naive_offload(n: int, tau: float, seed: int = 0) -> np.ndarray:
    """Offload exactly round(tau x n) of n queries, chosen at random (seeded)."""
    k = int(round(tau * n))
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng([seed, 29]).permutation(n)[:k]] = True
    return mask


@dataclass
class LogisticRouter:
    mean: np.ndarray
    scale: np.ndarray
    w: np.ndarray
    b: float
    threshold: float = math.inf  # offload when score >= threshold (calibrate sets it)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """P(the local model fails) per row of features x."""
        z = ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.w + self.b
        return 1.0 / (1.0 + np.exp(-z))

    def offload(self, x: np.ndarray) -> np.ndarray:
        return self.scores(x) >= self.threshold

    def calibrate(self, x: np.ndarray, tau: float) -> float:
        """Set the threshold so that a tau fraction of the rows of x would be offloaded."""
        self.threshold = rate_threshold(self.scores(x), tau)
        return self.threshold

    def to_dict(self) -> dict:
        return {k: np.asarray(v).tolist() for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> LogisticRouter:
        return cls(*(np.array(d[k]) for k in ("mean", "scale", "w")), d["b"], d["threshold"])


def fit_router(
    x: np.ndarray, fails: np.ndarray, l2: float = 1e-2, steps: int = 500, lr: float = 0.5
) -> LogisticRouter:
    """Logistic regression of `fails` (the local model got the item wrong) on features x."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(fails, dtype=np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        w -= lr * (z.T @ (p - y) / len(y) + l2 * w)
        b -= lr * float((p - y).mean())
    return LogisticRouter(mean, scale, w, b)


def rate_threshold(scores: np.ndarray, tau: float) -> float:
    """The score at or above which round(tau x n) of the n scores lie (ties may add more)."""
    k = int(round(tau * len(scores)))
    if k <= 0:
        return math.inf
    ranked = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    return float(ranked[min(k, len(ranked)) - 1])


def routed_metrics(local_ok: np.ndarray, cloud_ok: np.ndarray, offload: np.ndarray) -> dict:
    """Accuracy of a routing decision per item.

    local_acc: answered locally and right, over all items (the local-solved accuracy used
    throughout edgecl); local_subset_acc: right among the items kept local (the paper's Table
    2 reading, which depends on the routing); joint_acc: each item's answer, the cloud's where
    offloaded; cloud_ratio: offloaded share."""
    local_ok = np.asarray(local_ok, dtype=bool)
    cloud_ok = np.asarray(cloud_ok, dtype=bool)
    offload = np.asarray(offload, dtype=bool)
    kept = ~offload
    return {
        "n": int(len(offload)),
        "local_acc": float((local_ok & kept).mean()),
        "local_subset_acc": float(local_ok[kept].mean()) if kept.any() else None,
        "joint_acc": float(np.where(offload, cloud_ok, local_ok).mean()),
        "cloud_ratio": float(offload.mean()),
    }
