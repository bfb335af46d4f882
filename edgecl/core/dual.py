"""The dual variable lambda that steers the cloud-call rate to the budget tau (paper eq. 3).

tau is an upper bound (eq. 1: J_c <= tau): when the model asks less than tau, lambda falls to 0
and stays there, which is correct.

Two departures from eq. 3, both about making a binding budget bind within a run of 50-150
small steps (the paper runs 840 steps of larger batches at eta_lambda = 0.01):
- lambda is also bounded above, by LAMBDA_MAX = 1.2: there a help request (shaped reward
  alpha_a - lambda * alpha_c with a perfect cloud) scores -0.2, below every local outcome,
  even a format violation. A larger lambda only strengthens a push that already points the
  right way, and takes longer to undo once the model asks less than tau (lambda falls by at
  most eta * tau a step). On the stub policy of tests/test_control.py a cap of 2 misses tau
  by more than 0.05 in 59% of 150-step runs, against 9% at 1.2 (benchmarks/dual_step.py).
- the default step DUAL_LR = 0.5 makes lambda the fast player and the policy the slow one: one
  step of plain over-use (J_c - tau = 0.5) moves lambda by a fifth of [0, LAMBDA_MAX], so lambda
  settles where the current policy's ratio meets tau within a few steps, and the run length
  needed is the policy's own time to respond. With a slow dual (the paper's 0.01, or 8 / T) the
  policy overshoots while lambda catches up, then sits at no help at all while lambda crawls
  back down at eta * tau per step; tests/test_control.py measures both on a stub policy.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from edgecl.core.rewards import ALPHA_A, ALPHA_C, ALPHA_F
from edgecl.errors import EdgeclError

# Help then earns alpha_a - lambda * alpha_c = -2 alpha_f: below a format violation (-alpha_f).
LAMBDA_MAX = (ALPHA_A + 2 * ALPHA_F) / ALPHA_C
DUAL_LR = 0.5  # eta_lambda; see the module docstring
RATIO_WINDOW = 10  # steps in the running-mean cloud ratio shown next to tau


def initial_lambda(tau: float, help_rate: float | None) -> float:
    """Where lambda starts when the user gives no --lambda-init: at LAMBDA_MAX when the warmed-up
    model asks for help more often than tau (the budget binds, so the first push is toward asking
    less; from a low lambda the real policy first rushes to asking on every sample, a trap:
    benchmarks/README.md), else 0; 0.5 when the warm-up measured no help rate."""
    if help_rate is None:
        return 0.5
    return LAMBDA_MAX if help_rate > tau else 0.0


def dual_update(lam: float, j_c: float, tau: float, eta: float, cap: float = float("inf")) -> float:
    """lambda <- min(cap, max(0, lambda + eta * (J_c - tau))): projected dual ascent (eq. 3)."""
    return min(float(cap), max(0.0, float(lam) + float(eta) * (float(j_c) - float(tau))))


def running_ratio(ratios: list[float], window: int = RATIO_WINDOW) -> float:
    """The mean of the last `window` steps' cloud ratios J_c (all of them while fewer): one
    4-prompt step's J_c has a standard deviation near 0.24, too noisy to read against tau."""
    recent = list(ratios)[-window:]
    if not recent:
        raise ValueError("running_ratio() of no steps")
    return float(np.mean(recent))


def batch_cost_ratio(costs: np.ndarray) -> float:
    """J_c of a batch: the mean cost over all its samples (Algorithm 1, line 25)."""
    c = np.asarray(costs, dtype=np.float64)
    if c.size == 0:
        raise ValueError("batch_cost_ratio() of an empty batch")
    return float(c.mean())


@dataclass(frozen=True)
class TauSchedule:
    """A piecewise-constant budget: `phases` = ((start_step, tau), ...), the first at step 0.

    Written as "0.1@0,0.5@150,0.3@300" (tau @ first step of its phase) or a plain "0.3".
    """

    phases: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        if not self.phases or self.phases[0][0] != 0:
            raise EdgeclError("a tau schedule must start at step 0, e.g. '0.1@0,0.5@150'")
        starts = [s for s, _ in self.phases]
        if any(b <= a for a, b in pairwise(starts)):
            raise EdgeclError(f"tau schedule steps {starts} must increase: e.g. '0.1@0,0.5@150'")
        for _, tau in self.phases:
            if not 0.0 <= tau <= 1.0:
                raise EdgeclError(f"budget tau={tau} is outside [0, 1]: use e.g. 0.3")

    @classmethod
    def parse(cls, spec: str | float) -> TauSchedule:
        """From "0.3", 0.3 or "0.1@0,0.5@150,0.3@300"; a bad spec raises EdgeclError."""
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            return cls(((0, float(spec)),))
        text = str(spec).strip()
        phases = []
        for part in text.split(","):
            value, at, start = part.strip().partition("@")
            try:
                tau = float(value)
                step = int(start) if at else 0
            except ValueError:
                raise EdgeclError(
                    f"bad tau schedule {text!r}: write 'tau@step,...', e.g. '0.1@0,0.5@150'"
                ) from None
            if step < 0:
                raise EdgeclError(f"bad tau schedule {text!r}: steps must be >= 0")
            phases.append((step, tau))
        if len(phases) > 1 and any("@" not in p for p in text.split(",")):
            raise EdgeclError(f"bad tau schedule {text!r}: give every phase a step, 'tau@step'")
        return cls(tuple(phases))

    def at(self, step: int) -> float:
        """The budget in force at training step `step` (0-based)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        starts = [s for s, _ in self.phases]
        return self.phases[bisect_right(starts, step) - 1][1]

    def __str__(self) -> str:
        if len(self.phases) == 1:
            return f"{self.phases[0][1]:g}"
        return ",".join(f"{tau:g}@{start}" for start, tau in self.phases)


class CollapseDetector:
    """Flags the paper's C.1 failure: no sample asks for help for `window` consecutive steps
    while tau > 0 and lambda == 0. Then no group has a help sample to compare against, every
    help gradient is zero, and the dual variable can do nothing: the run must be restarted
    (smaller policy lr) or the model re-warmed-up.
    """

    def __init__(self, window: int = 50) -> None:
        if window < 1:
            raise EdgeclError(f"collapse window {window} must be >= 1 step")
        self.window = int(window)
        self.streak = 0

    def update(self, n_help: int, tau: float, lam: float) -> bool:
        """Record one step (`n_help` help samples in the batch); True while collapsed."""
        if n_help == 0 and tau > 0 and lam <= 0.0:
            self.streak += 1
        else:
            self.streak = 0
        return self.collapsed

    @property
    def collapsed(self) -> bool:
        return self.streak >= self.window

    def to_dict(self) -> dict[str, int]:
        return {"window": self.window, "streak": self.streak}

    @classmethod
    def from_dict(cls, state: dict[str, int]) -> CollapseDetector:
        detector = cls(int(state["window"]))
        detector.streak = int(state["streak"])
        return detector
