"""Task names -> tasks. `get_task("math-easy")`, `get_task("code")`, `get_task("my.jsonl")`.

Names use a hyphen for the level (`math-easy`), because `math:0.3` is the curriculum syntax
for a budget. Built-in tasks are cached per (name, verifier, seed); JSONL files are re-read.
"""

from __future__ import annotations

import functools
from pathlib import Path

from edgecl.errors import EdgeclError
from edgecl.tasks.base import Task

# name -> one-line description (what `edgecl` can list for the user)
TASKS = {
    "math": "arithmetic and word problems, 2/3 easy and 1/3 far too hard (reasoning-gym)",
    "math-easy": "two-number addition/subtraction with 1-2 digit numbers",
    "math-hard": "long multi-digit expressions and GSM-style word problems",
    "code": "easy generated functions plus HumanEval",
    "code-easy": "small generated Python functions checked by asserts",
    "code-humaneval": "the 164 HumanEval problems (alias: code-hard)",
    "qa": "QuaRTz two-option science questions (from the evals wheel)",
}
_ALIASES = {"code-hard": "code-humaneval"}
TASK_NAMES = tuple(TASKS)


def get_task(spec: str, verifier: str | None = None, seed: int = 0) -> Task:
    """A task by name, or a user task from a `.jsonl` path; `verifier` applies to math/QA."""
    name = spec.strip()
    if name.endswith(".jsonl") or Path(name).is_file():
        from edgecl.tasks.jsonl import JsonlTask

        return JsonlTask(name, seed=seed, verifier=verifier)
    name = _ALIASES.get(name.lower(), name.lower())
    if name not in TASKS:
        raise EdgeclError(
            f"unknown task {spec!r}: use one of {', '.join(TASK_NAMES)} or a path to a .jsonl file"
        )
    if verifier not in (None, "math-verify", "exact"):
        raise EdgeclError(f"unknown verifier {verifier!r}: use 'math-verify' or 'exact'")
    return _builtin(name, verifier, seed)


@functools.lru_cache(maxsize=32)
def _builtin(name: str, verifier: str | None, seed: int) -> Task:
    family, _, level = name.partition("-")
    if family == "math":
        from edgecl.tasks.math_tasks import MathTask

        return MathTask(level or "mix", seed=seed, verifier=verifier)
    if family == "code":
        from edgecl.tasks.code_tasks import CodeTask

        return CodeTask({"": "mix", "easy": "easy", "humaneval": "hard"}[level], seed=seed)
    from edgecl.tasks.qa import QATask

    return QATask(seed=seed, verifier=verifier)
