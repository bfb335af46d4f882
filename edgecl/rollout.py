"""One batch of collaborative responses (Algorithm 1, lines 8-17), shared by training and eval.

For each prompt: G local samples; if any asks for help, ONE cloud call whose answer is shared by
all help-seeking samples; compose; score r and c on the composed responses.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from edgecl import faults
from edgecl.backends.base import Completion
from edgecl.cloud.base import CloudReply
from edgecl.core.protocol import STOP_STRINGS, build_messages, requests_help
from edgecl.core.rewards import SampleScore, score_sample
from edgecl.tasks.base import MAX_STEPS, Item


@dataclass
class Rollout:
    items: list[Item]
    prompt_ids: list[list[int]]
    completions: list[Completion]  # prompt-major, G per prompt
    scores: list[SampleScore]
    cloud_calls: list[dict] = field(default_factory=list)  # one row per new real cloud call
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rewards(self) -> list[float]:
        return [s.reward for s in self.scores]

    @property
    def correct(self) -> list[bool]:
        """Per sample: the composed response is well formatted and right (r = 1 in eq. 13)."""
        return [s.correct for s in self.scores]

    @property
    def costs(self) -> list[float]:
        return [s.cost for s in self.scores]

    @property
    def n_tokens(self) -> int:
        return sum(len(c.token_ids) for c in self.completions)

    def sample_rows(self, group_size: int) -> list[dict]:
        """The `samples` table's rows of this rollout (the replay log)."""
        rows = []
        for i, (c, s) in enumerate(zip(self.completions, self.scores)):
            item = self.items[c.prompt_index]
            rows.append(
                {"prompt_index": i // group_size, "sample_index": i % group_size,
                 "item_id": item.id, "prompt": item.question, "response": c.text,
                 "composed": s.composed, "help": int(s.help), "reward": s.reward, "cost": s.cost,
                 "truncated": int(c.truncated), "n_tokens": len(c.token_ids)}
            )  # fmt: skip
        return rows

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Rollout:
        items = [Item(**{**i, "choices": tuple(i["choices"]) if i["choices"] else None})
                 for i in d["items"]]  # fmt: skip
        return cls(
            items,
            d["prompt_ids"],
            [Completion(**c) for c in d["completions"]],
            [SampleScore(**s) for s in d["scores"]],
            d["cloud_calls"],
            d["seconds"],
        )


class PaidAnswers:
    """A cloud that first looks for an answer already paid for at this step (a step replayed
    after a resume): it is reused, not asked again. A simulated cloud is always asked: it costs
    nothing, and its own restored state makes the replay exact. With `log` (the process that
    writes the store), a real call is logged the moment it returns."""

    def __init__(self, cloud, store, run: str, step: int, log: bool = True) -> None:
        self.cloud, self.store, self.run, self.step, self.log = cloud, store, run, step, log
        self.name = cloud.name

    def complete(self, messages: list[dict], item=None) -> CloudReply:
        if not getattr(self.cloud, "simulated", False) and item is not None:
            text = self.store.paid_answer(self.run, self.step, item.id)
            if text is not None:
                return CloudReply(text, True, "reused", 0.0, 0, reused=True)
        reply = self.cloud.complete(messages, item)
        if self.log and not reply.simulated and item is not None:
            row = {"item_id": item.id, "cloud": self.name, **reply.log_fields(),
                   "text": reply.text if reply.ok else None}  # fmt: skip
            reply.call_id = self.store.log_call(self.run, self.step, row)
            faults.point("cloud-called")
        return reply


def merge(parts: list[Rollout], owners: list[list[int]]) -> Rollout:
    """One rollout of a whole batch from the shares that data-parallel ranks sampled: `owners[r]`
    are the batch positions of rank r's prompts. Prompts and their G completions are put back
    in batch order; seconds are the slowest rank's."""
    n = sum(len(o) for o in owners)
    slot: list[tuple[int, int]] = [(0, 0)] * n  # position -> (rank, its local prompt index)
    for rank, positions in enumerate(owners):
        for local, position in enumerate(positions):
            slot[position] = (rank, local)
    items, prompt_ids, completions, scores = [], [], [], []
    for position, (rank, local) in enumerate(slot):
        part = parts[rank]
        items.append(part.items[local])
        prompt_ids.append(part.prompt_ids[local])
        for k, c in enumerate(part.completions):
            if c.prompt_index == local:
                completions.append(Completion(**{**asdict(c), "prompt_index": position}))
                scores.append(part.scores[k])
    by_item = {item.id: k for k, item in enumerate(items)}
    calls = sorted((c for p in parts for c in p.cloud_calls), key=lambda c: by_item[c["item_id"]])
    seconds = {k: max(p.seconds.get(k, 0.0) for p in parts) for k in parts[0].seconds}
    return Rollout(items, prompt_ids, completions, scores, calls, seconds)


def log_ratios(model, rollout: Rollout) -> np.ndarray:
    """Per sample: log pi(y|x) - log pi_base(y|x), summed over its tokens, where pi_base is the
    model with the adapter switched off (GVPO's reference policy)."""
    prompts = [rollout.prompt_ids[o.prompt_index] for o in rollout.completions]
    targets = [o.token_ids for o in rollout.completions]
    policy = model.sequence_logprobs(prompts, targets)
    with model.adapter_disabled():
        base = model.sequence_logprobs(prompts, targets)
    return np.array([a.sum() - b.sum() for a, b in zip(policy, base)])


def answer_of(parsed, kind: str) -> str | None:
    """What the task's verifier checks: the code block for code, else the boxed content."""
    return parsed.code if kind == "code" else parsed.boxed


def collect(
    model,
    task,
    items: list[Item],
    cloud,
    group_size: int,
    max_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    seed: int = 0,
    reward_variant: str = "literal",
) -> Rollout:
    """Sample, ask the cloud once per help-seeking group, compose and score. With no `cloud`
    (edge-only), a help request is scored as a failed call: r = 0 if well formatted."""
    seconds = {"sample": 0.0, "cloud": 0.0, "score": 0.0}
    messages = [build_messages(task.kind, item.question, item.choices) for item in items]
    prompt_ids = [model.chat_ids(m) for m in messages]
    start = time.perf_counter()
    completions = model.sample(
        prompt_ids, group_size, max_tokens, temperature, top_p, stop=STOP_STRINGS, seed=seed
    )
    seconds["sample"] = time.perf_counter() - start
    scores, calls = [], []
    for p, item in enumerate(items):
        group = completions[p * group_size : (p + 1) * group_size]
        reply = None
        if cloud is not None and any(requests_help(c.text) for c in group):
            start = time.perf_counter()
            reply = cloud.complete(messages[p], item)
            seconds["cloud"] += time.perf_counter() - start
            if not reply.reused:
                text = reply.text if reply.ok else None
                call = {"item_id": item.id, "cloud": cloud.name, **reply.log_fields(), "text": text}
                calls.append(call if reply.call_id is None else {**call, "id": reply.call_id})
        start = time.perf_counter()

        def is_correct(parsed, item=item) -> bool:
            answer = answer_of(parsed, task.kind)
            return answer is not None and task.verify(item, answer)

        for c in group:
            score = score_sample(
                c.text,
                task.kind,
                MAX_STEPS[task.kind],
                c.truncated,
                is_correct,
                cloud_text=reply.text if reply is not None and reply.ok else None,
                cloud_failed=reply is None or not reply.ok,  # no cloud: a help request fails
                variant=reward_variant,
            )
            scores.append(score)
        seconds["score"] += time.perf_counter() - start
    return Rollout(items, prompt_ids, completions, scores, calls, seconds)
