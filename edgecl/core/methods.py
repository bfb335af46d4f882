"""The training methods of the paper's section 4, as functions the trainer is given (issue 9).

    edgecl learn --task math --budget 0.3 --method gapg

A method turns a scored rollout into per-sample policy-gradient weights (loss = -sum_i w_i *
logp_i, as in edgecl.core.advantages): it says which reward is trained on, how the group's
advantage is formed, which prompts count, whether help requests reach the cloud, and whether
lambda is steered. All of them share the sampler, the scorer, the loss and the store.

| method | reward | advantage | help | lambda |
|---|---|---|---|---|
| da-grpo | eq. 13, cost eq. 14 | (r - lam c) centred, x G/(G-1) (eq. 8) | cloud | dual update |
| grpo-hier | hierarchical | centred / std (standard GRPO) | cloud | 0 |
| gapg | hierarchical | centred / (G-1), adaptive prompt filter | cloud | 0 |
| gvpo | hierarchical | beta (centred r - beta centred log-ratio) / (G-1) | cloud | 0 |
| edge-only | eq. 13, a help request is a wrong answer | centred / std | never | 0 |
| da-grpo+replay | as da-grpo; a share of each batch is earlier tasks' prompts (edgecl.replay) |

The hierarchical reward (`hierarchical_reward`): 1 for a correct local answer, the assistance
reward for a correct answer the cloud gave, 0 for a well-formatted wrong one, -0.1 for a
format violation. The assistance reward is per task kind: `ASSIST_REWARD`, the paper's
Table 3 values, which it tuned for cloud ratios 0.3 (math), 0.5 (code) and 0.2 (QA).

GAPG's prompt filter keeps the prompts where some local answer was correct, plus prompts where
every local sample failed but the cloud's answer was right, at most `GAPG_RHO` times as many as
the first kind (in batch order); the others get weight 0 and the weights are averaged over the
prompts kept. GVPO (arXiv 2504.19599) within the same framework: per prompt,
w_i = beta * [(R_i - mean R) - beta * (l_i - mean l)] / (G - 1), with l_i the sequence
log-ratio log pi(y_i|x) - log pi_ref(y_i|x) against the reference policy, the model with the
adapter switched off; this is the gradient of GVPO's squared loss at the current policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecl.core.advantages import sample_weights
from edgecl.core.rewards import SampleScore, hierarchical_reward
from edgecl.errors import EdgeclError

METHODS = ("da-grpo", "grpo-hier", "gapg", "gvpo", "edge-only", "da-grpo+replay")
REPLAY_DEFAULT = 0.25  # da-grpo+replay's share of each batch from earlier tasks (edgecl.replay)
ASSIST_REWARD = {"math": 0.2, "code": 0.05, "qa": 0.4}  # paper, Table 3
GAPG_RHO = 1.0  # all-fail-but-cloud-right prompts kept, per prompt with a correct local answer
GVPO_BETA = 0.1  # GVPO's KL weight beta


@dataclass(frozen=True)
class Method:
    name: str
    hierarchical: bool  # trains on the fixed hierarchical reward (else eq. 13)
    advantage: str  # "da-grpo" | "grpo" | "gapg" | "gvpo"
    dual: bool  # lambda follows the dual update (else it stays 0)
    help_allowed: bool = True  # help requests go to the cloud (edge-only: they are wrong)
    prompt_filter: bool = False  # GAPG's adaptive prompt filtering

    @property
    def needs_log_ratio(self) -> bool:
        """The weights need each sample's sequence log-ratio to the base model (GVPO)."""
        return self.advantage == "gvpo"


_METHODS = {
    "da-grpo": Method("da-grpo", False, "da-grpo", True),
    "grpo-hier": Method("grpo-hier", True, "grpo", False),
    "gapg": Method("gapg", True, "gapg", False, prompt_filter=True),
    "gvpo": Method("gvpo", True, "gvpo", False),
    "edge-only": Method("edge-only", False, "grpo", False, help_allowed=False),
    # DA-GRPO itself; the trainer mixes earlier tasks' prompts in (TrainConfig.replay)
    "da-grpo+replay": Method("da-grpo+replay", False, "da-grpo", True),
}


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise EdgeclError(f"unknown method {name!r}: use one of {', '.join(METHODS)}")
    return _METHODS[name]


def assist_reward(kind: str, override: float | dict | None = None, task: str = "") -> float:
    """The hierarchical methods' reward for a correct cloud answer on a task of `kind`: the
    override (one value, or per task spec), else the paper's for the kind."""
    if isinstance(override, dict):
        override = override.get(task)
    return ASSIST_REWARD[kind] if override is None else float(override)


def rewards_and_costs(
    method: Method, scores: list[SampleScore], assist: float
) -> tuple[np.ndarray, np.ndarray]:
    """The reward each sample is trained on and its cost c (eq. 14), which every method
    records (J_c); edge-only sends nothing to the cloud, so its costs are 0."""
    if method.hierarchical:
        r = [
            hierarchical_reward(
                s.correct and not s.help, s.correct and s.help, s.well_formatted, assist
            )
            for s in scores
        ]
    else:
        r = [s.reward for s in scores]
    c = [s.cost if method.help_allowed else 0.0 for s in scores]
    return np.array(r, dtype=np.float64), np.array(c, dtype=np.float64)


def gapg_keep(scores: list[SampleScore], group_size: int, rho: float = GAPG_RHO) -> np.ndarray:
    """GAPG's prompt filter: True per prompt kept (see the module docstring)."""
    n = len(scores) // group_size
    groups = [scores[p * group_size : (p + 1) * group_size] for p in range(n)]
    local = [any(s.correct and not s.help for s in g) for g in groups]
    cloud = [not local[p] and any(s.correct and s.help for s in g) for p, g in enumerate(groups)]
    room = int(rho * sum(local))
    keep = np.array(local)
    for p in np.flatnonzero(cloud)[:room]:
        keep[p] = True
    return keep


def gvpo_weights(
    rewards: np.ndarray, log_ratio: np.ndarray, group_size: int, beta: float = GVPO_BETA
) -> np.ndarray:
    """GVPO's per-sample weights, averaged over prompts (see the module docstring)."""
    g = int(group_size)
    r = np.asarray(rewards, dtype=np.float64).reshape(-1, g)
    lr = np.asarray(log_ratio, dtype=np.float64).reshape(-1, g)
    centred = (r - r.mean(axis=1, keepdims=True)) - beta * (lr - lr.mean(axis=1, keepdims=True))
    return (beta * centred / (g - 1) / r.shape[0]).ravel()


def method_weights(
    method: Method,
    scores: list[SampleScore],
    lam: float,
    group_size: int,
    assist: float,
    scale_rewards: str = "none",
    log_ratio: np.ndarray | None = None,
) -> np.ndarray:
    """Per-sample weights w for loss = -sum_i w_i * logp_i under `method`."""
    r, c = rewards_and_costs(method, scores, assist)
    if method.advantage == "gvpo":
        if log_ratio is None:
            raise ValueError("gvpo needs each sample's log-ratio to the reference policy")
        return gvpo_weights(r, log_ratio, group_size)
    lam = lam if method.dual else 0.0
    scale = scale_rewards if method.advantage == "da-grpo" else "none"
    w = sample_weights(r, c, lam, group_size, method.advantage, scale)
    if method.prompt_filter:
        keep = gapg_keep(scores, group_size)
        w = w * np.repeat(keep, group_size) * len(keep) / max(int(keep.sum()), 1)
    return w
