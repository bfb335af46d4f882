"""`edgecl bench continual`: the paper's task-switch benchmark (its Table 1) on edgecl's trainer.

    edgecl bench continual --sequence math,code --methods da-grpo,grpo-hier,gapg,edge-only
    edgecl bench continual --id b1 ... --executor ray      # the same jobs spread by Ray

A job is one (method, order, seed): a learner of its own, started fresh, and one run whose
phases are the sequence's tasks in that order, each with its budget. Every method starts from
the same stored warm-up of those tasks (edge-only from one that teaches the format only).
Every task of the sequence is evaluated (the first `eval_items` items of its eval split,
greedy, with the simulated reference cloud) after the warm-up, every `every` steps and at the
end of each phase. Both orders run, so each task is measured when it comes first: its
during-task accuracy at the end of its own phase, its post-switch accuracy at the end of the
sequence, and the forgetting rate (during - post) / during (None, printed n/a, when during is
0). Each for local-solved responses (answered locally and right, over all items: the reading
edgecl uses everywhere; the paper's Table 2 also uses the term for the items a router kept)
and for joint ones (the cloud's answer where the model asked), plus the mean training cloud
ratio J_c of each phase.

A job is resumable (its run resumes; its eval points are kept in a file per job) and returns
its points as JSON, so an executor can run it in another process or on another machine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from edgecl import paths
from edgecl.errors import EdgeclError

BUDGETS = {"math": 0.3, "code": 0.5, "qa": 0.2}  # the paper's (Table 1 and Table 3)
RESPONSES = ("local", "joint")


@dataclass
class Plan:
    """The compute plan, fixed before running (written into every job and the results)."""

    sequence: list[str]
    methods: list[str]
    budgets: dict[str, float] = field(default_factory=dict)  # task -> tau (default BUDGETS)
    steps_per_task: int = 30
    eval_items: int = 40
    every: int = 10
    seeds: list[int] = field(default_factory=lambda: [0])
    batch_size: int = 4
    group_size: int = 4
    max_tokens: int = 96
    model: str | None = None
    warmup_steps: int | None = None  # None: learn's defaults
    help_steps: int | None = None
    assist: dict[str, float] = field(default_factory=dict)  # task -> hierarchical assist reward

    def __post_init__(self) -> None:
        if len(self.sequence) < 2:
            raise EdgeclError("--sequence needs two tasks or more, e.g. math,code")
        if self.steps_per_task < 1 or self.eval_items < 1 or self.every < 1:
            raise EdgeclError("--steps-per-task, --eval-items and --every must be >= 1")
        self.budgets = {t: self.budgets.get(t, BUDGETS.get(t, 0.3)) for t in self.sequence}

    def orders(self) -> list[list[str]]:
        """Each task first once: the sequence, then it rotated (math,code -> code,math)."""
        n = len(self.sequence)
        return [self.sequence[k:] + self.sequence[:k] for k in range(n)]

    def eval_steps(self) -> list[int]:
        ends = {self.steps_per_task * (k + 1) for k in range(len(self.sequence))}
        every = set(range(0, self.steps_per_task * len(self.sequence) + 1, self.every))
        return sorted(ends | every)


def jobs(bench: str, plan: Plan) -> list[dict]:
    """One spec per (method, order, seed): what `edgecl bench job` runs."""
    from edgecl.core.methods import get_method

    for method in plan.methods:
        get_method(method)  # a bad name fails before anything runs
    return [
        {"bench": bench, "method": m, "order": order, "seed": seed, "plan": asdict(plan),
         "name": f"{bench}-{m}-{'-'.join(short_name(t) for t in order)}-s{seed}"}
        for m in plan.methods for order in plan.orders() for seed in plan.seeds
    ]  # fmt: skip


def short_name(task: str) -> str:
    return task.rsplit("/", 1)[-1].removesuffix(".jsonl")


def train_run(config, on_line=print, on_step=None, before=None):
    """Train the run `config` (resume it if it exists; nothing if it is done), printing a line
    per step; `on_step(row)` after each step and `before(trainer)` once the run is prepared.
    Returns the run's step rows."""
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.config import TrainConfig
    from edgecl.models.registry import resolve_model
    from edgecl.store import Store
    from edgecl.train import Trainer

    store = Store()
    row = store.get_run(config.run_name)
    if row is not None:
        config = TrainConfig.from_dict(row["config"])
    entry = resolve_model(config.model)

    def on_event(kind: str, d: dict) -> None:
        if kind == "warmup" and (d["step"] % 10 == 0 or d["step"] == d["of"]):
            on_line(f"{config.run_name} warm-up {d['phase']} step {d['step']}/{d['of']}: "
                    f"loss {d['loss']:.3f}")  # fmt: skip
        elif kind == "warmup_reused":
            on_line(f"{config.run_name} warm-up: reused {d['reused']}")
        elif kind == "step":
            on_line(f"{config.run_name} step {d['step']} {d['task']}: cloud {d['j_c']:.2f} "
                    f"reward {d['mean_reward']:+.3f} lambda {d['lambda_after']:.3f}")  # fmt: skip
            if on_step is not None:
                on_step(d)

    trainer = Trainer(config, MLXModel.load(entry.mlx_dir, entry.name), store, on_event)
    if row is None or row["status"] != "done":
        trainer.prepare(resume=row is not None)
        if before is not None:
            before(trainer)
        trainer.run()
    steps = store.steps(config.run_name)
    store.close()
    return steps


def sizes(plan_or_spec: dict) -> dict:
    """The TrainConfig settings a benchmark fixes (the rest are learn's defaults)."""
    keys = ("model", "batch_size", "group_size", "max_tokens", "warmup_steps", "help_steps",
            "warmup_tasks")  # fmt: skip
    return {k: plan_or_spec[k] for k in keys if plan_or_spec.get(k) is not None}


def run_job(spec: dict, on_line=print) -> dict:
    """Train and evaluate one job (resuming it if it ran before); returns its result."""
    from edgecl.cloud import make_cloud
    from edgecl.config import Phase, TrainConfig
    from edgecl.evaluate import evaluate
    from edgecl.tasks.registry import get_task

    plan, name, seed = Plan(**spec["plan"]), spec["name"], spec["seed"]
    file = paths.data_dir() / "bench" / spec["bench"] / f"{name}.json"
    points = json.loads(file.read_text()) if file.is_file() else []
    phases = [Phase(t, str(plan.budgets[t]), plan.steps_per_task) for t in spec["order"]]
    config = TrainConfig(run_name=name, phases=phases, learner=name, fresh=True, seed=seed,
                         method=spec["method"], assist_reward=plan.assist or None,
                         **sizes(spec["plan"]))  # fmt: skip
    tasks = {t: get_task(t, config.verifier, seed) for t in plan.sequence}
    due, holder = plan.eval_steps(), {}

    def evaluate_all(step: int) -> None:
        if step not in due or any(p["step"] == step for p in points):
            return
        model = holder["trainer"].model
        phase = min((step - 1) // plan.steps_per_task + 1, len(phases)) if step else 0
        weights = weights_hash(model)
        for t, task in tasks.items():
            # Greedy and seeded: jobs that start from one warm-up share its step-0 evals.
            key = f"{weights}-{short_name(t)}-{plan.eval_items}x{plan.max_tokens}-s{seed}"
            cached = file.parent / "evals" / f"{key}.json"
            if cached.is_file():
                accs = json.loads(cached.read_text())
            else:
                cloud = make_cloud("reference", task=task, seed=seed)
                r = evaluate(model, task, cloud, plan.eval_items, plan.max_tokens, seed)
                accs = {k: r[k] for k in ("local_acc", "joint_acc", "cloud_ratio", "n")}
                paths.write_json(cached, accs)
            points.append({"step": step, "phase": phase, "task": t, **accs})
            on_line(f"{name} step {step} eval {t}: local {accs['local_acc']:.3f} "
                    f"joint {accs['joint_acc']:.3f} cloud {accs['cloud_ratio']:.3f}")  # fmt: skip
        paths.write_json(file, points)

    def before(trainer) -> None:  # after the warm-up, or a step a kill left unevaluated
        holder["trainer"] = trainer
        evaluate_all(trainer.state.step)

    steps = train_run(config, on_line, lambda row: evaluate_all(row["step"]), before)
    ratios = [float(np.mean([s["j_c"] for s in steps if s["phase"] == str(k + 1)] or [np.nan]))
              for k in range(len(phases))]  # fmt: skip
    return {**{k: spec[k] for k in ("bench", "name", "method", "order", "seed")},
            "points": points, "phase_cloud": ratios}  # fmt: skip


def weights_hash(model) -> str:
    """Identifies the adapter's current weights (equal weights give equal greedy evals)."""
    digest = hashlib.sha256()
    for key, value in sorted(model.trainable().items()):
        digest.update(key.encode() + np.array(value).tobytes())
    return digest.hexdigest()[:16]


def forgetting_rate(during: float | None, post: float | None) -> float | None:
    """(during - post) / during; None when during is 0 or either is missing."""
    if not during or post is None:
        return None
    return (during - post) / during


def table(results: list[dict], plan: Plan) -> list[dict]:
    """Table 1 rows: per method, task (measured in the order where it came first) and kind of
    response: during-task and post-switch accuracy (means over seeds), forgetting, and the
    mean training cloud ratio in the task's own phase and in the phases after it."""
    n, rows = plan.steps_per_task, []
    end = n * len(plan.sequence)
    key = {"local": "local_acc", "joint": "joint_acc"}
    for method in plan.methods:
        for task in plan.sequence:
            mine = [r for r in results if r["method"] == method and r["order"][0] == task]
            if not mine:
                continue

            def acc(step: int, kind: str, mine=mine, task=task) -> float | None:
                values = [p[key[kind]] for r in mine for p in r["points"]
                          if p["task"] == task and p["step"] == step]  # fmt: skip
                return float(np.mean(values)) if len(values) == len(mine) else None

            cloud = np.array([r["phase_cloud"] for r in mine], dtype=float).mean(axis=0)
            for kind in RESPONSES:
                during, post = acc(n, kind), acc(end, kind)
                rows.append({"method": method, "task": task, "responses": kind, "during": during,
                             "post": post, "forgetting": forgetting_rate(during, post),
                             "cloud_during": float(cloud[0]),
                             "cloud_after": float(np.nanmean(cloud[1:]))})  # fmt: skip
    return rows


def markdown(rows: list[dict], plan: Plan) -> str:
    """The table in the paper's layout: one row per (responses, method), three columns a task."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None or x != x else f"{100 * x:.1f}"

    head = ["Responses", "Method"]
    for t in plan.sequence:
        name = short_name(t)
        head += [f"{name} during", f"{name} post-switch", f"{name} forgetting",
                 f"{name} cloud (own / after)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind in RESPONSES:
        for method in plan.methods:
            cells = ["local-solved" if kind == "local" else "joint", method]
            for t in plan.sequence:
                r = next((r for r in rows if (r["method"], r["task"], r["responses"])
                          == (method, t, kind)), None)  # fmt: skip
                if r is None:
                    cells += ["-"] * 4
                    continue
                cloud = f"{r['cloud_during']:.2f} / {r['cloud_after']:.2f}"
                cells += [pct(r["during"]), pct(r["post"]), pct(r["forgetting"]), cloud]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
