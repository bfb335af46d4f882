"""Group-relative advantages (paper eqs. 2, 6-8) and the per-sample policy-gradient weights.

A batch is laid out prompt-major: n_prompts groups of G consecutive samples. The learner's
loss is

    loss = -sum_i w_i * logp_i

with logp_i the log-probability of sample i's LOCAL tokens (summed over tokens, divided by a
constant, never by the sample's own length) and w = sample_weights(...). The weights already
contain the 1/n_prompts average, so -grad(loss) is eq. 8 averaged over the prompts:

    (1/n_prompts) * sum_x G/(G-1) * sum_i grad log pi(y_i|x) * Â_i.

Note: taken literally, eq. 8 has expectation G times the policy gradient (the paper's
"unbiased" holds up to that constant, which the learning rate absorbs); "gapg" (1/(G-1)) is
the exactly unbiased scaling.
"""

from __future__ import annotations

import numpy as np

from edgecl.errors import EdgeclError

MODES = ("da-grpo", "grpo", "gapg")
SCALE_REWARDS = ("none", "group")
STD_EPS = 1e-4  # as in TRL's GRPO


def group_advantages(rewards: np.ndarray, costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A_r = r - mean(r), A_c = c - mean(c) over the last axis (the group); no std division."""
    r = np.asarray(rewards, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64)
    if r.shape != c.shape:
        raise ValueError(f"rewards {r.shape} and costs {c.shape} differ in shape")
    return _centred(r), _centred(c)


def _centred(x: np.ndarray) -> np.ndarray:
    """x - mean(x) per group, exactly 0 for a group of equal values: the mean of G copies of
    -0.1 is not exactly -0.1 in floating point, and Adam turns a 1e-17 weight into a full step."""
    equal = x.max(axis=-1, keepdims=True) == x.min(axis=-1, keepdims=True)
    return np.where(equal, 0.0, x - x.mean(axis=-1, keepdims=True))


def dual_weighted(a_r: np.ndarray, a_c: np.ndarray, lam: float) -> np.ndarray:
    """Â = A_r - lambda * A_c (eq. 7): the advantage of the shaped reward r - lambda * c."""
    return np.asarray(a_r, dtype=np.float64) - lam * np.asarray(a_c, dtype=np.float64)


def sample_weights(
    rewards: np.ndarray,
    costs: np.ndarray,
    lam: float,
    group_size: int,
    mode: str = "da-grpo",
    scale_rewards: str = "none",
) -> np.ndarray:
    """Per-sample weights w (shape [n_prompts * G]) for loss = -sum_i w_i * logp_i.

    Every mode works on the shaped reward r - lam * c (baselines pass lam=0):
    - "da-grpo": w = G/(G-1) * Â / n_prompts (eq. 8, mean baseline, no std); with
      scale_rewards="group", Â is first divided by its group's std (+1e-4), the reading of
      section 3.2's "prior to GRPO's normalization".
    - "grpo": standard GRPO, w = (r - mean) / (std + 1e-4) / n_prompts (std with ddof=1).
    - "gapg": w = (r - mean) / (G - 1) / n_prompts.
    Every mode sums over the group and averages over prompts, so the modes differ only in the
    advantage, not in the batch reduction.
    """
    if mode not in MODES:
        raise EdgeclError(f"unknown advantage mode {mode!r}: use one of {', '.join(MODES)}")
    if scale_rewards not in SCALE_REWARDS:
        raise EdgeclError(f"unknown scale_rewards {scale_rewards!r}: use 'none' or 'group'")
    if scale_rewards == "group" and mode != "da-grpo":
        raise EdgeclError(f"scale_rewards='group' applies to da-grpo only, not {mode!r}")
    if int(group_size) != group_size or group_size < 2:
        raise EdgeclError(f"group size {group_size} is too small: use G >= 2 (the paper uses 8)")
    if lam < 0:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    r = np.asarray(rewards, dtype=np.float64).ravel()
    c = np.asarray(costs, dtype=np.float64).ravel()
    if r.shape != c.shape or r.size == 0 or r.size % group_size:
        raise ValueError(
            f"{r.size} rewards and {c.size} costs do not form whole groups of {group_size}"
        )
    g = int(group_size)
    n_prompts = r.size // g
    a_r, a_c = group_advantages(r.reshape(n_prompts, g), c.reshape(n_prompts, g))
    adv = dual_weighted(a_r, a_c, lam)
    if mode == "da-grpo":
        if scale_rewards == "group":
            adv = adv / (adv.std(axis=1, ddof=1, keepdims=True) + STD_EPS)
        w = adv * (g / (g - 1))
    elif mode == "grpo":
        w = adv / (adv.std(axis=1, ddof=1, keepdims=True) + STD_EPS)
    else:
        w = adv / (g - 1)
    return (w / n_prompts).ravel()
