"""The response protocol: prompts, help detection, composition, parsing, and a table of
example responses with their expected (help, r, c) under eq. 13/14 (literal reading)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecl.core.protocol import (
    MAX_STEPS,
    SYSTEM_PROMPT,
    TRIGGER,
    ParsedResponse,
    build_messages,
    compose,
    extract_boxed,
    extract_code,
    format_help_request,
    format_response,
    parse_response,
    requests_help,
)
from edgecl.core.rewards import score_sample
from edgecl.errors import EdgeclError

# --------------------------------------------------------------------------------------------
# Prompts


def test_system_prompt_is_the_papers_with_colon_steps():
    assert SYSTEM_PROMPT.startswith("You are a helpful reasoning assistant")
    assert "'Step k:'" in SYSTEM_PROMPT and "'Step k.'" not in SYSTEM_PROMPT
    assert SYSTEM_PROMPT.endswith(f"return: '{TRIGGER}'")
    assert "<think>...</think>" in SYSTEM_PROMPT and "\\boxed{42}" in SYSTEM_PROMPT


def test_max_steps_table3():
    assert MAX_STEPS == {"math": 4, "code": 6, "qa": 4}


def test_build_messages_math():
    messages = build_messages("math", "What is 2 + 3")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM_PROMPT
    assert messages[1]["content"] == "What is 2 + 3. Let's think step by step."
    # A question that ends in punctuation gets no extra full stop.
    assert build_messages("math", "What is 2 + 3?")[1]["content"] == (
        "What is 2 + 3? Let's think step by step."
    )


def test_build_messages_code_puts_the_task_after_the_instruction():
    user = build_messages("code", "def f(x):\n    '''double x'''\n")[1]["content"]
    assert user == (
        "Solve the programming task below in a Python markdown code block. "
        "Let's think step by step.\ndef f(x):\n    '''double x'''"
    )


def test_build_messages_qa_letters_the_choices():
    user = build_messages("qa", "Capital of France?", ["Paris", "Rome", "Oslo"])[1]["content"]
    assert user == (
        "Capital of France? Let's think step by step. Possible answers:\nA. Paris\nB. Rome\nC. Oslo"
    )
    assert build_messages("qa", "Q", "(A) x (B) y")[1]["content"].endswith("\n(A) x (B) y")


@pytest.mark.parametrize(
    "kind, choices",
    [("poetry", None), ("math", ["a", "b"]), ("qa", [])],
)
def test_build_messages_rejects_bad_input_with_one_line(kind, choices):
    with pytest.raises(EdgeclError) as err:
        build_messages(kind, "q", choices)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------
# Writing and extracting


def test_format_response_exact_text():
    assert format_response(["add 2 and 3", "Step 2: it is 5"], "\\boxed{5}") == (
        "<think>\nStep 1: add 2 and 3\nStep 2: it is 5\n</think>\n<answer>\\boxed{5}</answer>"
    )
    assert format_response(["two\nlines"], "x").startswith("<think>\nStep 1: two lines\n")
    assert format_help_request(["hard"]) == (
        "<think>\nStep 1: hard\n</think>\n<answer>I need external assistance.</answer>"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{42}", "42"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed {x^{2}+1}", "x^{2}+1"),
        ("no box here", None),
        ("\\boxed{1} and \\boxed{\\frac{1}{2}", None),  # the last one is unclosed
        ("\\boxed{}", ""),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_extract_code_takes_the_last_python_block():
    text = "```python\na = 1\n```\nand\n```py\nb = 2\n```\n```\nc = 3\n```"
    assert extract_code(text) == "b = 2\n"
    assert extract_code("```python\nunclosed") is None
    assert extract_code("```js\nx\n```") is None


# --------------------------------------------------------------------------------------------
# Help detection


@pytest.mark.parametrize(
    "text, expected",
    [
        (format_help_request(["hard"]), True),
        (format_help_request(["hard"])[: -len("</answer>")], True),  # stopped at the trigger
        ("<think>\nStep 1: x\n</think>\n<answer>i  need EXTERNAL\nassistance.</answer>", True),
        ("<answer>'I need external assistance.'</answer>", True),
        ("This is hard. I need external assistance.", True),
        ("Final answer: I need external assistance.", True),
        ("Step 1: x\nStep 2: I need external assistance.", True),
        ("I need external assistance", True),  # no final full stop
        ('The rules say "I need external assistance." when stuck. \\boxed{4}', False),
        ("<think>\nStep 1: they said 'I need external assistance.'\n</think>\n<answer>", False),
        ("return 'I need external assistance.", False),  # a quotation, cut at the stop string
        ("I need external assistance to do this.", False),
        ("<answer>\\boxed{4}</answer> thanks", False),
        ("", False),
    ],
)
def test_requests_help(text, expected):
    assert requests_help(text) is expected


# --------------------------------------------------------------------------------------------
# Composition

CLOUD_42 = format_response(["the cloud reasons"], "Final answer: \\boxed{42}")


def test_compose_replaces_the_trigger_with_the_clouds_answer():
    local = format_help_request(["too hard"])
    assert compose(local, CLOUD_42) == (
        "<think>\nStep 1: too hard\n</think>\n<answer>Final answer: \\boxed{42}</answer>"
    )


def test_compose_closes_an_answer_left_open_at_the_stop_string():
    local = format_help_request(["too hard"])[: -len("</answer>")]
    assert compose(local, CLOUD_42) == compose(format_help_request(["too hard"]), CLOUD_42)


def test_compose_uses_the_whole_cloud_text_without_answer_tags_minus_its_think():
    local = format_help_request(["too hard"])
    assert compose(local, "\\boxed{7}").endswith("<answer>\\boxed{7}</answer>")
    assert compose(local, "<think>Step 1: hm</think> \\boxed{7}").endswith(
        "<answer>\\boxed{7}</answer>"
    )


def test_compose_keeps_text_before_the_trigger_sentence():
    assert compose("Hmm. Final answer: I need external assistance.", "\\boxed{3}") == (
        "Hmm. Final answer: \\boxed{3}"
    )


def test_compose_needs_a_help_request():
    with pytest.raises(ValueError):
        compose(format_response(["x"], "\\boxed{1}"), CLOUD_42)


# --------------------------------------------------------------------------------------------
# Parsing


# fmt: off
@pytest.mark.parametrize(
    "text, kind, violation, steps",
    [
        (format_response(["a", "b"], "\\boxed{1}"), "math", None, 2),
        (format_response(list("abcde"), "\\boxed{1}"), "math", "too many steps", 5),
        (format_response(list("abcde"), "```python\nx = 1\n```"), "code", None, 5),
        (format_response(list("abcdefg"), "```python\nx = 1\n```"), "code", "too many steps", 7),
        ("<answer>\\boxed{1}</answer>", "math", "missing think", 0),
        ("Sure! " + format_response(["a"], "\\boxed{1}"), "math", "text before think", 1),
        ("<think>\n</think>\n<answer>\\boxed{1}</answer>", "math", "no steps", 0),
        ("<think>\n1. a\n</think>\n<answer>\\boxed{1}</answer>", "math", "bad step line", 0),
        ("<think>\nStep 1: a\nmore\n</think>\n<answer>\\boxed{1}</answer>", "math",
         "bad step line", 1),
        ("<think>\nStep 1: a\nStep 3: b\n</think>\n<answer>\\boxed{1}</answer>", "math",
         "bad step numbering", 2),
        ("<think>\nStep 1: a\n</think>\n", "math", "missing answer", 1),
        ("<think>\nStep 1: a\n</think>\n<answer>\\boxed{1}", "math", "missing answer", 1),
        (format_response(["a"], "\\boxed{1}") + " ok?", "math", "text after answer", 1),
        ("<think>\nStep 1: a\n</think>\nso\n<answer>\\boxed{1}</answer>", "math",
         "text between tags", 1),
        (format_response(["a"], "42"), "math", "nothing boxed", 1),
        (format_response(["a"], "\\boxed{ }"), "math", "nothing boxed", 1),
        (format_response(["a"], "def f(): pass"), "code", "no code block", 1),
        (format_response(["a"], "\\boxed{B}"), "qa", None, 1),
        (format_response(["a"], "Final answer: " + TRIGGER), "math",
         "extra text around trigger", 1),
        (format_response(["a"], "x") + format_response(["b"], "y"), "math", "repeated tags", 2),
    ],
)
# fmt: on
def test_parse_violations(text, kind, violation, steps):
    parsed = parse_response(text, kind)
    assert parsed.violation == violation
    assert parsed.well_formatted is (violation is None)
    assert parsed.steps == steps


def test_parse_truncated_flag_wins():
    parsed = parse_response(format_response(["a"], "\\boxed{1}"), "math", truncated=True)
    assert parsed.violation == "truncated" and parsed.boxed == "1" and parsed.steps == 1


def test_parse_help_request_stopped_at_the_trigger_is_well_formatted():
    text = format_help_request(["a", "b"])[: -len("</answer>")]
    parsed = parse_response(text, "math")
    assert parsed == ParsedResponse(2, True, True, None, TRIGGER, None, None)


def test_parse_extracts_from_bad_responses_too():
    parsed = parse_response("no tags at all, \\boxed{9}", "math")
    assert parsed.violation == "missing think" and parsed.boxed == "9"


def test_parse_unknown_kind():
    with pytest.raises(EdgeclError):
        parse_response("x", "essay")


_step_text = st.text(
    alphabet=st.characters(whitelist_categories=("L", "N"), whitelist_characters=" +-=*()"),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip())


@given(st.lists(_step_text, min_size=1, max_size=4), st.integers(0, 10**6))
def test_written_responses_parse_back(steps, answer):
    text = format_response(steps, f"Final answer: \\boxed{{{answer}}}")
    parsed = parse_response(text, "math")
    assert parsed.well_formatted and not parsed.requests_help
    assert parsed.steps == len(steps) and parsed.boxed == str(answer)
    helped = compose(format_help_request(steps), text)
    parsed_help = parse_response(helped, "math")
    assert parsed_help.well_formatted and parsed_help.boxed == str(answer)
    assert parsed_help.steps == len(steps)


# --------------------------------------------------------------------------------------------
# The fixture table: (help, r, c) for example responses, literal reading of eq. 13/14.


def _verifier(kind: str, gold: str):
    def is_correct(parsed: ParsedResponse) -> bool:
        if kind == "code":
            if parsed.code is None:
                return False
            scope: dict = {}
            try:
                exec(parsed.code, scope)  # trusted test snippets only
                return scope["double"](3) == 6 and scope["double"](-1) == -2
            except Exception:
                return False
        return parsed.boxed is not None and parsed.boxed.strip() == gold

    return is_correct


STEPS = ["Multiply 6 by 7.", "That gives 42."]
RIGHT = format_response(STEPS, "Final answer: \\boxed{42}")
HELP = format_help_request(STEPS)
HELP_STOPPED = HELP[: -len("</answer>")]
CLOUD_RIGHT = format_response(["cloud step"], "Final answer: \\boxed{42}")
CLOUD_WRONG = format_response(["cloud step"], "Final answer: \\boxed{41}")
CODE_RIGHT = "```python\ndef double(x):\n    return 2 * x\n```"
CODE_WRONG = "```python\ndef double(x):\n    return x + 2\n```"

def case(name, kind, local, expect, cloud=None, truncated=False, failed=False):
    return pytest.param(kind, local, truncated, cloud, failed, expect, id=name)


# fmt: off
TABLE = [
    # local answers: (help, r, c)
    case("math right", "math", RIGHT, (False, 1.0, 0.0)),
    case("math wrong", "math", format_response(STEPS, "\\boxed{41}"), (False, 0.0, 0.0)),
    case("math right, too many steps", "math", format_response(STEPS * 3, "\\boxed{42}"),
         (False, -0.1, 0.0)),
    case("math right, no think tags", "math", "Step 1: 6*7.\n<answer>\\boxed{42}</answer>",
         (False, -0.1, 0.0)),
    case("math, nothing boxed", "math", format_response(STEPS, "42"), (False, -0.1, 0.0)),
    case("math, truncated at max tokens", "math", "<think>\nStep 1: Multiply 6 by",
         (False, -0.1, 0.0), truncated=True),
    case("math, wrong step prefix", "math",
         "<think>\n1. 6*7\n</think>\n<answer>\\boxed{42}</answer>", (False, -0.1, 0.0)),
    case("quoted trigger mid-text, answer right", "math",
         format_response(["Do not say 'I need external assistance.' yet.", "6*7"], "\\boxed{42}"),
         (False, 1.0, 0.0)),
    case("qa right letter", "qa", format_response(["Paris is the capital."], "\\boxed{B}"),
         (False, 1.0, 0.0)),
    case("code right", "code", format_response(["Double it."], CODE_RIGHT), (False, 1.0, 0.0)),
    case("code wrong", "code", format_response(["Add two."], CODE_WRONG), (False, 0.0, 0.0)),
    case("code, no code block", "code", format_response(["Double it."], "return 2 * x"),
         (False, -0.1, 0.0)),
    case("code, 6 steps is fine", "code", format_response(list("abcdef"), CODE_RIGHT),
         (False, 1.0, 0.0)),
    # help requests, well formatted: c = 1, r on the composed response
    case("help, cloud right", "math", HELP, (True, 1.0, 1.0), CLOUD_RIGHT),
    case("help stopped at the trigger, cloud right", "math", HELP_STOPPED, (True, 1.0, 1.0),
         CLOUD_RIGHT),
    case("help, cloud wrong", "math", HELP, (True, 0.0, 1.0), CLOUD_WRONG),
    case("help, cloud answer unboxed", "math", HELP, (True, 0.0, 1.0), "<answer>42</answer>"),
    case("help, cloud without tags", "math", HELP, (True, 1.0, 1.0), "It is \\boxed{42}."),
    case("help, cloud failed", "math", HELP, (True, 0.0, 1.0), failed=True),
    case("help, case and whitespace", "math",
         "<think>\nStep 1: hard\n</think>\n<answer> i need  EXTERNAL assistance. </answer>",
         (True, 1.0, 1.0), CLOUD_RIGHT),
    case("code help, cloud right", "code", format_help_request(["no idea"]), (True, 1.0, 1.0),
         format_response(["cloud"], CODE_RIGHT)),
    # help requests, badly formatted: r = -0.1, c = 0
    case("help inside think (broken)", "math", "<think>\nStep 1: hard\nStep 2: " + TRIGGER,
         (True, -0.1, 0.0), CLOUD_RIGHT),
    case("help without steps (broken)", "math", "<think>\n</think>\n<answer>" + TRIGGER,
         (True, -0.1, 0.0), CLOUD_RIGHT),
    case("help after too many steps (broken)", "qa", format_help_request(list("abcde")),
         (True, -0.1, 0.0), format_response(["c"], "\\boxed{B}")),
    case("help with extra answer text (broken)", "math",
         format_response(STEPS, "Final answer: " + TRIGGER), (True, -0.1, 0.0), CLOUD_RIGHT),
    case("broken help, cloud failed", "math", "<answer>" + TRIGGER, (True, -0.1, 0.0),
         failed=True),
]
# fmt: on
GOLD = {"math": "42", "qa": "B", "code": ""}


@pytest.mark.parametrize("kind, local, truncated, cloud, failed, expected", TABLE)
def test_protocol_table(kind, local, truncated, cloud, failed, expected):
    is_correct = _verifier(kind, GOLD[kind])
    score = score_sample(local, kind, MAX_STEPS[kind], truncated, is_correct, cloud, failed)
    assert (score.help, score.reward, score.cost) == expected


def test_table_is_big_enough():
    assert len(TABLE) >= 12
    outcomes = {p.values[-1] for p in TABLE}
    assert outcomes >= {(False, 1.0, 0.0), (False, 0.0, 0.0), (False, -0.1, 0.0)}
    assert outcomes >= {(True, 1.0, 1.0), (True, 0.0, 1.0), (True, -0.1, 0.0)}
