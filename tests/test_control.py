"""The control property without a language model: the dual variable steers the cloud ratio.

A synthetic policy stands in for the model. Each prompt has a hardness u ~ U(0, 1); the local
model solves it with probability 1 - u, the cloud with probability 0.95. The policy asks for
help with probability sigmoid(a + b * 4 * (u - 0.5)): two parameters, so it generalises across
prompts the way a model's sense of "too hard for me" does. It is trained by REINFORCE with the
same `sample_weights` (eq. 8) and `dual_update` (eq. 3) as the real trainer, plain SGD.

Unconstrained it would ask on ~95% of prompts, so every budget below binds. At a fixed lambda
the best response asks iff u > lambda + 0.05, i.e. J_c = 0.95 - lambda: tau = 0.3 needs
lambda* = 0.65. (A per-type tabular policy is a poor stand-in: its decisions saturate, and
primal-dual play then cycles instead of settling.)
"""

from __future__ import annotations

import numpy as np

from edgecl.config import Phase, TrainConfig
from edgecl.core.advantages import sample_weights
from edgecl.core.dual import (
    DUAL_LR,
    LAMBDA_MAX,
    CollapseDetector,
    TauSchedule,
    batch_cost_ratio,
    dual_update,
)
from edgecl.core.rewards import ALPHA_A, ALPHA_C

KL_COEF = TrainConfig(run_name="x", phases=[Phase("math", "0.3", 1)]).kl_coef
P_CLOUD = 0.95
N_PROMPTS, G = 64, 8
POLICY_LR = 2.0  # healthy
SMALL_BATCH_LR = 0.5  # the same policy with 16 samples a step: a smaller step for the noise
TOO_LARGE_LR = 20.0  # 10x: the paper's C.1 regime (2e-6 stable, >= 2e-5 collapses)
STUB_DUAL_LR = 0.05  # the older tests: 600 steps of 64 prompts
STEPS = 600  # per budget phase
WINDOW = 30  # collapse detector


def help_prob(theta: np.ndarray, u: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(theta[0] + theta[1] * 4.0 * (u - 0.5))))


def simulate(
    tau: TauSchedule,
    steps: int,
    lam: float,
    lr: float,
    seed: int = 0,
    eta: float = STUB_DUAL_LR,
    n_prompts: int = N_PROMPTS,
    cap: float = float("inf"),
    g: int = G,
    kl: float = 0.0,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lam = min(lam, cap)
    theta = np.zeros(2)  # also the KL term's anchor
    detector = CollapseDetector(window=WINDOW)
    ratios, lams, n_help, flags = [], [], [], []
    for step in range(steps):
        u = np.repeat(rng.random(n_prompts), g)  # prompt-major: G samples per prompt
        features = np.stack([np.ones_like(u), 4.0 * (u - 0.5)], axis=1)
        p = help_prob(theta, u)
        asks = rng.random(u.size) < p
        correct = np.where(asks, rng.random(u.size) < P_CLOUD, rng.random(u.size) < 1.0 - u)
        rewards = ALPHA_A * correct  # every sample well formatted: r in {0, 1} (eq. 13)
        costs = ALPHA_C * asks  # eq. 14
        w = sample_weights(rewards, costs, lam, g)
        # loss = -sum_i w_i log pi(d_i); d log pi(d)/d logit = d - p for a Bernoulli.
        # kl * KL(p_anchor || p) per sample, summed over the group and averaged over prompts as
        # eq. 8 is (edgecl.regularize); d KL / d logit = p - p_anchor, the anchor's p is 1/2.
        theta = theta + lr * features.T @ (w * (asks - p) - kl / n_prompts * (p - 0.5))
        j_c = batch_cost_ratio(costs)
        lam = dual_update(lam, j_c, tau.at(step), eta, cap)
        ratios.append(j_c)
        lams.append(lam)
        n_help.append(int(asks.sum()))
        flags.append(detector.update(int(asks.sum()), tau.at(step), lam))
    return {
        "ratio": np.array(ratios),
        "lam": np.array(lams),
        "n_help": np.array(n_help),
        "flags": np.array(flags),
        "theta": theta,
    }


def test_budget_binds():
    """Without the dual (lambda stuck at 0) the policy asks far more than any tau used here."""
    run = simulate(TauSchedule.parse(0.3), STEPS, lam=0.0, lr=POLICY_LR, eta=0.0)
    assert run["ratio"][-50:].mean() > 0.7


def test_tracks_the_budget_from_any_lambda_init():
    for lam_init in (0.0, 0.5, 2.0):
        run = simulate(TauSchedule.parse(0.3), STEPS, lam=lam_init, lr=POLICY_LR)
        assert abs(run["ratio"][-50:].mean() - 0.3) < 0.05, lam_init
        assert 0.4 < run["lam"][-50:].mean() < 0.9, lam_init  # near lambda* = 0.65
        assert not run["flags"].any(), lam_init


def test_follows_a_tau_schedule():
    sched = TauSchedule.parse(f"0.1@0,0.5@{STEPS},0.3@{2 * STEPS}")
    run = simulate(sched, 3 * STEPS, lam=0.5, lr=POLICY_LR)
    for phase, tau in enumerate((0.1, 0.5, 0.3)):
        end = (phase + 1) * STEPS
        assert abs(run["ratio"][end - 50 : end].mean() - tau) < 0.05, tau
    assert not run["flags"].any()


def test_too_large_policy_step_collapses_and_the_detector_flags_it():
    """Paper C.1: with lambda_init 2 a too-large step drives the help probability to ~0;
    lambda then falls to 0, but with no help sample in any group there is no gradient left
    to bring asking back, so the ratio stays at 0 although tau = 0.3."""
    run = simulate(TauSchedule.parse(0.3), STEPS, lam=2.0, lr=TOO_LARGE_LR)
    assert run["lam"][-1] == 0.0
    assert (run["n_help"][-300:] == 0).all()
    assert help_prob(run["theta"], np.linspace(0, 1, 101)).max() < 1e-4
    assert run["flags"][-1]
    first = int(np.argmax(run["flags"]))
    assert (run["n_help"][first - WINDOW + 1 : first + 1] == 0).all()

    healthy = simulate(TauSchedule.parse(0.3), STEPS, lam=2.0, lr=POLICY_LR)
    assert not healthy["flags"].any()
    assert abs(healthy["ratio"][-50:].mean() - 0.3) < 0.05


def test_the_kl_anchor_brings_a_collapsed_policy_back():
    """The same too-large step with the trainer's KL anchor (KL(p_anchor || p), weight
    KL_COEF): the help probability is pulled back toward the anchor's even from near 0, so
    asking resumes once lambda falls, and the ratio settles near tau instead of at 0."""
    run = simulate(TauSchedule.parse(0.3), STEPS, lam=2.0, lr=TOO_LARGE_LR, kl=KL_COEF)
    assert not run["flags"].any()
    assert abs(run["ratio"][-100:].mean() - 0.3) < 0.05


def test_the_default_dual_step_binds_within_the_run():
    """DUAL_LR with lambda capped at LAMBDA_MAX and the trainer's KL anchor, at the real-model
    evidence runs' size (150 steps of 4 prompts x G=4, where one step's J_c is noisy): from
    lambda_init 0 and 2, for tau 0.1 and 0.2, the ratio over the last 20% of steps is within
    0.05 of tau on average over seeds (within 0.1 in every seed) and lambda stays in
    [0, LAMBDA_MAX]. Without the anchor, the paper's 0.01 and a step that crosses the range
    over the run (8 / T) do not get there in 150 steps."""
    steps, tail = 150, 30

    def tails(tau: float, lam_init: float, eta: float, kl: float = KL_COEF) -> list[float]:
        runs = [
            simulate(
                TauSchedule.parse(tau), steps, lam_init, SMALL_BATCH_LR, seed=seed, eta=eta,
                n_prompts=4, cap=LAMBDA_MAX, g=4, kl=kl,
            )
            for seed in range(4)
        ]  # fmt: skip
        assert all(0 <= r["lam"].min() and r["lam"].max() <= LAMBDA_MAX for r in runs)
        return [float(r["ratio"][-tail:].mean()) for r in runs]

    for tau in (0.1, 0.2):
        for lam_init in (0.0, 2.0):
            got = tails(tau, lam_init, DUAL_LR)
            assert abs(np.mean(got) - tau) < 0.05, (tau, lam_init, got)
            assert max(abs(x - tau) for x in got) < 0.1, (tau, lam_init, got)
    for slow in (0.01, 8 / steps):
        assert abs(np.mean(tails(0.1, 0, slow, kl=0)) - 0.1) > 0.05  # overshoots, or too slow
