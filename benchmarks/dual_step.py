"""The dual-step numbers quoted in edgecl/core/dual.py, on the stub policy of tests/test_control.py.

    python benchmarks/dual_step.py

150 steps of 4 prompts x G=4, policy lr 0.5, tau 0.1 and 0.2, lambda_init 0 and 2, 8 seeds:
the share of runs whose mean cloud ratio over the last 30 steps misses tau by more than 0.05,
for each (lambda cap, dual step).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_control import TauSchedule, simulate  # noqa: E402

for cap in (1.2, 2.0):
    for eta in (0.3, 0.5, 0.8):
        misses = [
            abs(simulate(TauSchedule.parse(tau), 150, lam, 0.5, seed=s, eta=eta, n_prompts=4,
                         cap=cap, g=4)["ratio"][-30:].mean() - tau)
            for tau in (0.1, 0.2) for lam in (0.0, 2.0) for s in range(8)
        ]  # fmt: skip
        print(f"cap {cap}, eta {eta}: misses > 0.05 in {np.mean(np.array(misses) > 0.05):.0%}")
