"""General ability outside the tasks: the base model's own answers, kept and measured.

`general_prompts()` are 60 short instructions, facts and chats written for edgecl (none is a
task item): every third one is held out, the other 40 are for distillation.
`base_answers()` are the base model's greedy answers, without the protocol system prompt,
stored per model in the data dir. They serve twice:

- the warm-up and DA-GRPO mix the "distill" answers in as self-distillation rows (the adapter
  is trained to keep saying what the base model said), so learning the protocol does not wipe
  out plain chat;
- `retention()` measures what an adapter kept on the "held_out" prompts: the mean per-token
  log-likelihood of the base answers under the adapted model against the base model's, and
  how many of the adapted model's own answers degenerate into a repeated token or tag (with
  and without the protocol system prompt).

    python benchmarks/budget.py report       # retention of the warm-up and of each run
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from edgecl import paths
from edgecl.core.protocol import SYSTEM_PROMPT

PROMPTS_FILE = Path(__file__).parent / "tasks" / "data" / "general_prompts.txt"
ANSWER_TOKENS = 48  # long enough to show degeneration, short enough for CI's tiny runs

# A unit of 1-16 characters repeated four or more times in a row ("<br><br><br><br>", "a a a a").
_REPEAT = re.compile(r"(\S.{0,15}?)(?:\s*\1){3,}", re.S)


SPLITS = ("all", "distill", "held_out")


def general_prompts(split: str = "all") -> list[str]:
    """The general prompts: all 60, the 40 used for distillation, or the 20 held out."""
    lines = PROMPTS_FILE.read_text().splitlines()
    prompts = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if split == "all":
        return prompts
    held_out = split == "held_out"
    return [p for k, p in enumerate(prompts) if (k % 3 == 2) == held_out]


def chat(prompt: str, protocol: bool = False) -> list[dict]:
    """A one-turn chat; `protocol` puts the paper's system prompt first."""
    system = [{"role": "system", "content": SYSTEM_PROMPT}] if protocol else []
    return [*system, {"role": "user", "content": prompt}]


def degenerate(text: str) -> bool:
    """True if `text` falls into a loop: the same short unit four or more times in a row."""
    return bool(_REPEAT.search(text))


def base_answers(
    model, split: str = "distill", max_tokens: int = ANSWER_TOKENS
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, answer ids) of the base model's greedy answers to a split of the prompts.

    Any attached adapter is switched off meanwhile. Stored per model fingerprint, so every
    later call is a file read.
    """
    path = paths.data_dir() / "general" / f"{model.fingerprint[:16]}-{split}-{max_tokens}.json"
    if path.is_file():
        return [(p, a) for p, a in json.loads(path.read_text())]
    prompts = [model.chat_ids(chat(p)) for p in general_prompts(split)]
    with model.adapter_disabled():
        outs = model.sample(prompts, 1, max_tokens, temperature=0.0)
    pairs = [(list(p), list(o.token_ids)) for p, o in zip(prompts, outs)]
    paths.write_json(path, pairs)  # data-parallel ranks may both write it
    return pairs


def mean_loglik(model, pairs: list[tuple[list[int], list[int]]]) -> float:
    """Mean per-token log-likelihood of the answers under `model` (all tokens pooled)."""
    out = model.sequence_logprobs([p for p, _ in pairs], [a for _, a in pairs])
    return float(np.concatenate(out).mean())


def retention(model, pairs, base_loglik: float, max_tokens: int = ANSWER_TOKENS) -> dict:
    """What the adapted `model` kept: log-likelihood drop of the base answers and degeneration.

    `pairs` are `base_answers(model, "held_out")` (answers the adapter was never trained on)
    and `base_loglik` their `mean_loglik` with the adapter disabled. drop = (base - adapted) /
    |base|: 0.1 means the base answers became 10% less likely per token (in log space).
    """
    adapted = mean_loglik(model, pairs)
    report = {
        "base_loglik": base_loglik,
        "adapted_loglik": adapted,
        "drop": (base_loglik - adapted) / abs(base_loglik),
        "n": len(pairs),
    }
    for protocol in (False, True):
        held_out = general_prompts("held_out")
        prompts = [model.chat_ids(chat(p, protocol)) for p in held_out]
        outs = model.sample(prompts, 1, max_tokens, temperature=0.0)
        bad = [(p, o.text) for p, o in zip(held_out, outs) if degenerate(o.text)]
        key = "protocol" if protocol else "plain"
        report[f"degenerate_{key}"] = len(bad)
        report[f"examples_{key}"] = bad[:3]
    return report
