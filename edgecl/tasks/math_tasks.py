"""Math tasks from reasoning-gym's offline generators, verified with math-verify.

Three names (a hyphen, not a colon: `math:0.3` is the curriculum's budget syntax):

- `math-easy`: two-number addition/subtraction with 1-2 digit numbers (`chain_sum`), where a
  135M model has non-zero accuracy after the warm-up;
- `math-hard`: far beyond a small model: 5-6 term expressions of 3-4 digit numbers with all
  four operators and parentheses (`basic_arithmetic`), and GSM8K-style word problems
  (`gsm_symbolic`); these are the items the warm-up uses to demonstrate the help trigger;
- `math`: the mix, 2/3 easy and 1/3 hard (half of it each hard kind).

Splits: each generator is seeded with disjoint seed ranges for train and eval (reasoning-gym
seeds item i with `seed + i`), questions are de-duplicated within a split, and any train
question that also occurs in eval is dropped, so the splits never share a question.

Verification: math-verify on the boxed content (`\\frac{1}{2}` == `0.5`, `1,000` == `1000`),
except that a numeric gold only accepts a numeric prediction, so boxing the unevaluated
question (`47+12`) does not count. `verifier="exact"` is the paper's exact string comparison
(after stripping surrounding whitespace).
"""

from __future__ import annotations

import functools
import random
import re
import threading

from edgecl.errors import EdgeclError
from edgecl.tasks.base import MAX_STEPS, Item, boxed, check_split, fit_steps, stable_hash

VERIFIERS = ("math-verify", "exact")
LEVELS = ("mix", "easy", "hard")

# Items per split for each source, by level.
_COUNTS = {
    "easy": {"train": {"easy": 300}, "eval": {"easy": 100}},
    "hard": {"train": {"arith": 150, "gsm": 150}, "eval": {"arith": 50, "gsm": 50}},
    "mix": {
        "train": {"easy": 200, "arith": 50, "gsm": 50},
        "eval": {"easy": 70, "arith": 15, "gsm": 15},
    },
}
_SOURCES = {
    # source: (reasoning-gym dataset, its config)
    "easy": ("chain_sum", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}),
    "arith": (
        "basic_arithmetic",
        {"min_terms": 5, "max_terms": 6, "min_digits": 3, "max_digits": 4},
    ),
    "gsm": ("gsm_symbolic", {}),
}
_SOURCE_OFFSET = {"easy": 0, "arith": 1_000_000, "gsm": 2_000_000}
_SPLIT_OFFSET = {"train": 0, "eval": 500_000}
_SEED_STRIDE = 10_000_000


def verify_math(gold: str, answer: str, verifier: str = "math-verify") -> bool:
    """True if the boxed content `answer` matches `gold` under the chosen verifier."""
    if verifier == "exact":
        return answer.strip() == gold.strip()
    if verifier != "math-verify":
        raise EdgeclError(f"unknown verifier {verifier!r}: use one of {', '.join(VERIFIERS)}")
    answer = answer.strip()
    if not answer:
        return False
    if answer == gold.strip():
        return True
    from math_verify import verify

    gold_parsed = _parse(gold.strip())
    pred = _parse(answer)
    if not gold_parsed or not pred:
        return False
    if getattr(gold_parsed[0], "is_Number", False):
        value = pred[0]
        if getattr(value, "is_Equality", False):  # "x = 3"
            value = value.rhs
        if not getattr(value, "is_Number", False):
            return False
        pred = [value]
    timeout = _timeout()
    try:
        return bool(verify(gold_parsed, pred, timeout_seconds=timeout))
    except Exception:
        return False


def _timeout() -> int | None:
    # math-verify's timeouts use signal.alarm, which only works in the main thread.
    return 5 if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str, timeout: int | None) -> tuple:
    from math_verify import parse

    try:
        return tuple(parse(boxed(text), parsing_timeout=timeout))
    except Exception:
        return ()


def _parse(text: str) -> list:
    return list(_parse_cached(text, _timeout()))


class MathTask:
    """Arithmetic and word problems at a chosen level; see the module docstring."""

    kind = "math"

    def __init__(self, level: str = "mix", seed: int = 0, verifier: str | None = None) -> None:
        if level not in LEVELS:
            raise EdgeclError(f"unknown math level {level!r}: use one of {', '.join(LEVELS)}")
        verifier = verifier or "math-verify"
        if verifier not in VERIFIERS:
            raise EdgeclError(f"unknown verifier {verifier!r}: use one of {', '.join(VERIFIERS)}")
        self.level = level
        self.seed = seed
        self.verifier = verifier
        self.name = "math" if level == "mix" else f"math-{level}"
        self._items: dict[str, list[Item]] = {}
        self._steps: dict[str, list[str]] = {}

    def items(self, split: str) -> list[Item]:
        check_split(split)
        if not self._items:
            self._generate()
        return list(self._items[split])

    def verify(self, item: Item, answer: str) -> bool:
        return verify_math(item.answer, answer, self.verifier)

    def gold_answer(self, item: Item) -> str:
        return boxed(item.answer)

    def gold_steps(self, item: Item) -> list[str]:
        if not self._items:
            self._generate()
        steps = self._steps.get(item.id) or [f"The answer is {item.answer}."]
        return fit_steps(steps, MAX_STEPS["math"])

    def _generate(self) -> None:
        items, steps = {}, {}
        for split, counts in _COUNTS[self.level].items():
            rows = []
            for source, count in counts.items():
                rows.extend(_split_rows(source, split, self.seed)[:count])
            random.Random(f"{self.name}:{split}:{self.seed}").shuffle(rows)
            items[split] = [item for item, _ in rows]
            steps.update((item.id, lines) for item, lines in rows)
        self._steps = steps
        self._items = items  # assigned last and whole: a concurrent reader sees all or nothing


def _split_rows(source: str, split: str, seed: int) -> tuple:
    """All rows of one source for one split; train never holds a question of any eval level."""
    pool = max(counts[split].get(source, 0) for counts in _COUNTS.values())
    eval_rows = _source_rows(
        source, "eval", seed, max(c["eval"].get(source, 0) for c in _COUNTS.values())
    )
    if split == "eval":
        return eval_rows[:pool]
    taken = {item.question for item, _ in eval_rows}
    rows = _source_rows(source, "train", seed, pool + len(taken))
    return tuple(row for row in rows if row[0].question not in taken)[:pool]


@functools.lru_cache(maxsize=64)
def _source_rows(source: str, split: str, seed: int, count: int) -> tuple:
    """`count` distinct (Item, steps) rows of one generator for one split."""
    import reasoning_gym

    name, config = _SOURCES[source]
    base = seed * _SEED_STRIDE + _SOURCE_OFFSET[source] + _SPLIT_OFFSET[split]
    size = count * 4
    dataset = reasoning_gym.create_dataset(name, seed=base, size=size, **config)
    difficulty = "easy" if source == "easy" else "hard"
    rows, seen = [], set()
    for index in range(size):
        entry = dataset[index]
        question = entry["question"].strip()
        if question in seen:
            continue
        seen.add(question)
        item = Item(
            id=f"math/{source}/{stable_hash(question)[:16]}",
            question=question,
            answer=str(entry["answer"]).strip(),
            difficulty=difficulty,
        )
        rows.append((item, _steps_for(source, entry)))
        if len(rows) == count:
            break
    return tuple(rows)


def _steps_for(source: str, entry: dict) -> list[str]:
    answer = str(entry["answer"]).strip()
    metadata = entry.get("metadata", {})
    if source == "easy":
        expression = metadata.get("expression", "")
        return [f"Compute {expression}.", f"{expression} = {answer}."]
    if source == "gsm":
        cot = metadata.get("answer_cot", "")
        lines = [_clean_cot_line(line) for line in cot.splitlines()]
        lines = [line for line in lines if "=" in line]
        return lines + [f"The answer is {answer}."]
    expression = metadata.get("expression", "")
    return [
        f"The expression {expression} has many multi-digit terms.",
        "Apply the order of operations: parentheses, then * and /, then + and -.",
        f"The result is {answer}.",
    ]


def _clean_cot_line(line: str) -> str:
    line = re.sub(r"^[\s•*\-#]*(\d+[.)]\s*)?", "", line).strip()
    return "" if line.startswith("####") else line
