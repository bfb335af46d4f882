"""A stand-in for a strong cloud model in offline experiments: it answers from the gold data.

Its answers are wrong with probability 1 - accuracy, drawn from (seed, item id, how many
times that item was asked), so a resumed run that restores `state_dict()` gets the same
answers it would have got without the crash. Output always labels it as simulated.
"""

from __future__ import annotations

import random
import string
import time
from fractions import Fraction
from typing import Any

from edgecl.cloud.base import CloudReply
from edgecl.core.protocol import format_response
from edgecl.errors import EdgeclError


class ReferenceCloud:
    """Answers with task.gold_answer(item) in the protocol format, wrong at rate 1 - accuracy."""

    simulated = True

    def __init__(self, task: Any, accuracy: float = 1.0, seed: int = 0) -> None:
        if not 0.0 <= accuracy <= 1.0:
            raise EdgeclError(f"reference accuracy {accuracy} is outside [0, 1]: use e.g. 0.8")
        if task.kind not in ("math", "code", "qa"):
            raise EdgeclError(
                f"the reference cloud knows math, code and qa tasks, not {task.kind!r}"
            )
        self.task = task
        self.accuracy = accuracy
        self.seed = seed
        self.name = f"reference (simulated, accuracy {accuracy:g})"
        self._calls: dict[str, int] = {}

    def __repr__(self) -> str:
        return (
            f"ReferenceCloud(kind={self.task.kind!r}, accuracy={self.accuracy}, seed={self.seed})"
        )

    def state_dict(self) -> dict[str, int]:
        """Per-item call counters: save them with a checkpoint for an exact resume."""
        return dict(self._calls)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._calls = {str(k): int(v) for k, v in state.items()}

    def complete(self, messages: list[dict], item: Any = None) -> CloudReply:
        if item is None:
            raise EdgeclError("the reference cloud answers from gold data: pass item= to it")
        start = time.perf_counter()
        key = str(item.id)
        n = self._calls.get(key, 0)
        self._calls[key] = n + 1
        rng = random.Random(f"{self.seed}:{key}:{n}")  # str seeds hash the same in every process
        right = rng.random() < self.accuracy
        body = self.task.gold_answer(item) if right else self._wrong(item, rng)
        text = format_response(self.task.gold_steps(item), body)
        prompt = " ".join(str(m.get("content", "")) for m in messages)
        return CloudReply(
            text=text,
            ok=True,
            status="ok",
            latency_s=time.perf_counter() - start,
            attempts=1,
            prompt_tokens=_estimate_tokens(prompt),
            completion_tokens=_estimate_tokens(text),
            simulated=True,
        )

    def _wrong(self, item: Any, rng: random.Random) -> str:
        """A well-formatted wrong answer: another number, another letter, or failing code."""
        kind = self.task.kind
        if kind == "math":
            return "\\boxed{" + _perturb(str(item.answer), rng) + "}"
        if kind == "qa":
            n = max(len(getattr(item, "choices", None) or ()), 2)
            letters = [c for c in string.ascii_uppercase[:n] if c != _letter(item)]
            return "\\boxed{" + rng.choice(letters) + "}"
        if kind == "code":
            gold = self.task.gold_answer(item).rstrip()
            fail = "raise AssertionError('reference cloud: simulated wrong answer')\n"
            if gold.endswith("```"):
                return gold[:-3].rstrip("\n") + "\n" + fail + "```"
            return gold + "\n" + fail
        raise AssertionError(kind)  # checked in __init__


def _perturb(answer: str, rng: random.Random) -> str:
    """A different value of the same shape (integer, decimal, fraction), else a changed text."""
    delta = rng.choice([-3, -2, -1, 1, 2, 3, 10])
    text = answer.strip().replace(",", "")
    try:
        return str(int(text) + delta)
    except ValueError:
        pass
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return f"{answer} + {delta}" if answer.strip() else str(delta)
    if "." in text:
        decimals = len(text.split(".")[1])
        return f"{float(value) + delta:.{decimals}f}"
    return str(value + delta)


def _letter(item: Any) -> str:
    """The gold letter, whether item.answer is a letter, an index or the choice's text."""
    answer, choices = item.answer, list(getattr(item, "choices", None) or ())
    if isinstance(answer, int):
        return string.ascii_uppercase[answer]
    if answer in choices and not (len(answer) == 1 and answer.isupper()):
        return string.ascii_uppercase[choices.index(answer)]
    return str(answer).strip().upper()


def _estimate_tokens(text: str) -> int:
    """About 4 characters a token: the simulated call has no tokenizer."""
    return (len(text) + 3) // 4
