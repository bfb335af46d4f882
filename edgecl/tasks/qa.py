"""Multiple-choice QA: QuaRTz (AI2, CC BY 4.0), as shipped in OpenAI's `evals` wheel on PyPI.

Why this source: no dataset hub is reachable, and among the real multiple-choice sets that a
PyPI package ships, `evals/registry/data/quartz/samples.jsonl` inside the `evals` wheel
(3,860 rows, real JSONL, not Git LFS pointers) is light (1.3 MB inside a 46 MB wheel; BIG-bench
would be a 358 MB sdist) and fits a small model: qualitative physics/science questions with two
options and a gold letter ("If Jim moves two objects further apart, the gravitational force
between them will A: increase B: decrease" -> B), so chance is 50% and learning shows.

How it is obtained: the wheel is fetched once with `python -m pip download --no-deps
evals==3.0.1.post1` (never installed; pip's cache makes a repeat fast), the QuaRTz file is
read from the archive and saved as `<data dir>/datasets/quartz.jsonl`; later runs read that.
Offline: set `EDGECL_EVALS_WHEEL=/path/to/evals-3.0.1.post1-py3-none-any.whl`.

Rows are de-duplicated (16 questions that occur twice with conflicting gold letters are
dropped: 3,828 items); 400 fixed by the seed form the eval split, the rest train. The verifier
compares the boxed letter case- and whitespace-insensitively and accepts `(B)`, `B.`, `B)`,
`B: text`, `\\text{B}` and a 1-based index (`2`), as the paper allows letters or indices;
`verifier="exact"` is the paper's plain string comparison.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

from edgecl.errors import EdgeclError
from edgecl.paths import data_dir
from edgecl.tasks.base import (
    MAX_STEPS,
    Item,
    boxed,
    check_split,
    fit_steps,
    normalize_choice,
    stable_hash,
)

EVALS_VERSION = "3.0.1.post1"
EVALS_WHEEL = f"evals-{EVALS_VERSION}-py3-none-any.whl"
QUARTZ_MEMBER = "evals/registry/data/quartz/samples.jsonl"
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
    """The de-duplicated QuaRTz rows: {"question", "choices", "answer"}."""
    global _rows
    with _lock:
        if _rows is None:
            cache = data_dir() / "datasets" / "quartz.jsonl"
            if not cache.exists():
                wheel = _find_wheel()
                _write_cache(cache, _parse_quartz(_read_member(wheel)))
                if wheel.parent == data_dir() / "downloads":
                    wheel.unlink()  # 46 MB we no longer need; pip's cache keeps a copy
            _rows = [json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines()]
        return _rows


def _find_wheel() -> Path:
    env = os.environ.get("EDGECL_EVALS_WHEEL")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise EdgeclError(f"EDGECL_EVALS_WHEEL={env} is not a file: point it at {EVALS_WHEEL}")
        return path
    downloads = data_dir() / "downloads"
    path = downloads / EVALS_WHEEL
    if path.is_file():
        return path
    downloads.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    cmd += ["-q", "-d", str(downloads), f"evals=={EVALS_VERSION}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        ok = done.returncode == 0 and path.is_file()
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] if not ok else []
    except (OSError, subprocess.SubprocessError) as exc:
        ok, why = False, [str(exc)]
    if not ok:
        raise EdgeclError(
            f"the QA data (QuaRTz in the evals {EVALS_VERSION} wheel) could not be downloaded"
            f" ({' '.join(why) or 'pip failed'}): run `pip download --no-deps"
            f" evals=={EVALS_VERSION} -d DIR` where PyPI is reachable and set"
            f" EDGECL_EVALS_WHEEL=DIR/{EVALS_WHEEL}"
        )
    return path


def _read_member(wheel: Path) -> str:
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(QUARTZ_MEMBER).decode("utf-8")
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise EdgeclError(
            f"{wheel} is not a usable evals wheel ({exc}): delete it and download"
            f" evals=={EVALS_VERSION} again"
        ) from exc


_OPTION = re.compile(r"^\s*([A-Z]):\s*(.*?)\s*$")


def _parse_quartz(text: str) -> list[dict]:
    """QuaRTz rows hold 'stem\\n\\n A: opt\\n B: opt' and an 'ideal' letter."""
    answers: dict[tuple, set[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        stem, sep, options = row["input"][-1]["content"].rpartition("\n\n")
        matches = [_OPTION.match(opt) for opt in options.strip().splitlines()]
        if not sep or not matches or not all(matches):
            continue
        letters = [m.group(1) for m in matches]
        if letters != [chr(ord("A") + i) for i in range(len(letters))]:
            continue
        key = (" ".join(stem.split()), tuple(m.group(2) for m in matches))
        answers.setdefault(key, set()).add(str(row["ideal"]).strip())
    rows = []
    for (question, choices), golds in answers.items():
        if len(golds) == 1 and (gold := golds.pop()) in {c for c in "ABCDEFGH"[: len(choices)]}:
            rows.append({"question": question, "choices": list(choices), "answer": gold})
    return rows


def _write_cache(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(f.name, path)
