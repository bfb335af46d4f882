"""User tasks from JSONL: the three row kinds, line-numbered errors, a split that never moves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecl.errors import EdgeclError
from edgecl.tasks.jsonl import JsonlTask
from edgecl.tasks.registry import TASK_NAMES, get_task


def _write(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _all(task) -> list:
    return task.items("train") + task.items("eval")


def test_math_rows_verify_with_math_verify_or_exact(tmp_path):
    path = _write(
        tmp_path / "tasks.jsonl",
        [
            {"prompt": "What is half of 1?", "answer": "0.5"},
            {"prompt": "What is 2+3?", "answer": "5", "difficulty": "easy"},
            {"prompt": "Integrate x^5 sin x from 0 to pi", "answer": "x", "difficulty": "hard"},
        ],
    )
    task = get_task(str(path))
    assert isinstance(task, JsonlTask) and task.kind == "math" and task.name == "tasks"
    items = {i.question: i for i in _all(task)}
    assert len(items) == 3
    half = items["What is half of 1?"]
    assert task.verify(half, "\\frac{1}{2}") and not task.verify(half, "1")
    assert task.gold_answer(half) == "\\boxed{0.5}"
    assert items["Integrate x^5 sin x from 0 to pi"].difficulty == "hard"
    exact = get_task(str(path), verifier="exact")
    assert not exact.verify(half, "\\frac{1}{2}") and exact.verify(half, "0.5")


def test_code_rows_run_in_the_sandbox(tmp_path):
    path = _write(
        tmp_path / "code.jsonl",
        [
            {
                "prompt": "Write inc(x) that returns x + 1.",
                "tests": "assert inc(1) == 2\nassert inc(-1) == 0",
                "answer": "def inc(x):\n    return x + 1\n",
            },
            {"prompt": "Write dec(x) returning x - 1.", "tests": "assert dec(1) == 0"},
        ],
    )
    task = JsonlTask(path)
    assert task.kind == "code"
    items = {i.question[:9]: i for i in _all(task)}
    inc, dec = items["Write inc"], items["Write dec"]
    assert inc.entry_point == "inc" and dec.entry_point is None
    assert task.verify(inc, "def inc(x):\n    return x + 1\n")
    assert not task.verify(inc, "def inc(x):\n    return x\n")
    assert task.gold_answer(inc) == "```python\ndef inc(x):\n    return x + 1\n```"
    assert task.verify(dec, "def dec(x):\n    return x - 1")
    assert 1 <= len(task.gold_steps(inc)) <= 6


def test_qa_rows_accept_a_letter_index_or_choice_text(tmp_path):
    path = _write(
        tmp_path / "qa.jsonl",
        [
            {"prompt": "Which is a mammal?", "choices": ["cod", "cow", "crab"], "answer": "B"},
            {"prompt": "Which is red?", "choices": ["sky", "blood"], "answer": "blood"},
            {"prompt": "Which is cold?", "choices": ["ice", "fire"], "answer": 1},
        ],
    )
    task = JsonlTask(path)
    assert task.kind == "qa"
    golds = {i.question: i.answer for i in _all(task)}
    assert golds == {"Which is a mammal?": "B", "Which is red?": "B", "Which is cold?": "A"}
    mammal = next(i for i in _all(task) if i.question == "Which is a mammal?")
    assert mammal.choices == ("cod", "cow", "crab")
    assert task.verify(mammal, "(b)") and not task.verify(mammal, "C")
    assert task.gold_answer(mammal) == "\\boxed{B}" and "cow" in " ".join(task.gold_steps(mammal))


def test_bad_rows_are_reported_by_line_number_in_one_error(tmp_path):
    path = _write(
        tmp_path / "tasks.jsonl",
        [
            {"prompt": "What is 1+1?", "answer": "2"},
            "",
            {"prompt": "What is 2+2?"},
            "{not json",
            ["a", "list"],
            {"prompt": "What is 3+3?", "answer": "6", "colour": "blue"},
            {"prompt": "What is 1+1?", "answer": "2"},
        ],
    )
    with pytest.raises(EdgeclError) as err:
        JsonlTask(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("tasks.jsonl line 3: missing 'answer' or 'tests'")
    assert "line 4: not valid JSON" in message
    assert "line 5: expected a JSON object" in message
    assert "line 6: unknown key 'colour'" in message
    assert "line 7: duplicate id/prompt (first on line 1)" in message


def test_mixed_kinds_and_bad_fields(tmp_path):
    path = _write(
        tmp_path / "mixed.jsonl",
        [
            {"prompt": "What is 1+1?", "answer": "2"},
            {"prompt": "Write f.", "tests": "assert f() == 1"},
            {"prompt": "Pick", "choices": ["x", "y"], "answer": "C"},
            {"prompt": "Hard", "answer": "1", "difficulty": 3},
            {"prompt": "", "answer": "1"},
        ],
    )
    with pytest.raises(EdgeclError) as err:
        JsonlTask(path)
    message = str(err.value)
    assert "line 2: a code row in a file of math rows" in message
    assert "line 3: 'answer' 'C' is not a letter" in message
    assert "line 4: 'difficulty' must be" in message
    assert "line 5: missing 'prompt'" in message


def test_empty_missing_and_undecodable_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(EdgeclError, match="empty.jsonl has no rows"):
        JsonlTask(empty)
    with pytest.raises(EdgeclError, match="not found"):
        get_task(str(tmp_path / "missing.jsonl"))
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(EdgeclError, match="UTF-8"):
        JsonlTask(binary)


def test_split_is_by_hash_so_adding_rows_does_not_move_old_ones(tmp_path):
    rows = [{"prompt": f"What is {n} + {n}?", "answer": str(2 * n)} for n in range(200)]
    small = JsonlTask(_write(tmp_path / "a.jsonl", rows[:100]))
    large = JsonlTask(_write(tmp_path / "b.jsonl", rows))
    small_eval = {i.id for i in small.items("eval")}
    large_eval = {i.id for i in large.items("eval")}
    assert small_eval <= large_eval
    assert not {i.id for i in small.items("train")} & large_eval
    assert 20 <= len(large_eval) <= 60  # about 20% of 200
    assert not large_eval & {i.id for i in large.items("train")}
    again = JsonlTask(tmp_path / "b.jsonl")
    assert [i.id for i in again.items("eval")] == [i.id for i in large.items("eval")]
    reseeded = JsonlTask(tmp_path / "b.jsonl", seed=1)
    assert {i.id for i in reseeded.items("eval")} != large_eval


def test_explicit_split_and_id_win(tmp_path):
    rows = [
        {"prompt": "p1", "answer": "1", "split": "eval", "id": "mine-1"},
        {"prompt": "p2", "answer": "2", "split": "train"},
    ]
    task = JsonlTask(_write(tmp_path / "s.jsonl", rows))
    assert [i.id for i in task.items("eval")] == ["mine-1"]
    assert [i.question for i in task.items("train")] == ["p2"]


def test_unknown_task_name_lists_the_known_ones():
    with pytest.raises(EdgeclError) as err:
        get_task("poetry")
    message = str(err.value)
    for name in TASK_NAMES:
        assert name in message
    assert ".jsonl" in message
