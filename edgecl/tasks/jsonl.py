"""A user's own task from a JSONL file, one item per line.

Row forms (the kind of the file comes from its rows; one kind per file):

    {"prompt": "What is 2+3?", "answer": "5"}                          math (math-verify / exact)
    {"prompt": "Which is a mammal?", "choices": ["cod", "cow"], "answer": "B"}       QA
    {"prompt": "Write f(x) returning x+1.", "tests": "assert f(1) == 2", "answer": "def f..."}

Code rows need "tests" (Python run after the candidate code; a failing assert fails it);
their optional "answer" is a reference solution (used by the reference cloud and the warm-up
demonstrations) and "entry_point" the function's name. QA "answer" is a letter, a 1-based
index or the text of one of the "choices". Optional on any row: "id" (default: a hash of the
prompt), "difficulty" (a level label such as "easy" or "3-digit": eval reports accuracy and help
per label; the warm-up decides where to ask for help from measured ability, not from it) and
"split" ("train" | "eval").

Split: a row without "split" goes to eval when a hash of (seed, id) falls in the lowest 20%,
so adding rows never moves the old ones. All bad rows are reported in one error, by line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgecl.errors import EdgeclError
from edgecl.tasks.base import (
    MAX_STEPS,
    SPLITS,
    Item,
    boxed,
    check_split,
    code_block,
    fit_steps,
    hash_fraction,
    normalize_choice,
    stable_hash,
)
from edgecl.tasks.code_tasks import verify_code
from edgecl.tasks.math_tasks import VERIFIERS, verify_math
from edgecl.tasks.qa import verify_choice

EVAL_FRACTION = 0.2
_KNOWN_KEYS = {"prompt", "answer", "tests", "choices", "id", "difficulty", "split", "entry_point"}
_MAX_ERRORS = 5


class JsonlTask:
    """Items read from a JSONL file; see the module docstring for the row format."""

    def __init__(self, path: str | Path, seed: int = 0, verifier: str | None = None) -> None:
        self.path = Path(path)
        self.seed = seed
        self.verifier = verifier or "math-verify"
        if self.verifier not in VERIFIERS:
            raise EdgeclError(f"unknown verifier {verifier!r}: use one of {', '.join(VERIFIERS)}")
        self.name = self.path.stem
        self.kind, rows = _load(self.path)
        self._split = {"train": [], "eval": []}
        for split, item in rows:
            if split is None:
                split = "eval" if hash_fraction(f"{seed}:{item.id}") < EVAL_FRACTION else "train"
            self._split[split].append(item)

    def items(self, split: str) -> list[Item]:
        check_split(split)
        return list(self._split[split])

    def verify(self, item: Item, answer: str) -> bool:
        if self.kind == "code":
            return verify_code(item, answer)
        if self.kind == "qa":
            return verify_choice(item.answer, answer, len(item.choices or ()), self.verifier)
        return verify_math(item.answer, answer, self.verifier)

    def gold_answer(self, item: Item) -> str:
        if self.kind == "code":
            return code_block(item.answer or f"# no reference solution in {self.path.name}")
        return boxed(item.answer)

    def gold_steps(self, item: Item) -> list[str]:
        if self.kind == "code":
            steps = ["Read what the function must do.", "Write it and check it against the tests."]
        elif self.kind == "qa":
            index = ord(item.answer) - ord("A")
            text = (item.choices or ())[index] if item.choices else item.answer
            steps = ["Read the question and the options.", f"The answer is {text}."]
            steps.append(f"That is option {item.answer}.")
        else:
            steps = ["Read the question carefully.", f"The answer is {item.answer}."]
        return fit_steps(steps, MAX_STEPS[self.kind])


def _kind_of(row: dict) -> str:
    if "tests" in row:
        return "code"
    if "choices" in row:
        return "qa"
    return "math"


def _load(path: Path) -> tuple[str, list[tuple[str | None, Item]]]:
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgeclError(f"task file {path} not found: check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeclError(f"cannot read task file {path} ({exc}): it must be UTF-8 JSONL") from None
    errors: list[str] = []
    rows: list[tuple[str | None, Item]] = []
    kind = None
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            errors.append(f'line {number}: expected a JSON object like {{"prompt": ...}}')
            continue
        problem = _check_row(row)
        if problem:
            errors.append(f"line {number}: {problem}")
            continue
        row_kind = _kind_of(row)
        if kind is None:
            kind = row_kind
        elif row_kind != kind:
            errors.append(
                f"line {number}: a {row_kind} row in a file of {kind} rows (one kind per file)"
            )
            continue
        item = _item(row, row_kind)
        if item.id in first_line:
            errors.append(
                f"line {number}: duplicate id/prompt (first on line {first_line[item.id]})"
            )
            continue
        first_line[item.id] = number
        rows.append((row.get("split"), item))
    if errors:
        more = f" (and {len(errors) - _MAX_ERRORS} more)" if len(errors) > _MAX_ERRORS else ""
        raise EdgeclError(f"{name} " + "; ".join(errors[:_MAX_ERRORS]) + more)
    if not rows:
        raise EdgeclError(
            f"{name} has no rows: add one JSON object per line, e.g. "
            '{"prompt": "What is 2+3?", "answer": "5"}'
        )
    return kind or "math", rows


def _check_row(row: dict) -> str | None:
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "missing 'prompt' (a non-empty string)"
    unknown = sorted(set(row) - _KNOWN_KEYS)
    if unknown:
        return f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_KNOWN_KEYS))})"
    if "tests" not in row and "answer" not in row:
        return "missing 'answer' or 'tests'"
    for key in ("answer", "tests", "id", "entry_point"):
        if key in row and not isinstance(row[key], (str, int, float) if key == "answer" else str):
            return f"'{key}' must be a string"
    if "tests" in row and not row["tests"].strip():
        return "'tests' is empty"
    if "tests" in row and "choices" in row:
        return "a row has either 'tests' (code) or 'choices' (QA), not both"
    label = row.get("difficulty", "")
    if not isinstance(label, str) or len(label) > 40:
        return "'difficulty' must be a short label such as 'easy' or 'hard'"
    if row.get("split", "train") not in SPLITS:
        return "'split' must be 'train' or 'eval'"
    if "choices" in row:
        choices = row["choices"]
        if (
            not isinstance(choices, list)
            or not 2 <= len(choices) <= 26
            or not all(isinstance(c, str) and c.strip() for c in choices)
        ):
            return "'choices' must be a list of 2 to 26 non-empty strings"
        if _choice_letter(row["answer"], choices) is None:
            return f"'answer' {row['answer']!r} is not a letter, index or text of the choices"
    elif "tests" not in row and not str(row["answer"]).strip():
        return "'answer' is empty"
    return None


def _choice_letter(answer, choices: list[str]) -> str | None:
    text = str(answer).strip()
    for i, choice in enumerate(choices):
        if text == choice.strip():
            return chr(ord("A") + i)
    return normalize_choice(text, len(choices))


def _item(row: dict, kind: str) -> Item:
    prompt = row["prompt"].strip()
    item_id = str(row.get("id") or f"jsonl/{stable_hash(prompt)[:16]}")
    difficulty = row.get("difficulty", "")
    if kind == "code":
        entry = row.get("entry_point") or _first_function(str(row.get("answer", "")))
        return Item(
            id=item_id,
            question=prompt,
            answer=str(row.get("answer", "")),
            tests=row["tests"],
            entry_point=entry,
            difficulty=difficulty,
        )
    if kind == "qa":
        choices = tuple(c.strip() for c in row["choices"])
        letter = _choice_letter(row["answer"], list(choices))
        return Item(item_id, prompt, letter or "", choices=choices, difficulty=difficulty)
    return Item(item_id, prompt, str(row["answer"]).strip(), difficulty=difficulty)


def _first_function(code: str) -> str | None:
    match = re.search(r"^def\s+([A-Za-z_]\w*)\s*\(", code, re.M)
    return match.group(1) if match else None
