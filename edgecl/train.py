"""DA-GRPO training, paper Algorithm 1: wires the core, the MLX backend, the cloud and the store.

    edgecl learn --task math --budget 0.3

Each step: a batch of prompts, G samples each, one cloud call per help-seeking group, rewards and
costs, dual-weighted advantages, one policy-gradient step on the local tokens, the dual update.
After every step the adapter, optimizer and trainer state are checkpointed and the step is
written to SQLite, so `--resume` continues exactly (same data order, samples and lambda).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecl import faults, paths
from edgecl import learner as learners
from edgecl.backends.adapter_files import saved_adapter
from edgecl.backends.base import LoraConfig
from edgecl.backends.distributed import World
from edgecl.cloud import make_cloud
from edgecl.config import TrainConfig
from edgecl.core.dual import (
    LAMBDA_MAX,
    RATIO_WINDOW,
    CollapseDetector,
    TauSchedule,
    batch_cost_ratio,
    dual_update,
    initial_lambda,
)
from edgecl.core.methods import assist_reward, get_method, method_weights, rewards_and_costs
from edgecl.errors import EdgeclError
from edgecl.interrupts import interrupts, nothing
from edgecl.regularize import distill_rows
from edgecl.replay import Replay
from edgecl.retention import base_answers
from edgecl.rollout import PaidAnswers, Rollout, collect, log_ratios, merge
from edgecl.store import Store, now
from edgecl.tasks.registry import get_task
from edgecl.warmup import claimed, phase0, stored_warmup


@dataclass
class TrainerState:
    """Everything besides the adapter and optimizer that an exact resume needs."""

    step: int = 0  # DA-GRPO steps done, over all phases
    lam: float = 0.5
    collapse: dict = field(default_factory=dict)
    clouds: dict = field(default_factory=dict)  # per-phase reference-cloud counters
    warmup: dict | None = None  # what phase 0 did (None: not run yet)
    ratios: list = field(default_factory=list)  # J_c of the last RATIO_WINDOW steps
    start: str | None = None  # the learner's adapter version this run started from
    kl: float = 0.0  # mean per-token KL to the anchor at the last update


def run_dir(name: str) -> Path:
    return paths.data_dir() / "runs" / name


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        model,
        store: Store | None = None,
        on_event: Callable[[str, dict], None] | None = None,
        world: World | None = None,
    ):
        self.config = config
        self.model = model
        self.world = world or World()  # data-parallel ranks (edgecl.backends.distributed)
        self.sampler = rollout_sampler(config, model, self.world)
        self.method = get_method(config.method)  # edgecl.core.methods: DA-GRPO or a baseline
        self.store = store or Store()
        self.on_event = on_event or (lambda kind, data: None)
        self.tasks = [get_task(p.task, config.verifier, config.seed) for p in config.phases]
        self.clouds = [self._make_cloud(task, i) for i, task in enumerate(self.tasks)]
        self.schedules = [TauSchedule.parse(p.budget) for p in config.phases]
        lam = min(config.lambda_init or 0.0, LAMBDA_MAX) if self.method.dual else 0.0
        self.state = TrainerState(lam=lam)
        self.collapse = CollapseDetector(config.collapse_window)
        self.checkpoint = run_dir(config.run_name) / "adapter"
        self.total_steps = sum(p.steps for p in config.phases)
        self.last_rollout: Rollout | None = None
        self.general: list = []  # base answers for self-distillation
        self.anchor: dict | None = None  # adapter weights of the KL term (see _set_anchor)
        self.learner_lambda = False  # lambda came from the learner (else initial_lambda)
        self.replay = Replay(self)  # earlier tasks' prompts (--replay; edgecl.replay)

    def _make_cloud(self, task, index: int):
        return make_cloud(
            self.config.cloud, task=task, seed=self.config.seed + index, **self.config.cloud_options
        )

    def prepare(self, resume: bool = False, rewarm: bool = False) -> None:
        """Start a new run or resume one, then the warm-up (phase 0) if not done yet: a stored
        one for this model, tasks and settings, unless `rewarm`. Data parallel: rank 0 does all
        of it, and the other ranks take its adapter, optimizer and state."""
        c = self.config
        if not self.world.is_main:
            self._attach()  # rank 0's adapter and state arrive below
        elif resume:
            if self.store.get_run(c.run_name) is None:
                raise EdgeclError(f"no run named {c.run_name!r} to resume (see edgecl runs list)")
            if self._checkpoint() is not None:
                self._load_checkpoint()
            else:  # interrupted during the warm-up: nothing to lose, do it again
                self._attach()
            self.store.update_run(c.run_name, status="running")
        else:
            if self.store.get_run(c.run_name) is not None:
                raise EdgeclError(f"run {c.run_name!r} exists: use --resume or another --run-name")
            self._start()
            self.store.create_run(
                c.run_name,
                c.to_dict(),
                ",".join(p.task for p in c.phases),
                status="running",
                adapter_dir=str(self.checkpoint),
            )
            faults.point("run-created")
        if self.world.is_main:  # base answers, kept by self-distillation while learning
            self.general = base_answers(self.model)
            if self.state.warmup is None:
                self.run_warmup(rewarm)
        self.general = self.world.broadcast(self.general)
        self.model.broadcast_state(self.world)
        self.state = TrainerState(**self.world.broadcast(vars(self.state)))
        self.collapse = CollapseDetector.from_dict(self.world.broadcast(self.collapse.to_dict()))
        self._set_anchor()

    def _set_anchor(self) -> None:
        """The KL term's anchor: the adapter this run's DA-GRPO starts from (after the warm-up,
        or the learner's version), saved once in the run dir so --resume anchors to it too."""
        if self.config.kl_coef <= 0:
            return
        directory = run_dir(self.config.run_name) / "anchor"
        weights = self.model.trainable()
        if self.world.is_main:
            if saved_adapter(directory) is None:
                self.model.save_adapter(directory)
            weights = self.model.adapter_file_weights(saved_adapter(directory))
        self.anchor = self.world.broadcast_arrays(weights)

    def _start(self) -> None:
        """A fresh LoRA, or the learner's current adapter version and its lambda."""
        learner, version = learners.start(self.store, self.config, self.model)
        if version is None:
            self._attach()
            return
        self.model.load_adapter(version, learning_rate=self.config.lr)
        self.state.start = str(version)
        if learner.lam is not None and self.method.dual:  # the paper carries lambda across tasks
            self.state.lam, self.learner_lambda = min(learner.lam, LAMBDA_MAX), True
        self.on_event("learner", {"name": learner.name, "version": learner.current,
                                  "lambda": self.state.lam})  # fmt: skip

    def _attach(self) -> None:
        c = self.config
        self.model.attach_lora(
            LoraConfig(c.lora_rank, c.lora_alpha, c.lora_layers), learning_rate=c.lr, seed=c.seed
        )

    def _checkpoint(self) -> Path | None:
        return saved_adapter(self.checkpoint)

    def _load_checkpoint(self) -> None:
        saved = self.model.load_adapter(self._checkpoint(), learning_rate=self.config.lr)
        self.state = TrainerState(**saved["trainer_state"])
        if self.state.collapse:
            self.collapse = CollapseDetector.from_dict(self.state.collapse)
        for index, cloud in enumerate(self.clouds):
            if hasattr(cloud, "load_state_dict"):
                cloud.load_state_dict(self.state.clouds.get(str(index), {}))
        self.store.truncate_after(self.config.run_name, self.state.step)

    def run_warmup(self, rewarm: bool = False) -> dict:
        """Phase 0 (edgecl.warmup): teach the protocol, measure ability, teach where to ask.
        Stored, and reused by later runs with the same key (`rewarm` redoes it); recorded in the
        checkpoint and the run row. DA-GRPO then starts with a fresh optimizer."""
        c = self.config
        stored = stored_warmup(self.model.fingerprint, c, self.state.start)
        with claimed(stored, alone=self.world.size == 1):  # another run may be making it
            if c.warmup_steps > 0 and not rewarm and stored.is_dir():
                record = {**self.model.load_adapter(stored)["warmup"], "reused": str(stored)}
                self.on_event("warmup_reused", record)
                self.model.set_optimizer(c.lr)
            else:
                tasks = [get_task(t, c.verifier, c.seed) for t in c.warmup_tasks or []]
                record = phase0(self.model, tasks or self.tasks, c, self.on_event)
                self.model.set_optimizer(c.lr)
                if record["ran"]:
                    record["made"] = now()
                    self.model.save_adapter(stored, extra={"warmup": record})
                    learner = learners.load(self.store, c.learner)
                    record["version"] = learners.publish(
                        self.store, learner, stored, "warmup", c.run_name, 0, {"warmup": True}
                    )
        self.state.warmup = record
        if c.lambda_init is None and not self.learner_lambda and self.method.dual:
            help_rate = (record.get("probe_after") or {}).get("help")
            self.state.lam = initial_lambda(self.schedules[0].at(0), help_rate)
        self.store.update_run(c.run_name, warmup=record)
        self.save()
        return record

    def save(self) -> None:
        if not self.world.is_main:
            return
        self.state.collapse = self.collapse.to_dict()
        self.state.clouds = {
            str(i): c.state_dict() for i, c in enumerate(self.clouds) if hasattr(c, "state_dict")
        }
        self.model.save_adapter(self.checkpoint, extra={"trainer_state": vars(self.state)})

    def locate(self, step: int) -> tuple[int, int]:
        """(phase index, step within the phase) of global step `step` (0-based)."""
        for index, phase in enumerate(self.config.phases):
            if step < phase.steps:
                return index, step
            step -= phase.steps
        raise IndexError(step)

    def batch(self, phase: int, phase_step: int) -> list:
        """The prompts of a step: an epoch-wise permutation fixed by (seed, phase, epoch)."""
        items = self.tasks[phase].items("train")
        out = []
        for j in range(self.config.batch_size):
            position = phase_step * self.config.batch_size + j
            epoch, index = divmod(position, len(items))
            order = np.random.default_rng([self.config.seed, phase, epoch]).permutation(len(items))
            out.append(items[order[index]])
        return out

    def run(self) -> None:
        """Train until every phase is done; Ctrl-C stops after saving the last full step."""
        try:
            with interrupts() as guard:
                while self.state.step < self.total_steps:
                    self.step(guard)
        except KeyboardInterrupt:
            if self.world.is_main:
                self.store.update_run(self.config.run_name, status="interrupted")
            raise
        if self.world.is_main:
            self.store.update_run(self.config.run_name, status="done")
            faults.point("run-done")
            version = learners.finish(
                self.store, self.config, self._checkpoint(), self.state.step, self.state.lam
            )
            faults.point("run-published")
            self.on_event("published", {"learner": self.config.learner, "version": version})
        self.on_event("done", {"step": self.state.step, "lambda": self.state.lam})

    def rollout(self, phase: int, phase_step: int) -> Rollout:
        """The step's rollout; data parallel, each rank samples its share of the prompts (with
        the seeds one process would use for them) and every rank gets the whole of it."""
        c = self.config
        task, cloud = self.tasks[phase], self.clouds[phase]
        entries = [(task, cloud, item) for item in self.batch(phase, phase_step)]
        if c.replay > 0:  # the last prompts of the batch give way to earlier tasks' (--replay)
            entries = self.replay.mix(entries, phase, self.state.step)
        mine = self.world.share(len(entries))
        seed = _step_seed(c.seed, self.state.step)
        parts, owners = [], []
        for name in dict.fromkeys(entries[j][0].name for j in mine):  # one collect per task
            js = [j for j in mine if entries[j][0].name == name]
            paid = PaidAnswers(entries[js[0]][1], self.store, c.run_name, self.state.step + 1,
                               log=self.world.is_main)  # fmt: skip
            parts.append(collect(
                self.sampler, entries[js[0]][0], [entries[j][2] for j in js],
                paid if self.method.help_allowed else None,  # edge-only: no cloud
                c.group_size, c.max_tokens, c.temperature, c.top_p,
                seed=[[seed, j] for j in js], reward_variant=c.reward_variant,
            ))  # fmt: skip
            owners.append([mine.index(j) for j in js])
        share = parts[0] if len(parts) == 1 else merge(parts, owners)
        if self.world.size == 1:
            return share
        parts = [Rollout.from_dict(d) for d in self.world.gather(share.to_dict())]
        owners = [list(range(r, len(entries), self.world.size)) for r in range(self.world.size)]
        return merge(parts, owners)

    def weights(self, rollout: Rollout, lam: float) -> np.ndarray:
        """Per-sample policy-gradient weights of the run's method (eq. 8 for DA-GRPO) for this
        rollout at dual variable lam."""
        c = self.config
        log_ratio = log_ratios(self.model, rollout) if self.method.needs_log_ratio else None
        return method_weights(self.method, rollout.scores, lam, c.group_size, self.assist(),
                              c.scale_rewards, log_ratio)  # fmt: skip

    def assist(self) -> float:
        """Hierarchical methods' reward for a right cloud answer, this (or the last) step's task."""
        phase = self.locate(min(self.state.step, self.total_steps - 1))[0]
        given, spec = self.config.assist_reward, self.config.phases[phase].task
        return assist_reward(self.tasks[phase].kind, given, spec)

    def step(self, guard=None) -> dict:
        c = self.config
        phase, phase_step = self.locate(self.state.step)
        tau = self.schedules[phase].at(phase_step)
        started = time.perf_counter()
        rollout = self.rollout(phase, phase_step)
        faults.point("step-sampled")
        lam = self.state.lam
        weights = self.weights(rollout, lam)
        start = time.perf_counter()
        loss, kl = 0.0, None
        # No signal, no update (Adam turns float noise into full steps); the anchor's pull is a
        # signal once the policy has left it, so a policy whose groups are all alike moves back.
        if np.any(weights != 0) or (self.anchor is not None and self.state.kl > 1e-6):
            mine = set(self.world.share(len(rollout.items)))  # each rank: its own samples
            rows = [k for k, o in enumerate(rollout.completions) if o.prompt_index in mine]
            prompts = [rollout.prompt_ids[rollout.completions[k].prompt_index] for k in rows]
            targets = [rollout.completions[k].token_ids for k in rows]
            w, k = weights[rows], [c.kl_coef / len(rollout.items)] * len(rows)  # like eq. 8
            more = distill_rows(c, self.general, self.state.step)  # self-distillation, no KL
            share = self.world.share(len(more[1]))  # each rank its part, as with the samples
            prompts += [more[0][i] for i in share]
            targets += [more[1][i] for i in share]
            w, k = np.r_[w, more[2][share]], [*k, *[0.0] * len(share)]
            anchor = None if self.anchor is None else (self.anchor, k)
            drawn = [rollout.completions[r].logprobs for r in rows]
            drawn += [None] * (len(targets) - len(rows))  # the self-distillation rows
            loss = self.model.policy_gradient_step(
                prompts, targets, w, c.max_tokens, c.micro_batch, world=self.world, anchor=anchor,
                behaviour=None if self.sampler is self.model else drawn,  # importance weights
            )  # fmt: skip
            loss = float(self.world.sum([loss])[0])
            if anchor is not None:  # mean per-token KL to the anchor, over all ranks' samples
                kl = float(self.world.sum([self.model.anchor_kl])[0]) / self.world.size
                self.state.kl = kl
        seconds_grad = time.perf_counter() - start
        faults.point("step-updated")
        rewards, costs = rewards_and_costs(self.method, rollout.scores, self.assist())
        j_c = batch_cost_ratio(costs)
        new_lam = dual_update(lam, j_c, tau, c.dual_lr, LAMBDA_MAX) if self.method.dual else 0.0
        self.state.ratios = [*self.state.ratios, j_c][-RATIO_WINDOW:]
        n_help = sum(s.help for s in rollout.scores)
        collapsed = self.collapse.update(n_help, tau, new_lam)
        self.state.step += 1
        self.state.lam = new_lam
        row = _step_row(self, rollout, phase, tau, lam, new_lam, j_c, loss, kl, n_help, collapsed,
                        seconds_grad, time.perf_counter() - started, rewards)  # fmt: skip
        # The step's rows first, then the checkpoint: a kill between the two replays the step
        # on --resume, which finds its cloud calls in the log and reuses their answers.
        with guard.critical() if guard else nothing():
            if self.world.is_main:
                calls = [dict(r, step=self.state.step) for r in rollout.cloud_calls]
                self.store.record_step(c.run_name, row, rollout.sample_rows(c.group_size), calls)
            faults.point("step-rows-written")
            self.save()
        self.last_rollout = rollout
        self.on_event("step", row)
        return row


def rollout_sampler(config: TrainConfig, model, world: World):
    """The model, or with `--rollouts llamacpp` its GGUF on llama.cpp (llamacpp_batch)."""
    if config.rollouts == "mlx":
        return model
    from edgecl.backends.llamacpp_batch import LlamaCppRollouts
    from edgecl.models.registry import ensure_gguf, resolve_model

    threads = world.cores_per_rank()  # a collective: before anything that may fail
    return LlamaCppRollouts(model, ensure_gguf(resolve_model(config.model)), threads)


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919 + 17) % (2**31)


def _step_row(
    trainer, rollout, phase, tau, lam, new_lam, j_c, loss, kl, n_help, collapsed, seconds_grad,
    seconds, rewards,
) -> dict:  # fmt: skip
    n = len(rollout.scores)
    sample_s = rollout.seconds["sample"]
    return {
        "step": trainer.state.step, "phase": str(phase + 1), "task": trainer.tasks[phase].name,
        "tau": tau, "lambda_before": lam, "lambda_after": new_lam, "j_c": j_c,
        "j_c_mean": float(np.mean(trainer.state.ratios)),
        "cloud_ratio": n_help / n,
        "mean_reward": float(np.mean(rewards)),  # the reward the method trains on
        "accuracy": sum(rollout.correct) / n,
        "loss": loss, "kl": kl, "n_help": n_help, "n_cloud_calls": len(rollout.cloud_calls),
        "seconds": seconds, "seconds_sample": sample_s, "seconds_score": rollout.seconds["score"],
        "seconds_cloud": rollout.seconds["cloud"], "seconds_grad": seconds_grad,
        "tokens": rollout.n_tokens,
        "tokens_per_s": rollout.n_tokens / max(sample_s, 1e-9),
        "collapsed": int(collapsed),
    }  # fmt: skip
