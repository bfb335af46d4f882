"""What keeps DA-GRPO near where it started: self-distillation rows and the KL anchor.

- Self-distillation: every step's update also fits the base model's own answers to general
  prompts (edgecl.retention), so the adapter keeps answering them.
- The KL anchor (the trainer, with mlx_loss.anchored_pg_loss): kl_coef x KL(pi_anchor || pi) at
  every position of the sampled responses, over the whole vocabulary, pi_anchor the adapter the
  run's DA-GRPO started from (the warm-up, or the learner's version). Without it the help
  policy falls into one of two traps that nothing leads out of: no sample asks (so no group has
  a help request to learn from, even once lambda is 0; the paper's C.1 collapse), or every
  sample asks (every group's cost advantage is 0, so lambda has no lever, even at its cap).
  Both measured on the real model (benchmarks/README.md). This direction of the KL keeps its
  pull where the policy has left the anchor's support: its gradient in the help token's logit
  is p - p_anchor, where a KL estimated on sampled tokens has p (p - p_anchor)-like terms that
  vanish as p goes to 0.
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
