"""Math tasks: disjoint splits, graded levels, phrasings, math-verify and exact verification."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecl.errors import EdgeclError
from edgecl.tasks.base import MAX_STEPS, fit_steps
from edgecl.tasks.math_tasks import PHRASINGS, TASK_LEVELS, MathTask, verify_math
from edgecl.tasks.registry import get_task

LEVELS = ("mix", "easy", "hard")


@pytest.fixture(scope="module")
def tasks() -> dict[str, MathTask]:
    start = time.monotonic()
    built = {level: MathTask(level) for level in LEVELS}
    for task in built.values():
        task.items("train")
    print(f"math items for 3 levels in {time.monotonic() - start:.2f}s")
    return built


def test_split_sizes_and_ids_are_unique(tasks):
    for task in tasks.values():
        train, eval_, unseen = (task.items(s) for s in ("train", "eval", "unseen"))
        assert len(train) == 300 and len(eval_) == len(unseen) == 100
        assert len({i.id for i in train + eval_ + unseen}) == 500
        assert len({i.question for i in train + eval_ + unseen}) == 500


def _numbers(question: str) -> tuple[str, ...]:
    """The problem behind a phrasing: its numbers and operators in order."""
    return tuple(re.findall(r"\d+|[-+*/()]", question))


def test_train_and_eval_never_share_a_problem_across_levels(tasks):
    train = {_numbers(i.question) for t in tasks.values() for i in t.items("train")}
    for split in ("eval", "unseen"):
        assert not train & {_numbers(i.question) for t in tasks.values() for i in t.items(split)}


def test_splits_are_fixed_by_the_seed(tasks):
    again = MathTask("mix", seed=0)
    for split in ("train", "eval"):
        assert [i.id for i in again.items(split)] == [i.id for i in tasks["mix"].items(split)]
    other = MathTask("mix", seed=1)
    assert {i.id for i in other.items("eval")} != {i.id for i in tasks["mix"].items("eval")}


def test_levels_and_their_shares(tasks):
    assert {i.difficulty for i in tasks["easy"].items("train")} == {"2x1", "2x2"}
    assert {i.difficulty for i in tasks["hard"].items("train")} == {"arith", "gsm"}
    for split in ("train", "eval", "unseen"):
        counts = Counter(i.difficulty for i in tasks["mix"].items(split))
        shares = [counts[level] / sum(counts.values()) for level in TASK_LEVELS["mix"]]
        assert shares == [0.2, 0.2, 0.2, 0.15, 0.15, 0.1]
        # no set of the hardest levels makes up a default tau (0.3 math, 0.5 code)
        assert all(round(sum(shares[k:]), 6) not in (0.3, 0.5) for k in range(len(shares)))
    gsm = [i for i in tasks["hard"].items("train") if i.difficulty == "gsm"]
    assert all("Give the result as your final answer" in i.question for i in gsm)


def test_phrasings_vary_within_a_level_and_unseen_ones_are_new(tasks):
    mix = tasks["mix"]
    for level in ("2x2", "4x3"):
        questions = [i.question for i in mix.items("train") if i.difficulty == level]
        templates = {q.replace(" ".join(_expr(q)), "{e}") for q in questions}
        assert len(templates) >= 4  # the same level is asked in several ways
    seen = {t.split("{e}")[0] for t in PHRASINGS["expression"]}
    for asked, unseen in zip(mix.items("eval"), mix.items("unseen")):
        assert _numbers(asked.question) == _numbers(unseen.question)
        assert (asked.answer, asked.difficulty) == (unseen.answer, unseen.difficulty)
        assert asked.question != unseen.question
    assert not any(
        i.question.startswith(prefix) for i in mix.items("unseen") for prefix in seen if prefix
    )


def _expr(question: str) -> list[str]:
    return re.findall(r"\d+(?: [+-] \d+)+", question)


def test_chain_sums_are_shown_as_partial_sums(tasks):
    item = next(i for i in tasks["mix"].items("train") if i.difficulty == "4x3")
    steps = tasks["mix"].gold_steps(item)
    assert len(steps) == 3 and steps[-1].endswith(f"= {item.answer}.")


def test_every_gold_answer_verifies_and_a_wrong_one_does_not(tasks):
    for task in tasks.values():
        for item in task.items("eval"):
            assert task.verify(item, item.answer), item
            assert task.gold_answer(item) == "\\boxed{" + item.answer + "}"
            wrong = str(int(item.answer) + 1) if item.answer.lstrip("-").isdigit() else "x"
            assert not task.verify(item, wrong), item


def test_math_verify_equivalences():
    assert verify_math("0.5", "\\frac{1}{2}")
    assert verify_math("\\frac{1}{2}", "0.5")
    assert verify_math("1000", "1,000")
    assert verify_math("42", "42.0")
    assert verify_math("42", " 42 ")
    assert verify_math("3", "x = 3")
    assert verify_math("-7", "(-7)")
    assert not verify_math("42", "43")
    assert not verify_math("42", "")
    assert not verify_math("42", "forty-two")


def test_an_unevaluated_expression_does_not_count_for_a_numeric_gold():
    assert not verify_math("59", "47 + 12")
    assert not verify_math("12", "3 \\cdot 4")
    assert not verify_math("8", "2^3")
    # a symbolic gold is compared symbolically
    assert verify_math("x^2 + 2x + 1", "(x+1)^2")


def test_exact_verifier_is_the_papers_string_comparison():
    task = MathTask("easy", verifier="exact")
    item = task.items("eval")[0]
    assert task.verify(item, item.answer) and task.verify(item, f"  {item.answer} ")
    assert not task.verify(item, item.answer + ".0")
    assert not verify_math("0.5", "\\frac{1}{2}", "exact")
    assert get_task("math", verifier="exact").verify(item, item.answer)


def test_verification_works_off_the_main_thread(tasks):
    results = []
    thread = threading.Thread(
        target=lambda: results.append(
            (verify_math("0.5", "\\frac{1}{2}"), verify_math("0.5", "\\frac{1}{3}"))
        )
    )
    thread.start()
    thread.join()
    assert results == [(True, False)]


def test_gold_steps_are_short_plain_lines(tasks):
    for task in tasks.values():
        for item in task.items("train")[:60]:
            steps = task.gold_steps(item)
            assert 1 <= len(steps) <= MAX_STEPS["math"]
            assert all(s and "\n" not in s and not s.lower().startswith("step") for s in steps)
    easy = tasks["easy"].items("train")[0]
    assert easy.answer in tasks["easy"].gold_steps(easy)[-1]


def test_registry_names_and_errors():
    assert get_task("math").name == "math"
    assert get_task("math-easy").name == "math-easy" and get_task("math-hard").kind == "math"
    with pytest.raises(EdgeclError, match="math-easy"):
        get_task("math-medium")
    with pytest.raises(EdgeclError, match="verifier"):
        get_task("math", verifier="fuzzy")
    with pytest.raises(EdgeclError, match="split"):
        MathTask("easy").items("test")


@given(st.lists(st.text(alphabet="ab .", max_size=12), max_size=12), st.integers(1, 6))
def test_fit_steps_keeps_order_and_bounds(lines, max_steps):
    steps = fit_steps(lines, max_steps)
    assert 1 <= len(steps) <= max_steps
    words = [w for line in lines for w in line.replace(".", " ").replace(";", " ").split()]
    merged = [w for s in steps for w in s.replace(".", " ").replace(";", " ").split()]
    assert merged == words or (not words and steps == ["Read the question carefully."])
