"""Learning from the workload: the daemon's adaptation cycle, and what it trains on.

    edgecl daemon adapt                        # one cycle now, in the foreground
    edgecl daemon start --adapt-after 32       # the daemon runs cycles by itself

**Verifiable exchange.** A logged exchange (chat or daemon) that the cloud answered, whose
final answer (the composed response's last `<answer>`, `\\boxed{}` unwrapped) has at most
MAX_ANSWER_WORDS words: a number, an expression, a name. That answer is the reference, and the
scorer is the one of a JSONL math task (edgecl.tasks.jsonl: math-verify, else an exact match
after normalising). Prompts answered locally have no label and are not trained on, nor are long
free-form cloud answers (an exact match of prose says nothing).

**A cycle** (`cycle()`, run in its own low-priority process by the daemon):
1. the workload: the latest MAX_ITEMS verifiable exchanges, written as a JSONL task; an item's
   split (20% eval) follows a hash of its prompt, so it stays in its split across cycles;
2. DA-GRPO on its train split from the learner's current adapter and lambda, without a warm-up
   (the learner knows the format), on the reference cloud, which replays the answers the cloud
   already gave (no new cloud calls); the result is published as a candidate version, not
   current;
3. the gate, paired on the eval items, current adapter against candidate: local accuracy (greedy;
   a help request is answered again with the trigger suppressed, as chat does) and the mean
   per-token log-prob of the reference responses (edgecl.warmup.solution), which shows a
   regression even where accuracy is 0. The candidate is promoted iff it solves at least as
   many eval items as the current one and its mean log-prob is lower by at most LOGPROB_TOL of
   the current one's magnitude; otherwise it stays a version, with its numbers, and is not used;
4. the cycle is recorded in the `adaptations` table (`edgecl daemon status` shows the last).

Serving comes first: `AdaptLoop` starts the cycle process at nice 10 once `after` new verifiable
exchanges have arrived and no request has come for `idle_s` seconds, stops it (SIGSTOP) while
requests are in flight and continues it when none are, and after a promotion has the answering
thread load the new version between two requests, so none is dropped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecl import faults, paths
from edgecl import learner as learners
from edgecl.core.protocol import build_messages, extract_boxed
from edgecl.errors import EdgeclError
from edgecl.store import Store, now

MAX_ANSWER_WORDS = 8
MAX_ITEMS = 500
LOGPROB_TOL = 0.05
RETRY_S = 600  # after a failed cycle


def reference_answer(response: str | None) -> str | None:
    """The final answer of a composed response, if short enough to verify; else None."""
    if not response or "<answer>" not in response:
        return None
    body = response[response.rfind("<answer>") + len("<answer>") :].split("</answer>")[0]
    answer = (extract_boxed(body) or body).strip()
    return answer if answer and len(answer.split()) <= MAX_ANSWER_WORDS else None


def verifiable(store: Store, learner: str) -> list[dict]:
    """The latest MAX_ITEMS verifiable exchanges of `learner`, as JSONL task rows."""
    rows = []
    for x in store.exchanges(learner):
        answer = reference_answer(x["response"]) if x["cloud"] else None
        if answer is not None and x["prompt"]:
            rows.append({"id": f"x{x['id']}", "prompt": x["prompt"], "answer": answer})
    return rows[-MAX_ITEMS:]


def new_since_last_cycle(store: Store, learner: str) -> int:
    """Verifiable exchanges logged after the ones the last cycle trained on."""
    done = store.adaptations(learner)
    last = done[-1]["last_exchange"] if done else 0
    return sum(int(r["id"][1:]) > (last or 0) for r in verifiable(store, learner))


def gate_scores(model, task, max_tokens: int) -> dict:
    """Per eval item: solved locally (list of bools), and the mean per-token log-prob of the
    reference responses, for the adapter attached to `model`."""
    from edgecl.cloud import make_cloud
    from edgecl.evaluate import evaluate
    from edgecl.warmup import solution

    report = evaluate(model, task, make_cloud("reference", task=task), None, max_tokens)
    items = task.items("eval")
    prompts = [model.chat_ids(build_messages(task.kind, i.question, i.choices)) for i in items]
    encode = model.tokenizer.encode
    answers = [encode(solution(task, i), add_special_tokens=False) for i in items]
    logprobs = np.concatenate(model.sequence_logprobs(prompts, answers))
    return {"solved": [not r["would_fail"] for r in report["items"]],
            "logprob": float(logprobs.mean())}  # fmt: skip


def decide(current: dict, candidate: dict) -> tuple[bool, str]:
    """The gate: (promote?, why), from two gate_scores() on the same items."""
    a, b = np.array(current["solved"]), np.array(candidate["solved"])
    n, wins, losses = len(a), int((b & ~a).sum()), int((a & ~b).sum())
    solved = f"solves {b.sum()}/{n} eval items against {a.sum()}/{n} ({wins} won, {losses} lost)"
    floor = current["logprob"] - LOGPROB_TOL * abs(current["logprob"])
    logprob = f"reference log-prob {candidate['logprob']:.3f} against {current['logprob']:.3f}"
    if losses > wins:
        return False, f"accuracy regressed: {solved}"
    if candidate["logprob"] < floor:
        return False, f"{logprob}, below the floor {floor:.3f}"
    return True, f"{solved}; {logprob}"


def cycle(learner: str, tau: float, steps: int = 10, batch_size: int = 4, group_size: int = 4,
          max_tokens: int = 96, model: str | None = None,
          on_event: Callable[[str, dict], None] = lambda k, d: None) -> dict:  # fmt: skip
    """One adaptation cycle (the module docstring); returns its `adaptations` row."""
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.config import Phase, TrainConfig
    from edgecl.models.registry import resolve_model
    from edgecl.tasks.jsonl import JsonlTask
    from edgecl.train import Trainer

    store = Store()
    try:
        me = learners.load(store, learner)
        if me is None or me.current is None:
            raise EdgeclError(f"learner {learner!r} has no adapter yet: run `edgecl learn` first")
        rows = verifiable(store, learner)
        number = len(store.adaptations(learner)) + 1
        path = paths.data_dir() / "workload" / learner / f"cycle-{number:04d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        task = JsonlTask(path)
        if len(task.items("train")) < batch_size or not task.items("eval"):
            raise EdgeclError(f"{len(rows)} verifiable exchanges are too few to adapt on: "
                              "the cloud must have answered more of them")  # fmt: skip
        row = {"learner": learner, "started": now(), "exchanges": len(rows),
               "last_exchange": int(rows[-1]["id"][1:]), "from_version": me.current,
               "run": f"adapt-{learner}-{number:04d}-{os.getpid()}"}  # fmt: skip
        config = TrainConfig(row["run"], [Phase(str(path), str(tau), steps)], model=model,
                             learner=learner, batch_size=batch_size, group_size=group_size,
                             max_tokens=max_tokens, warmup_steps=0, promote=False)  # fmt: skip
        entry = resolve_model(model)
        local = MLXModel.load(entry.mlx_dir, entry.name)
        published = {}

        def events(kind: str, data: dict) -> None:
            published.update(data if kind == "published" else {})
            on_event(kind, data)

        trainer = Trainer(config, local, store, on_event=events)
        trainer.prepare()
        trainer.run()
        row["candidate"] = published["version"]
        local.load_adapter(learners.version_path(me, row["candidate"]))
        if faults.injected("adapt-regression"):  # tests: a candidate that got worse
            _regress(local)
        after = gate_scores(local, task, max_tokens)
        local.load_adapter(learners.version_path(me))
        before = gate_scores(local, task, max_tokens)
        promoted, reason = decide(before, after)
        if promoted:
            me = learners.load(store, learner)
            me.lam = trainer.state.lam
            learners.use(store, me, row["candidate"])
        details = {"before": before, "after": after, "lambda": trainer.state.lam}
        row.update(finished=now(), promoted=promoted, reason=reason, details=details)
        row["id"] = store.add_adaptation(row)
        return row
    finally:
        store.close()


def _regress(model) -> None:
    """Replace the attached adapter's lora_b by large noise: an injected regression."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    params = tree_flatten(model.model.trainable_parameters())
    key = mx.random.key(0)
    noise = [(k, mx.random.normal(v.shape, key=key)) for k, v in params if "lora_b" in k]
    model.model.load_weights(noise, strict=False)


class AdaptLoop:
    """The daemon's scheduler of cycles (the module docstring). `busy()` says whether requests
    are in flight, `last_request()` when the last one ended (time.time()), and `swap(path)` has
    the answering thread load a promoted version."""

    def __init__(self, learner: str, after: int, idle_s: float, cycle_args: list[str],
                 busy: Callable[[], bool], last_request: Callable[[], float],
                 swap: Callable[[Path], None], log: Callable[[str], None] = print,
                 poll_s: float = 1.0) -> None:  # fmt: skip
        self.learner, self.after, self.idle_s, self.cycle_args = learner, after, idle_s, cycle_args
        self.busy, self.last_request, self.swap, self.log = busy, last_request, swap, log
        self.poll_s, self.proc, self.paused, self.retry_at = poll_s, None, False, 0.0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="edgecl-adapt", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop scheduling; a cycle in progress is interrupted (its run stays resumable)."""
        self.stopping.set()
        self.thread.join()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait()

    def _loop(self) -> None:
        store = Store()  # this thread's own connection
        try:
            while not self.stopping.wait(self.poll_s):
                try:
                    self._tick(store)
                except Exception as e:  # a failed cycle must not take serving down
                    self.log(f"adaptation: {type(e).__name__}: {e}")
                    self.proc = None
        finally:
            store.close()

    def _tick(self, store: Store) -> None:
        if self.proc is None:
            idle = time.time() - self.last_request() >= self.idle_s
            if not idle or self.busy() or time.time() < self.retry_at:
                return  # the log is read only when a cycle could start
            fresh = new_since_last_cycle(store, self.learner)
            if fresh >= self.after:
                self.log(f"adaptation: starting a cycle on {fresh} new verifiable exchanges")
                # `nice`, not a preexec_fn: that would fork() under a chat answer's matmul, and
                # OpenBLAS's fork handler would stop the threads that matmul waits on
                cmd = ["nice", "-n", "10", sys.executable, "-m", "edgecl.cli.main", "daemon",
                       "adapt", "--learner", self.learner, *self.cycle_args]  # fmt: skip
                self.proc = subprocess.Popen(cmd, stdout=sys.stdout, stderr=sys.stderr)
            return
        if self.proc.poll() is not None:
            code, self.proc, self.paused = self.proc.returncode, None, False
            done = store.adaptations(self.learner)
            if code != 0 or not done:
                self.retry_at = time.time() + RETRY_S
                self.log(f"adaptation: the cycle failed (exit {code}); next try in {RETRY_S} s")
                return
            last = done[-1]
            verdict = "promoted" if last["promoted"] else "rejected"
            self.log(f"adaptation: candidate version {last['candidate']} {verdict}: "
                     f"{last['reason']}")  # fmt: skip
            if last["promoted"]:
                me = learners.load(store, self.learner)
                self.swap(learners.version_path(me))
            return
        if self.busy() != self.paused:  # serving comes first
            self.paused = not self.paused
            self.proc.send_signal(signal.SIGSTOP if self.paused else signal.SIGCONT)
