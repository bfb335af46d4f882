"""Math tasks in graded levels, from reasoning-gym's offline generators, checked by math-verify.

Levels (`Item.difficulty`), easiest first; local accuracy after the warm-up runs from about
three in four (`2x1`) to zero (`arith`, `gsm`), so a budget has somewhere to bind:

| level | items |
|---|---|
| `2x1` | two 1-digit terms, + or - (`chain_sum`) |
| `2x2` | two 2-digit terms |
| `3x2` | three 2-digit terms |
| `4x3` | four 3-digit terms |
| `arith` | 5-6 terms of 3-4 digits with * / and parentheses (`basic_arithmetic`) |
| `gsm` | GSM8K-style word problems (`gsm_symbolic`) |

Task names (a hyphen, not a colon: `math:0.3` is the curriculum's budget syntax): `math` (every
level: 20/20/20/15/15/10% of the items, so no split's share of any set of levels is a default
tau), `math-easy` (`2x1`, `2x2`), `math-hard` (`arith`, `gsm`).

Phrasings: each problem is asked in one of several phrasings (fixed by a hash of the problem),
so whether to ask for help must follow the problem, not the template. The `unseen` split holds
the eval problems in phrasings that training never uses.

Splits: each generator is seeded with disjoint seed ranges for train and eval (reasoning-gym
seeds item i with `seed + i`), problems are de-duplicated within a split, and any train problem
that also occurs in eval is dropped, so the splits never share a problem.

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
from edgecl.tasks.base import MAX_STEPS, Item, boxed, fit_steps, stable_hash

VERIFIERS = ("math-verify", "exact")
TASK_LEVELS = {  # task name suffix -> its levels
    "mix": ("2x1", "2x2", "3x2", "4x3", "arith", "gsm"),
    "easy": ("2x1", "2x2"),
    "hard": ("arith", "gsm"),
}
LEVELS = tuple(TASK_LEVELS)  # "mix" is the task `math`, the others `math-easy`, `math-hard`
SPLITS = ("train", "eval", "unseen")

# Items per split for each level, by task. 2x1 has only 200 distinct problems.
_COUNTS = {
    "mix": {
        "train": {"2x1": 60, "2x2": 60, "3x2": 60, "4x3": 45, "arith": 45, "gsm": 30},
        "eval": {"2x1": 20, "2x2": 20, "3x2": 20, "4x3": 15, "arith": 15, "gsm": 10},
    },
    "easy": {"train": {"2x1": 100, "2x2": 200}, "eval": {"2x1": 40, "2x2": 60}},
    "hard": {"train": {"arith": 150, "gsm": 150}, "eval": {"arith": 50, "gsm": 50}},
}


def _chain(terms: int, digits: int) -> tuple[str, dict]:
    config = {"min_terms": terms, "max_terms": terms, "min_digits": digits, "max_digits": digits}
    return "chain_sum", config


_SOURCES = {
    # level: (reasoning-gym dataset, its config)
    "2x1": _chain(2, 1),
    "2x2": _chain(2, 2),
    "3x2": _chain(3, 2),
    "4x3": _chain(4, 3),
    "arith": (
        "basic_arithmetic",
        {"min_terms": 5, "max_terms": 6, "min_digits": 3, "max_digits": 4},
    ),
    "gsm": ("gsm_symbolic", {}),
}
_SOURCE_OFFSET = {level: k * 1_000_000 for k, level in enumerate(_SOURCES)}
_SPLIT_OFFSET = {"train": 0, "eval": 500_000}
_SEED_STRIDE = 10_000_000

# How a problem is asked: {e} is an expression, {q} a word problem. Training sees PHRASINGS;
# the `unseen` split asks the eval problems in UNSEEN_PHRASINGS only.
PHRASINGS = {
    "expression": (
        "State the final answer to the following arithmetic problem: {e} =",
        "What is {e}?",
        "Compute {e}.",
        "Calculate {e}.",
        "Find the value of {e}.",
        "{e} = ?",
    ),
    "word": ("{q}", "Solve this word problem. {q}", "Here is a problem: {q}"),
}
UNSEEN_PHRASINGS = {
    "expression": (
        "How much is {e}?",
        "Work out {e} and give the result.",
        "Evaluate the expression {e}.",
    ),
    "word": ("Please help with this question: {q}", "Word problem: {q}"),
}


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
    """Arithmetic and word problems in graded levels; see the module docstring."""

    kind = "math"
    splits = SPLITS

    def __init__(self, level: str = "mix", seed: int = 0, verifier: str | None = None) -> None:
        if level not in LEVELS:
            raise EdgeclError(f"unknown math level {level!r}: use one of {', '.join(LEVELS)}")
        verifier = verifier or "math-verify"
        if verifier not in VERIFIERS:
            raise EdgeclError(f"unknown verifier {verifier!r}: use one of {', '.join(VERIFIERS)}")
        self.level = level
        self.levels = TASK_LEVELS[level]
        self.seed = seed
        self.verifier = verifier
        self.name = "math" if level == "mix" else f"math-{level}"
        self._items: dict[str, list[Item]] = {}
        self._steps: dict[str, list[str]] = {}

    def items(self, split: str) -> list[Item]:
        if split not in SPLITS:
            raise EdgeclError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
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
        for split in ("train", "eval"):
            rows = []
            for level, count in _COUNTS[self.level][split].items():
                rows.extend(_split_rows(level, split, self.seed)[:count])
            random.Random(f"{self.name}:{split}:{self.seed}").shuffle(rows)
            asked = {split: [_phrase(problem, PHRASINGS, self.seed) for problem in rows]}
            if split == "eval":
                asked["unseen"] = [_phrase(p, UNSEEN_PHRASINGS, self.seed) for p in rows]
            for name, pairs in asked.items():
                items[name] = [item for item, _ in pairs]
                steps.update((item.id, lines) for item, lines in pairs)
        self._steps = steps
        self._items = items  # assigned last and whole: a concurrent reader sees all or nothing


def _phrase(problem: tuple, table: dict, seed: int) -> tuple[Item, list[str]]:
    """The (Item, steps) of one problem asked in the phrasing its hash picks from `table`."""
    level, text, expression, answer, lines = problem
    key = "expression" if expression else "word"
    options = table[key]
    template = options[int(stable_hash(f"{seed}:{text}")[:8], 16) % len(options)]
    question = template.format(e=expression, q=text)
    item = Item(
        id=f"math/{level}/{stable_hash(question)[:16]}",
        question=question,
        answer=answer,
        difficulty=level,
    )
    return item, lines


def _split_rows(level: str, split: str, seed: int) -> tuple:
    """All problems of one level for one split; train never holds a problem of any eval set."""
    eval_count = max(c["eval"].get(level, 0) for c in _COUNTS.values())
    eval_rows = _source_rows(level, "eval", seed, eval_count)
    if split == "eval":
        return eval_rows
    taken = {row[1] for row in eval_rows}
    pool = max(c["train"].get(level, 0) for c in _COUNTS.values())
    rows = _source_rows(level, "train", seed, pool + len(taken))
    return tuple(row for row in rows if row[1] not in taken)[:pool]


@functools.lru_cache(maxsize=64)
def _source_rows(level: str, split: str, seed: int, count: int) -> tuple:
    """Up to `count` distinct problems (level, text, expression, answer, steps) of one level."""
    import reasoning_gym

    name, config = _SOURCES[level]
    base = seed * _SEED_STRIDE + _SOURCE_OFFSET[level] + _SPLIT_OFFSET[split]
    size = count * 4
    dataset = reasoning_gym.create_dataset(name, seed=base, size=size, **config)
    rows, seen = [], set()
    for index in range(size):
        entry = dataset[index]
        expression = (
            entry.get("metadata", {}).get("expression", "") if name != "gsm_symbolic" else ""
        )
        text = expression or entry["question"].strip()
        if text in seen:
            continue
        seen.add(text)
        answer = str(entry["answer"]).strip()
        rows.append((level, text, expression, answer, _steps_for(name, entry)))
        if len(rows) == count:
            break
    return tuple(rows)


def _steps_for(source: str, entry: dict) -> list[str]:
    answer = str(entry["answer"]).strip()
    metadata = entry.get("metadata", {})
    expression = metadata.get("expression", "")
    if source == "chain_sum":
        return _partial_sums(expression) or [f"{expression} = {answer}."]
    if source == "gsm_symbolic":
        cot = metadata.get("answer_cot", "")
        lines = [_clean_cot_line(line) for line in cot.splitlines()]
        lines = [line for line in lines if "=" in line]
        return lines + [f"The answer is {answer}."]
    return [
        f"The expression {expression} has many multi-digit terms.",
        "Apply the order of operations: parentheses, then * and /, then + and -.",
        f"The result is {answer}.",
    ]


def _partial_sums(expression: str) -> list[str]:
    """'42 - 25 - 73' -> ['42 - 25 = 17.', '17 - 73 = -56.']: one line per operation."""
    tokens = expression.split()
    if len(tokens) < 3 or len(tokens) % 2 == 0:
        return []
    try:
        total = int(tokens[0])
        lines = []
        for op, term in zip(tokens[1::2], tokens[2::2]):
            value = total + int(term) if op == "+" else total - int(term)
            if op not in "+-":
                return []
            lines.append(f"{total} {op} {term} = {value}.")
            total = value
    except ValueError:
        return []
    return lines


def _clean_cot_line(line: str) -> str:
    line = re.sub(r"^[\s•*\-#]*(\d+[.)]\s*)?", "", line).strip()
    return "" if line.startswith("####") else line
