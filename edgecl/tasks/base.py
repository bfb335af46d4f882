"""The task interface: items with fixed train/eval splits, a verifier and gold demonstrations.

A task knows its data and how to check an answer; it knows nothing about prompts beyond the
question text (the protocol builds the paper's templates from `Task.kind`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from edgecl.core.protocol import KINDS, MAX_STEPS  # noqa: F401  (re-exported for tasks)
from edgecl.errors import EdgeclError

SPLITS = ("train", "eval")


@dataclass(frozen=True)
class Item:
    """One task instance; `id` is stable across runs and machines."""

    id: str
    question: str
    answer: str  # gold: math answer string / QA letter / code reference solution
    tests: str | None = None  # code: test code (asserts, or HumanEval's check())
    entry_point: str | None = None
    choices: tuple[str, ...] | None = None  # QA: option texts, letters A.. in order
    difficulty: str = ""  # the item's level ("2x1", "hard", ...): eval reports per level


@runtime_checkable
class Task(Protocol):
    name: str
    kind: str  # "math" | "code" | "qa": picks the prompt template and the step limit

    def items(self, split: str) -> list[Item]: ...

    def verify(self, item: Item, answer: str) -> bool: ...

    def gold_answer(self, item: Item) -> str: ...

    def gold_steps(self, item: Item) -> list[str]: ...


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise EdgeclError(f"unknown split {split!r}: use 'train' or 'eval'")


def stable_hash(text: str) -> str:
    """Hex digest used for item ids and hash-based splits (same on every machine)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_fraction(text: str) -> float:
    """A number in [0, 1) fixed by `text`: membership tests that never reshuffle."""
    return int(stable_hash(text)[:15], 16) / 16**15


def boxed(content: str) -> str:
    return "\\boxed{" + content + "}"


def code_block(code: str) -> str:
    return "```python\n" + code.strip("\n") + "\n```"


def fit_steps(lines: list[str], max_steps: int) -> list[str]:
    """Clean step lines and merge neighbours so there are 1..max_steps of them."""
    steps = [" ".join(line.split()) for line in lines]
    steps = [s for s in steps if s]
    if not steps:
        return ["Read the question carefully."]
    while len(steps) > max_steps:
        # merge the shortest adjacent pair, keeping the order of the reasoning
        i = min(range(len(steps) - 1), key=lambda k: len(steps[k]) + len(steps[k + 1]))
        steps[i : i + 2] = [steps[i].rstrip(".") + "; " + steps[i + 1]]
    return steps


_LETTER = re.compile(r"^\(?\s*([A-Za-z]|\d{1,2})\s*\)?\s*(?:[.:)\]]\s*.*)?$", re.S)


def normalize_choice(answer: str, n_choices: int | None = None) -> str | None:
    """'B', 'b', '(B)', 'B.', 'B: text', '\\text{B}', or a 1-based index '2' -> 'B'."""
    text = answer.strip()
    m = re.fullmatch(r"\\(?:text|textbf|mathrm)\{(.*)\}", text, re.S)
    if m:
        text = m.group(1).strip()
    text = text.strip("$ ").strip()
    m = _LETTER.match(text)
    if not m:
        return None
    token = m.group(1)
    if token.isdigit():
        index = int(token)
        if index < 1 or (n_choices is not None and index > n_choices) or index > 26:
            return None
        return chr(ord("A") + index - 1)
    letter = token.upper()
    if n_choices is not None and ord(letter) - ord("A") >= n_choices:
        return None
    return letter
