"""How fast may the help policy move for the dual to hold the budget? A stub with Adam's steps.

    python benchmarks/policy_speed.py          # 8 seeds per row, about 1 s

tests/test_control.py's stub policy (help probability sigmoid(a + b * hardness), the local
model failing where hardness is high) trained by plain SGD moves slowly. The real one, LoRA
under Adam at lr 1e-4, crosses from no help to most help in 3-4 steps (benchmarks/README.md).
Here the same two parameters take Adam steps of size `lr` (logit units), with eq. 8's weights,
the KL anchor (KL(anchor || policy), anchor at the start) and the trainer's dual rule
(DUAL_LR, capped at LAMBDA_MAX), at the evidence runs' size (150 steps of 4 prompts x G=4).
Prints per row the mean J_c over the last 30 steps (over seeds, and each seed's) and the swing
of its 5-step mean over the last 60 steps; then other dual steps against the fast policy.
"""

from __future__ import annotations

import numpy as np

from edgecl.config import Phase, TrainConfig
from edgecl.core.advantages import sample_weights
from edgecl.core.dual import DUAL_LR, LAMBDA_MAX, dual_update

KL = TrainConfig(run_name="x", phases=[Phase("math", "0.3", 1)]).kl_coef
P_CLOUD = 0.95


def run(tau: float, lr: float, lam: float, seed: int, steps: int = 150, n: int = 4, g: int = 4,
        kl: float = KL, eta=lambda t: DUAL_LR, window: int = 1) -> np.ndarray:  # fmt: skip
    rng = np.random.default_rng(seed)
    theta, m, v = np.zeros(2), np.zeros(2), np.zeros(2)
    ratios = []
    for t in range(1, steps + 1):
        u = np.repeat(rng.random(n), g)  # hardness; about 40% of prompts are hopeless locally
        f = np.stack([np.ones_like(u), 4 * (u - 0.5)], axis=1)
        p = 1 / (1 + np.exp(-(f @ theta)))
        asks = rng.random(u.size) < p
        local = rng.random(u.size) < np.clip(1 - 1.6 * u, 0, 1)
        correct = np.where(asks, rng.random(u.size) < P_CLOUD, local)
        w = sample_weights(correct * 1.0, asks * 1.0, lam, g)
        grad = -(f.T @ (w * (asks - p) - kl / n * (p - 0.5)))  # d loss; the anchor's p is 1/2
        m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad**2
        theta -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        ratios.append(asks.mean())
        lam = dual_update(lam, float(np.mean(ratios[-window:])), tau, eta(t), LAMBDA_MAX)
    return np.array(ratios)


def row(label: str, tau: float, lr: float, **dual) -> None:
    runs = [run(tau, lr, LAMBDA_MAX, seed, **dual) for seed in range(8)]
    tails = [r[-30:].mean() for r in runs]
    swing = np.mean([np.ptp(np.convolve(r, np.ones(5) / 5, "valid")[-60:]) for r in runs])
    seeds = " ".join(f"{x:.2f}" for x in tails)
    print(f"{label} tau {tau}: J_c last 30 {np.mean(tails):.3f} (seeds {seeds}), "
          f"5-step swing {swing:.2f}")  # fmt: skip


def main() -> None:
    for lr in (1.0, 0.3, 0.06, 0.03):
        for tau in (0.1, 0.2):
            row(f"Adam step {lr:<4}, dual {DUAL_LR}:", tau, lr)
    # Other dual steps against the fast policy (Adam step 0.3).
    duals = {"0.2": {"eta": lambda t: 0.2}, "0.1": {"eta": lambda t: 0.1},
             "0.5/sqrt(1+t/10)": {"eta": lambda t: 0.5 / np.sqrt(1 + t / 10)},
             "0.5 on the mean of 5": {"window": 5}}  # fmt: skip
    for name, dual in duals.items():
        for tau in (0.1, 0.2):
            row(f"Adam step 0.3, dual {name}:", tau, 0.3, **dual)


if __name__ == "__main__":
    main()
