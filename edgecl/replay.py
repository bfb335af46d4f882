"""Replay of earlier tasks (`--method da-grpo+replay`): beyond the paper, whose protocol
forbids earlier data; a user may allow it.

    edgecl learn --task code --method da-grpo+replay --replay 0.25

A `--replay` fraction of every step's prompts is drawn from the replay log (the `samples`
table) of the learner's earlier tasks: the train items its earlier runs, and this run's earlier
phases, sampled on. They are answered, scored and trained on like the current task's prompts,
with their own task's verifier and cloud.
"""

from __future__ import annotations

import numpy as np

from edgecl.errors import EdgeclError
from edgecl.store import Store
from edgecl.tasks.registry import get_task


def replay_pool(store: Store, learner: str, run: str, task: str, before: int, verifier, seed):
    """[(task, item)] the learner sampled on for other tasks than `task`: in its other runs,
    and in `run` up to step `before` (so a resumed run finds the same pool)."""
    rows = store.db.execute(
        "SELECT DISTINCT st.task, sa.item_id FROM samples sa "
        "JOIN steps st ON st.run = sa.run AND st.step = sa.step "
        "JOIN runs r ON r.name = sa.run "
        "WHERE COALESCE(json_extract(r.config, '$.learner'), 'default') = ? AND st.task != ? "
        "AND (sa.run != ? OR st.step <= ?) ORDER BY st.task, sa.item_id",
        [learner, task, run, before],
    ).fetchall()
    tasks = {}  # a task's name (what the steps table keeps) -> the task, from the runs' specs
    configs = [r["config"] or {} for r in store.list_runs()]
    mine = [c for c in configs if c.get("learner", "default") == learner]
    for phase in (p for c in mine for p in c.get("phases", [])):
        try:
            task_ = get_task(phase["task"], verifier, seed)
        except EdgeclError:  # a JSONL file that has gone: its items cannot be replayed
            continue
        tasks.setdefault(task_.name, (task_, {it.id: it for it in task_.items("train")}))
    pool = []
    for name, item_id in rows:
        the_task, items = tasks.get(name, (None, {}))
        if item_id in items:  # a replayed item is logged under the step's task: skip it there
            pool.append((the_task, items[item_id]))
    return pool


def pick(pool: list, n: int, seed: int, step: int) -> list:
    """n distinct entries of the pool for this step (fixed by seed and step)."""
    if not pool or n <= 0:
        return []
    order = np.random.default_rng([seed, step, 41]).permutation(len(pool))
    return [pool[k] for k in order[:n]]


class Replay:
    """A trainer's replay: the pool of its current phase and the clouds of the tasks in it."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer
        self.phase: int | None = None
        self.pool: list = []
        self.clouds: dict = {}

    def mix(self, entries: list, phase: int, step: int) -> list:
        """The batch's (task, cloud, item) entries with the last `replay` fraction replaced by
        earlier tasks' items (fewer if the pool is smaller; none before there is a pool)."""
        t, c = self.trainer, self.trainer.config
        if t.world.size > 1:
            raise EdgeclError("--replay does not run data parallel yet: run one process")
        if self.phase != phase:
            start = sum(p.steps for p in c.phases[:phase])
            name = t.tasks[phase].name
            self.pool = replay_pool(t.store, c.learner, c.run_name, name, start, c.verifier, c.seed)
            self.phase = phase
        n = max(1, round(c.replay * len(entries)))  # --replay 0.25 of 2 prompts: still one
        extra = pick(self.pool, n, c.seed, step)
        kept = entries[: len(entries) - len(extra)]
        return kept + [(task, self._cloud(task), item) for task, item in extra]

    def _cloud(self, task):
        if task.name not in self.clouds:  # seeds apart from the phases' clouds
            self.clouds[task.name] = self.trainer._make_cloud(task, 1000 + len(self.clouds))
        return self.clouds[task.name]
