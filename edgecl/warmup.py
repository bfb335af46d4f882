"""Phase 0: teach the response protocol to a model that cannot follow it yet.

Measured on the bundled SmolLM2-135M-Instruct (paper system prompt, T=1.0, two-digit addition):
the step format in 0/96 samples, a boxed answer in 0/96, the trigger in 1/96, so eq. 13 gives
no reward and DA-GRPO has nothing to learn from. A few dozen supervised LoRA steps on
demonstrations made from gold answers fix that: step-formatted solutions for easy items, one
short step and the help trigger for items far beyond reach.

    edgecl learn --task math --budget 0.3            # probes, warms up if needed, then DA-GRPO
    python benchmarks/warmup.py                      # the probe before/after, measured

A finished warm-up is stored in the data dir under a key of the model, the tasks and the
warm-up settings (`stored_warmup`); later runs with the same key load it instead of warming up
again (`edgecl learn --rewarm` redoes it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecl import paths
from edgecl.core.protocol import (
    STOP_STRINGS,
    build_messages,
    format_help_request,
    format_response,
    parse_response,
)
from edgecl.rollout import answer_of
from edgecl.tasks.base import MAX_STEPS, Item, stable_hash

RECIPE_VERSION = 1  # bump when the demonstrations or the recipe change: stored warm-ups go stale
# The run settings that shape a warm-up: runs that agree on these (and on model and tasks) share it.
SETTINGS = (
    "warmup_steps", "warmup_batch_size", "warmup_lr", "lora_rank", "lora_alpha", "lora_layers",
    "seed", "probe_size", "max_tokens", "format_threshold", "verifier",
)  # fmt: skip


def stored_warmup(model_fingerprint: str, config) -> Path:
    """Where the warm-up for this base model, tasks (a JSONL file by its content) and settings
    is stored; the same on any machine."""
    tasks = [
        stable_hash(Path(spec).read_text()) if Path(spec).is_file() else spec.strip().lower()
        for spec in (phase.task for phase in config.phases)
    ]
    identity = {"recipe": RECIPE_VERSION, "model": model_fingerprint, "tasks": tasks}
    identity.update({k: getattr(config, k) for k in SETTINGS})
    return paths.data_dir() / "warmups" / stable_hash(json.dumps(identity, sort_keys=True))[:16]


def phase0(model, tasks: list, config, on_event: Callable[[str, dict], None]) -> dict:
    """Probe the protocol; below `config.format_threshold`, `config.warmup_steps` supervised
    steps on demonstrations, then probe again. Returns what it did ("ran", the probes, losses)."""
    c = config
    record: dict = {"ran": False}
    if c.warmup_steps > 0:
        record["probe_before"] = probe(model, tasks, c.probe_size, c.max_tokens, c.seed)
        on_event("probe", record["probe_before"])
        if record["probe_before"]["format"] < c.format_threshold:
            record.update(
                warmup(
                    model,
                    tasks,
                    c.warmup_steps,
                    c.warmup_batch_size,
                    c.warmup_lr,
                    c.seed,
                    lambda k, loss: on_event(
                        "warmup", {"step": k, "of": c.warmup_steps, "loss": loss}
                    ),
                )
            )
            record["ran"] = True
            record["probe_after"] = probe(model, tasks, c.probe_size, c.max_tokens, c.seed + 1)
            on_event("probe", record["probe_after"])
    return record


def demonstration(task, item: Item) -> str:
    """The response we want for `item`: solved in the step format, or a help request if hard."""
    steps = task.gold_steps(item)
    if item.difficulty == "hard":
        return format_help_request(steps[:1])
    return format_response(steps[: MAX_STEPS[task.kind]], task.gold_answer(item))


def probe(
    model, tasks: list, n: int, max_tokens: int, seed: int = 0, temperature: float = 1.0
) -> dict:
    """Sample one response for `n` train items (spread over the tasks) and measure the protocol.

    Returns format compliance (well formatted, answer or help), help rate and correct rate for
    easy and hard items, and the sampling speed (for the ETA).
    """
    rng = np.random.default_rng([seed, 7])
    picked = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        items = task.items("train")
        picked.append((task, items[int(rng.integers(len(items)))]))
    prompts = [model.chat_ids(build_messages(t.kind, it.question, it.choices)) for t, it in picked]
    start = time.perf_counter()
    outs = model.sample(prompts, 1, max_tokens, temperature, stop=STOP_STRINGS, seed=seed)
    seconds = time.perf_counter() - start
    counts = {"easy": [0, 0, 0, 0], "hard": [0, 0, 0, 0]}  # n, formatted, help, correct
    for (task, item), out in zip(picked, outs):
        parsed = parse_response(out.text, task.kind, truncated=out.truncated)
        answer = answer_of(parsed, task.kind)
        row = counts["hard" if item.difficulty == "hard" else "easy"]
        row[0] += 1
        row[1] += parsed.well_formatted
        row[2] += parsed.requests_help
        row[3] += bool(
            parsed.well_formatted
            and not parsed.requests_help
            and answer is not None
            and task.verify(item, answer)
        )
    total = counts["easy"][0] + counts["hard"][0]
    report = {"n": total, "format": (counts["easy"][1] + counts["hard"][1]) / max(total, 1)}
    for level, (k, formatted, helped, correct) in counts.items():
        report[level] = {"n": k, "format": formatted, "help": helped, "correct": correct}
    tokens = sum(len(o.token_ids) for o in outs)
    report["tokens_per_s"] = tokens / max(seconds, 1e-9)
    return report


def warmup(
    model,
    tasks: list,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """`steps` supervised LoRA steps (mean token NLL) on demonstrations of every task's items."""
    eos = sorted(model.eos_ids)[:1]
    pool = [(task, item) for task in tasks for item in task.items("train")]
    rng = np.random.default_rng([seed, 11])
    model.set_optimizer(learning_rate)
    losses, start = [], time.perf_counter()
    for step in range(steps):
        picks = rng.choice(len(pool), size=batch_size, replace=batch_size > len(pool))
        batch = [pool[i] for i in picks]
        prompts = [
            model.chat_ids(build_messages(t.kind, it.question, it.choices)) for t, it in batch
        ]
        targets = [
            model.tokenizer.encode(demonstration(t, it), add_special_tokens=False) + eos
            for t, it in batch
        ]
        n_tokens = sum(len(t) for t in targets)
        loss = model.policy_gradient_step(prompts, targets, [1.0] * len(batch), n_tokens)
        losses.append(loss)
        if on_step:
            on_step(step + 1, loss)
    return {
        "steps": steps,
        "batch_size": batch_size,
        "lr": learning_rate,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "seconds": time.perf_counter() - start,
    }
