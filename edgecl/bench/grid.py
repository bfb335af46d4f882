"""`edgecl bench assist-grid`: the hierarchical baselines' assistance reward, chosen per task by
a small grid search toward tau, as the paper does for its Table 3.

    edgecl bench assist-grid --task math --budget 0.3 --values 0.05,0.1,0.2,0.4
    edgecl bench continual ... --assist math:0.2,code:0.05      # then use the choices

For each value: a short run of the method (default grpo-hier) on the task, from the stored
warm-up with a fresh learner. The value whose mean training cloud ratio J_c over the second
half of its steps is nearest tau is chosen (ties: the smaller value). The grid, with each
value's J_c and training accuracy, is printed and written as Markdown and CSV.
"""

from __future__ import annotations

import numpy as np

from edgecl.bench.continual import short_name, sizes, train_run

VALUES = (0.05, 0.1, 0.2, 0.4, 0.6)


def grid_jobs(bench: str, task: str, tau: float, values, method: str, steps: int, seed: int,
              fixed: dict) -> list[dict]:  # fmt: skip
    """One job spec per value (what `edgecl bench job` runs)."""
    from edgecl.core.methods import get_method

    if not get_method(method).hierarchical:
        raise ValueError(f"{method} has no assistance reward: use grpo-hier, gapg or gvpo")
    prefix = f"{bench}-{method}-{short_name(task)}"
    return [{"kind": "grid", "bench": bench, "name": f"{prefix}-a{v:g}",
             "method": method, "task": task, "tau": tau, "assist": v, "steps": steps,
             "seed": seed, **fixed} for v in values]  # fmt: skip


def run_grid_job(spec: dict, on_line=print) -> dict:
    from edgecl.config import Phase, TrainConfig

    name = spec["name"]
    phase = Phase(spec["task"], str(spec["tau"]), spec["steps"])
    config = TrainConfig(run_name=name, phases=[phase], learner=name, fresh=True,
                         seed=spec["seed"], method=spec["method"], assist_reward=spec["assist"],
                         **sizes(spec))  # fmt: skip
    steps = train_run(config, on_line)
    half = steps[len(steps) // 2 :]
    return {"name": name, "assist": spec["assist"], "tau": spec["tau"], "steps": len(steps),
            "j_c": float(np.mean([s["j_c"] for s in half])),
            "accuracy": float(np.mean([s["accuracy"] for s in half]))}  # fmt: skip


def choose(results: list[dict]) -> dict:
    """The result whose J_c is nearest its tau (the smaller value on a tie)."""
    return min(results, key=lambda r: (abs(r["j_c"] - r["tau"]), r["assist"]))


def markdown(results: list[dict], task: str, method: str) -> str:
    best = choose(results)
    lines = [f"Assistance reward of {method} on {task} toward tau {best['tau']:g} "
             "(J_c and accuracy: means over the second half of each run's steps)", "",
             "| assist reward | J_c | abs(J_c - tau) | training accuracy | chosen |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(results, key=lambda r: r["assist"]):
        lines.append(f"| {r['assist']:g} | {r['j_c']:.3f} | {abs(r['j_c'] - r['tau']):.3f} | "
                     f"{r['accuracy']:.3f} | {'yes' if r is best else ''} |")  # fmt: skip
    return "\n".join(lines) + "\n"
