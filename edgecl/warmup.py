"""Phase 0: teach the response protocol, then where to ask for help, from measured ability.

Measured on the bundled SmolLM2-135M-Instruct (paper system prompt, T=1.0, two-digit addition):
the step format in 0/96 samples, a boxed answer in 0/96, the trigger in 1/96, so eq. 13 gives
no reward and DA-GRPO has nothing to learn from. Three phases fix that:

1. format: supervised LoRA steps on step-formatted solutions of train items (no help requests);
2. ability: `ability_k` samples of `ability_items` train items per task, which gives each item's
   local success rate p (the model can only be measured once it follows the format);
3. help: supervised steps on those items that demonstrate the help request with probability
   0.8 (1 - p) and a solution otherwise, so the model asks where it fails, for a user's JSONL
   task as much as for a built-in one, and only *sometimes*, even where it always fails: groups
   of G samples come out mixed, which is what gives lambda something to act on.

Every supervised batch also holds `general_rows` of the base model's own answers to general
prompts (edgecl.retention), so the adapter keeps plain chat.

    edgecl learn --task math --budget 0.3            # probes, warms up if needed, then DA-GRPO
    python benchmarks/warmup.py                      # the probes and per-level ability, measured

A finished warm-up is stored in the data dir under a key of the model, the tasks and the
warm-up settings (`stored_warmup`); later runs with the same key load it instead of warming up
again (`edgecl learn --rewarm` redoes it).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from edgecl.retention import base_answers
from edgecl.rollout import answer_of
from edgecl.tasks.base import MAX_STEPS, Item, stable_hash

RECIPE_VERSION = 4  # bump when the demonstrations or the recipe change: stored warm-ups go stale
# The run settings that shape a warm-up: runs that agree on these (and on model and tasks) share it.
SETTINGS = (
    "warmup_steps", "help_steps", "warmup_batch_size", "warmup_lr", "general_rows",
    "ability_items", "ability_k", "lora_rank", "lora_alpha", "lora_layers", "seed",
    "probe_size", "max_tokens", "format_threshold", "verifier",
)  # fmt: skip


# Even an item the model never solves is shown a local answer 1 time in 5: a policy that always
# asks there gives groups of G help requests, whose cost advantages are all 0, so lambda could
# never bring the cloud ratio below the share of such items.
HELP_CEILING = 0.8
HELP_MIN = 0.05  # below this help rate in the probe, the help phase runs


def stored_warmup(model_fingerprint: str, config, start: str | None = None) -> Path:
    """Where the warm-up for this base model, starting adapter (a learner's version, by its
    weights; None: none), tasks (a JSONL file by its content) and settings is stored; the same
    on any machine."""
    tasks = sorted(map(task_key, config.warmup_tasks or [p.task for p in config.phases]))
    identity = {"recipe": RECIPE_VERSION, "model": model_fingerprint, "tasks": tasks}
    if start is not None:
        identity["start"] = hashlib.sha256(
            (Path(start) / "adapters.safetensors").read_bytes()
        ).hexdigest()
    identity.update({k: getattr(config, k) for k in SETTINGS})
    return paths.data_dir() / "warmups" / stable_hash(json.dumps(identity, sort_keys=True))[:16]


@contextmanager
def claimed(stored: Path, alone: bool = True) -> Iterator[None]:
    """Held while the warm-up `stored` is looked up or made: another run that needs it (two bench
    jobs at once) waits, then reuses it. Only a run `alone` (not --ranks) takes the lock: ranks
    run phase 0 together, and one that waited would split them."""
    if not alone:
        yield
        return
    with paths.locked(stored.with_suffix(".lock")):
        yield


def task_key(spec: str) -> str:
    """A task as the warm-up's key knows it: its name, or a JSONL file by its content. The key
    sorts them (and phase 0 its tasks), so a sequence and its reverse share one warm-up."""
    return stable_hash(Path(spec).read_text()) if Path(spec).is_file() else spec.strip().lower()


def phase0(model, tasks: list, config, on_event: Callable[[str, dict], None]) -> dict:
    """The three phases (module docstring): the format phase only when the probe's format is
    below `config.format_threshold`, the ability and help phases only after it or when the
    model asks on less than HELP_MIN of the probe. Returns what it did."""
    c, tasks = config, sorted(tasks, key=lambda t: t.name)  # the same for a sequence's reverse
    record: dict = {"ran": False}
    if c.warmup_steps <= 0:
        return record
    record["probe_before"] = probe(model, tasks, c.probe_size, c.max_tokens, c.seed)
    on_event("probe", record["probe_before"])
    general = base_answers(model)  # (with any adapter switched off)
    rng = np.random.default_rng([c.seed, 11])
    model.set_optimizer(c.warmup_lr)

    def train(phase: str, steps: int, pick: Callable[[], tuple]) -> dict:
        def report(k: int, loss: float) -> None:
            on_event("warmup", {"phase": phase, "step": k, "of": steps, "loss": loss})

        return supervised(
            model, pick, general, steps, c.warmup_batch_size, c.general_rows, rng, report
        )

    formatted = record["probe_before"]["format"] >= c.format_threshold
    if not formatted:
        pool = [(t, it) for t in tasks for it in t.items("train")]
        record["format"] = train("format", c.warmup_steps, lambda: _solution(pool, rng))
    # A model that follows the format and already asks (a learner's adapter from an earlier
    # task) keeps its help behaviour: DA-GRPO adjusts it from there.
    if c.help_steps > 0 and (not formatted or record["probe_before"]["help"] < HELP_MIN):
        measured = ability(model, tasks, c.ability_items, c.ability_k, c.max_tokens, c.seed)
        record["ability"] = measured["levels"]
        on_event("ability", measured["levels"])
        rates = measured["items"]
        record["help"] = train("help", c.help_steps, lambda: _by_ability(rates, rng))
    record["ran"] = "format" in record or "help" in record
    if not record["ran"]:
        return record
    record["probe_after"] = probe(model, tasks, c.probe_size, c.max_tokens, c.seed + 1, group=4)
    on_event("probe", record["probe_after"])
    return record


def solution(task, item: Item) -> str:
    """A local answer to `item` in the protocol: its gold steps and gold answer."""
    return format_response(task.gold_steps(item)[: MAX_STEPS[task.kind]], task.gold_answer(item))


def help_request(task, item: Item) -> str:
    """A help request for `item`: its first gold step, then the trigger."""
    return format_help_request(task.gold_steps(item)[:1])


def _solution(pool: list, rng: np.random.Generator) -> tuple:
    task, item = pool[int(rng.integers(len(pool)))]
    return task, item, solution(task, item)


def _by_ability(rates: list, rng: np.random.Generator) -> tuple:
    """A probed item, demonstrated as a help request with probability HELP_CEILING x (1 - its
    success rate), else as a solution."""
    task, item, p = rates[int(rng.integers(len(rates)))]
    asks = rng.random() < HELP_CEILING * (1.0 - p)
    return task, item, help_request(task, item) if asks else solution(task, item)


def supervised(
    model,
    pick: Callable[[], tuple],
    general: list,
    steps: int,
    batch_size: int,
    general_rows: int,
    rng: np.random.Generator,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """`steps` supervised LoRA steps (mean token NLL): each batch holds `batch_size` task rows
    from `pick()` -> (task, item, target text) and `general_rows` of the base model's own
    answers to general prompts."""
    eos = sorted(model.eos_ids)[:1]
    losses, start = [], time.perf_counter()
    for step in range(steps):
        prompts, targets = [], []
        for _ in range(batch_size):
            task, item, text = pick()
            prompts.append(model.chat_ids(build_messages(task.kind, item.question, item.choices)))
            targets.append(model.tokenizer.encode(text, add_special_tokens=False) + eos)
        for k in rng.choice(len(general), size=min(general_rows, len(general)), replace=False):
            prompts.append(general[k][0])
            targets.append(general[k][1])
        n_tokens = sum(len(t) for t in targets)
        loss = model.policy_gradient_step(prompts, targets, [1.0] * len(targets), n_tokens)
        losses.append(loss)
        if on_step:
            on_step(step + 1, loss)
    return {
        "steps": steps,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "seconds": time.perf_counter() - start,
    }


def ability(model, tasks: list, n_items: int, k: int, max_tokens: int, seed: int = 0) -> dict:
    """Local success rate of `k` samples (T=1) on up to `n_items` train items of each task.

    Returns "items": [(task, item, rate)] and "levels": per level the items, their mean rate
    and the share of items with 0 < rate < 1.
    """
    rng = np.random.default_rng([seed, 13])
    picked = []
    for task in tasks:
        items = task.items("train")
        order = rng.permutation(len(items))[:n_items]
        picked.extend((task, items[i]) for i in order)
    prompts = [model.chat_ids(build_messages(t.kind, it.question, it.choices)) for t, it in picked]
    outs = model.sample(prompts, k, max_tokens, 1.0, stop=STOP_STRINGS, seed=seed)
    rates, levels = [], defaultdict(list)
    for i, (task, item) in enumerate(picked):
        group = outs[i * k : (i + 1) * k]
        rate = sum(_local_correct(task, item, o) for o in group) / k
        rates.append((task, item, rate))
        levels[_level(task, item)].append(rate)
    summary = {
        level: {"n": len(r), "success": float(np.mean(r)), "mixed": sum(0 < x < 1 for x in r)}
        for level, r in sorted(levels.items())
    }
    return {"items": rates, "levels": summary}


def _local_correct(task, item: Item, out) -> bool:
    parsed = parse_response(out.text, task.kind, truncated=out.truncated)
    answer = answer_of(parsed, task.kind)
    return bool(
        parsed.well_formatted
        and not parsed.requests_help
        and answer is not None
        and task.verify(item, answer)
    )


def _level(task, item: Item) -> str:
    return f"{task.name}/{item.difficulty}" if item.difficulty else task.name


def probe(
    model,
    tasks: list,
    n: int,
    max_tokens: int,
    seed: int = 0,
    temperature: float = 1.0,
    group: int = 1,
) -> dict:
    """Sample `group` responses for `n` train items (spread over the tasks); measure the protocol.

    Returns format compliance (well formatted, answer or help) and, per level, the samples,
    formatted, help requests, correct local answers and (group > 1) the groups that mix help
    requests with local answers; plus the sampling speed.
    """
    rng = np.random.default_rng([seed, 7])
    picked = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        items = task.items("train")
        picked.append((task, items[int(rng.integers(len(items)))]))
    prompts = [model.chat_ids(build_messages(t.kind, it.question, it.choices)) for t, it in picked]
    start = time.perf_counter()
    outs = model.sample(prompts, group, max_tokens, temperature, stop=STOP_STRINGS, seed=seed)
    seconds = time.perf_counter() - start
    levels: dict = defaultdict(lambda: {"n": 0, "format": 0, "help": 0, "correct": 0, "mixed": 0})
    formatted = 0
    for i, (task, item) in enumerate(picked):
        row = levels[_level(task, item)]
        helps = []
        for out in outs[i * group : (i + 1) * group]:
            parsed = parse_response(out.text, task.kind, truncated=out.truncated)
            row["n"] += 1
            row["format"] += parsed.well_formatted
            row["help"] += parsed.requests_help
            row["correct"] += _local_correct(task, item, out)
            helps.append(parsed.requests_help)
            formatted += parsed.well_formatted
        row["mixed"] += group > 1 and 0 < sum(helps) < group
    total = len(outs)
    report = {"n": total, "group": group, "format": formatted / max(total, 1)}
    report["help"] = sum(r["help"] for r in levels.values()) / max(total, 1)
    report["levels"] = dict(sorted(levels.items()))
    report["tokens_per_s"] = sum(len(o.token_ids) for o in outs) / max(seconds, 1e-9)
    return report
