"""What keeps DA-GRPO near where it started: self-distillation rows and the KL anchor.

- Self-distillation: every step's update also fits the base model's own answers to general
  prompts (edgecl.retention), so the adapter keeps answering them.
- The KL anchor: kl_coef x KL(pi || pi_anchor), pi_anchor the adapter the run's DA-GRPO started
  from (the warm-up, or the learner's version). Without it a help policy pushed to 0 by a large
  lambda never comes back: no sample asks, so no group has a help sample to learn from, even
  after lambda falls to 0 (the paper's C.1 collapse, measured in benchmarks/README.md). The
  anchor pulls the help probability back toward the warm-up's, and lambda sets how far below.
"""

from __future__ import annotations

import numpy as np


def distill_rows(config, general: list, step: int) -> tuple[list, list, np.ndarray]:
    """`general_rows` base-model (prompt, answer) pairs for this step, weighted so they add
    `distill_weight` x their mean token NLL to the loss (loss = -sum w log pi / max_tokens)."""
    c = config
    if c.general_rows < 1 or c.distill_weight <= 0 or not general:
        return [], [], np.zeros(0)
    rng = np.random.default_rng([c.seed, step, 5])
    rows = [general[k] for k in rng.choice(len(general), size=min(c.general_rows, len(general)))]
    n_tokens = sum(len(a) for _, a in rows)
    weights = np.full(len(rows), c.distill_weight * c.max_tokens / n_tokens)
    return [p for p, _ in rows], [a for _, a in rows], weights


def anchor_logprobs(model, anchor: dict, prompts: list, targets: list, micro_batch: int) -> list:
    """Per-token log pi_anchor(target | prompt) of each row, computed `micro_batch` rows at a
    time with the anchor's adapter weights swapped in."""
    out: list = []
    with model.adapter_weights(anchor):
        for i in range(0, len(targets), micro_batch):
            part = slice(i, i + micro_batch)
            out += model.sequence_logprobs(prompts[part], targets[part])
    return out


def k3_sum(anchor: np.ndarray, current: np.ndarray) -> float:
    """sum over tokens of exp(d) - d - 1, d = log pi_anchor - log pi: the k3 estimate of
    KL(pi || pi_anchor) on tokens sampled from pi (>= 0, 0 where the two agree)."""
    d = np.clip(np.asarray(anchor, np.float64) - np.asarray(current, np.float64), -20.0, 20.0)
    return float((np.exp(d) - d - 1.0).sum())
