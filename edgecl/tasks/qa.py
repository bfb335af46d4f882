"""Multiple-choice QA: QuaRTz (AI2, CC BY 4.0), as shipped in OpenAI's `evals` wheel on PyPI.

Why this source: no dataset hub is reachable, and among the real multiple-choice sets that a
PyPI package ships, `evals/registry/data/quartz/samples.jsonl` inside the `evals` wheel
(3,860 rows, real JSONL, not Git LFS pointers) is light (1.3 MB inside a 46 MB wheel; BIG-bench
would be a 358 MB sdist) and fits a small model: qualitative physics/science questions with two
options and a gold letter ("If Jim moves two objects further apart, the gravitational force
between them will A: increase B: decrease" -> B), so chance is 50% and learning shows.

How it is obtained: `edgecl/tasks/data/quartz.jsonl` ships with edgecl (0.7 MB; provenance
and licence in `edgecl/tasks/data/README.md`), so QA works offline from the first use.

Rows are de-duplicated (16 questions that occur twice with conflicting gold letters are
dropped: 3,828 items); 400 fixed by the seed form the eval split, the rest train. The verifier
compares the boxed letter case- and whitespace-insensitively and accepts `(B)`, `B.`, `B)`,
`B: text`, `\\text{B}` and a 1-based index (`2`), as the paper allows letters or indices;
`verifier="exact"` is the paper's plain string comparison.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

from edgecl.errors import EdgeclError
from edgecl.tasks.base import (
    MAX_STEPS,
    Item,
    boxed,
    check_split,
    fit_steps,
    normalize_choice,
    stable_hash,
)

DATA_FILE = Path(__file__).parent / "data" / "quartz.jsonl"
EVAL_SIZE = 400

_lock = threading.Lock()
_rows: list[dict] | None = None  # process-wide: the data is the same whatever the data dir


def verify_choice(
    gold: str, answer: str, n_choices: int | None = None, verifier: str | None = None
) -> bool:
    """True if `answer` names the gold option letter; `exact` is the paper's string equality."""
    if verifier == "exact":
        return answer.strip() == gold.strip()
    letter = normalize_choice(answer, n_choices)
    return letter is not None and letter == gold.strip().upper()


class QATask:
    """QuaRTz two-option science questions; see the module docstring."""

    name = "qa"
    kind = "qa"

    def __init__(self, seed: int = 0, verifier: str | None = None) -> None:
        if verifier not in (None, "math-verify", "exact"):
            raise EdgeclError(f"unknown verifier {verifier!r}: use 'math-verify' or 'exact'")
        self.seed = seed
        self.verifier = verifier  # None/"math-verify": lenient letter forms; "exact": paper
        self._items: dict[str, list[Item]] = {}

    def items(self, split: str) -> list[Item]:
        check_split(split)
        if not self._items:
            items = [_item(row) for row in quartz_rows()]
            random.Random(f"qa:{self.seed}").shuffle(items)
            self._items = {"eval": items[:EVAL_SIZE], "train": items[EVAL_SIZE:]}
        return list(self._items[split])

    def verify(self, item: Item, answer: str) -> bool:
        n_choices = len(item.choices or ()) or None
        return verify_choice(item.answer, answer, n_choices, self.verifier)

    def gold_answer(self, item: Item) -> str:
        return boxed(item.answer)

    def gold_steps(self, item: Item) -> list[str]:
        choices = item.choices or ()
        index = ord(item.answer) - ord("A")
        text = choices[index] if 0 <= index < len(choices) else item.answer
        return fit_steps(
            [
                "Find the relation the question is about.",
                f"Following that relation, the answer is {text}.",
                f"That is option {item.answer}.",
            ],
            MAX_STEPS["qa"],
        )


def _item(row: dict) -> Item:
    return Item(
        id=f"qa/quartz/{stable_hash(row['question'] + '|' + '|'.join(row['choices']))[:16]}",
        question=row["question"],
        answer=row["answer"],
        choices=tuple(row["choices"]),
    )


def quartz_rows() -> list[dict]:
    """The de-duplicated QuaRTz rows {"question", "choices", "answer"} shipped with edgecl."""
    global _rows
    with _lock:
        if _rows is None:
            text = DATA_FILE.read_text(encoding="utf-8")
            _rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return _rows
