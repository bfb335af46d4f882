"""The response protocol (DESIGN.md 2.1): prompts, the help trigger, parsing and composition.

A local answer is `<think>` + 1..max_steps lines `Step k: ...` + `</think>` + `<answer>` +
`\\boxed{X}` (math, QA) or a ```python block (code) + `</answer>`. A help request has the same
think block and then `<answer>I need external assistance.</answer>`; sampling stops at the
trigger, so a help request may end right after it, without `</answer>`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from edgecl.errors import EdgeclError

TRIGGER = "I need external assistance."

# Strings a sampler stops at. It must keep the matched stop string in the returned text, since
# the parser recognises a help request by the trigger at the end.
STOP_STRINGS = ("</answer>", TRIGGER)

KINDS = ("math", "code", "qa")

# Table 3 of the paper: the most `Step k:` lines a local response may have, per task kind.
MAX_STEPS = {"math": 4, "code": 6, "qa": 4}

# Paper, appendix F.1, verbatim except: 'Step k.' -> 'Step k:' (the paper's own examples use a
# colon), typographic quotes -> ASCII, and no markdown backticks around the tags.
SYSTEM_PROMPT = (
    "You are a helpful reasoning assistant for questioning, code, and math problems. "
    "When a question is posed, try to answer using step-by-step reasoning. "
    "Reason step by step, using format: Step 1: ..., Step 2: ..., Step 3: ..., etc. "
    "You must prefix each reasoning line with 'Step k:' exactly (e.g., 'Step 1:', 'Step 2:'). "
    "Do not use other numbering formats such as '1.', '(1)', or '- Step 1'. "
    "If the problem appears difficult or hard to solve, elaborate your reasoning with more "
    "detailed steps. Otherwise, use fewer steps as appropriate. "
    "Enclose your reasoning and answer within <think>...</think> and <answer>...</answer> tags, "
    "respectively. Always box the final answer using \\boxed{}, e.g., Final answer: \\boxed{42} "
    "(math), \\boxed{choice} (general QA), or Final answer: \\boxed{result} (coding or function "
    "output). If after sufficient reasoning steps you determine the problem cannot be solved "
    "locally, return: 'I need external assistance.'"
)

# Paper, appendix F.1 user prompts. The code task goes on its own line (it is often multi-line).
USER_TEMPLATES = {
    "math": "{question} Let's think step by step.",
    "code": (
        "Solve the programming task below in a Python markdown code block. "
        "Let's think step by step.\n{question}"
    ),
    "qa": "{question} Let's think step by step. Possible answers:\n{choices}",
}


def check_kind(kind: str) -> str:
    """Return `kind` if it is one the protocol knows, else raise a one-line EdgeclError."""
    if kind not in KINDS:
        raise EdgeclError(f"unknown task kind {kind!r}: use one of {', '.join(KINDS)}")
    return kind


def _sentence(text: str) -> str:
    """The text with a final full stop added unless it already ends in punctuation."""
    text = text.strip()
    return text if not text or text[-1] in ".?!:;)" else text + "."


def format_choices(choices: Sequence[str] | str) -> str:
    """Letter the choices one per line (`A. Paris`); a string is taken as already formatted."""
    if isinstance(choices, str):
        return choices.strip()
    if not choices or len(choices) > 26:
        raise EdgeclError(f"a QA item needs 1..26 choices, got {len(choices)}: fix the task data")
    return "\n".join(f"{chr(ord('A') + i)}. {str(c).strip()}" for i, c in enumerate(choices))


def build_messages(
    kind: str, question: str, choices: Sequence[str] | str | None = None
) -> list[dict]:
    """OpenAI-style chat messages (system + user) for one prompt; the cloud gets the same."""
    check_kind(kind)
    if kind == "qa":
        if choices is None:
            user = f"{_sentence(question)} Let's think step by step."
        else:
            user = USER_TEMPLATES["qa"].format(
                question=_sentence(question), choices=format_choices(choices)
            )
    elif choices is not None:
        raise EdgeclError(f"choices only apply to kind 'qa', not {kind!r}: drop them")
    elif kind == "math":
        user = USER_TEMPLATES["math"].format(question=_sentence(question))
    else:
        user = USER_TEMPLATES["code"].format(question=question.strip())
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_STEP_PREFIX = re.compile(r"^Step \d+:")


def format_response(steps: list[str], answer_body: str) -> str:
    """Write a response in the protocol; steps get `Step k:` unless they already have it."""
    lines = []
    for k, step in enumerate(steps, 1):
        step = " ".join(step.split())  # one line per step
        lines.append(step if _STEP_PREFIX.match(step) else f"Step {k}: {step}")
    return "<think>\n" + "\n".join(lines) + "\n</think>\n<answer>" + answer_body + "</answer>"


def format_help_request(steps: list[str]) -> str:
    """A well-formed help request: the think steps, then the trigger as the whole answer."""
    return format_response(steps, TRIGGER)


# ---------------------------------------------------------------------------------------------
# Help detection and composition


# The trigger as the response's conclusion: preceded by the start, a newline, a tag, a colon or
# the end of a sentence; optionally wrapped in quotes or markdown emphasis; at the very end of
# the text (before an optional closing </answer>). Whitespace and case are normalised.
_TRIGGER_AT_END = re.compile(
    r"(?:\A|(?<=[\n>:])|(?<=[.!?][\"'\u2019\u201d)]\s)|(?<=[.!?]\s))"
    r"[^\S\n]*(?P<trigger>[\"'\u2018\u201c*_]*\s*i\s+need\s+external\s+assistance\s*\.?"
    r"[\"'\u2019\u201d*_]*)\s*(?:</answer>\s*)?\Z",
    re.IGNORECASE,
)


def _trigger_span(text: str) -> tuple[int, int] | None:
    """Start and end of the concluding trigger sentence in `text`, or None if there is none."""
    m = _TRIGGER_AT_END.search(text)
    return (m.start("trigger"), m.end("trigger")) if m else None


def requests_help(text: str) -> bool:
    """Whether the response asks for the cloud: the trigger is its conclusion, not a quote."""
    return _trigger_span(text) is not None


def _last_answer(text: str) -> str | None:
    """Content of the last <answer> (to </answer> or the end of the text), or None."""
    start = text.rfind("<answer>")
    if start < 0:
        return None
    body = text[start + len("<answer>") :]
    end = body.find("</answer>")
    return body if end < 0 else body[:end]


def cloud_answer(cloud_text: str) -> str:
    """What composition inserts: the cloud's <answer> content, else its text minus <think>."""
    answer = _last_answer(cloud_text)
    if answer is not None:
        return answer.strip()
    text = re.sub(r"<think>.*?(</think>|\Z)", "", cloud_text, flags=re.DOTALL)
    return text.replace("</answer>", "").strip()


def compose(local_text: str, cloud_text: str) -> str:
    """C(y_local, y_cloud): the trigger sentence replaced by the cloud's answer (deterministic).

    An <answer> the local response left open (it stopped at the trigger) is closed.
    """
    span = _trigger_span(local_text)
    if span is None:
        raise ValueError("compose() needs a local response that requests help")
    start, end = span
    head, tail = local_text[:start], local_text[end:]
    composed = head + cloud_answer(cloud_text) + tail
    if head.count("<answer>") > head.count("</answer>") and "</answer>" not in tail:
        composed = composed.rstrip() + "</answer>"
    return composed


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class ParsedResponse:
    """What the parser found in one response; `violation` names the first format problem."""

    steps: int
    requests_help: bool
    well_formatted: bool
    violation: str | None
    answer: str | None  # content of the last <answer>, stripped
    boxed: str | None  # content of the last \boxed{...} (balanced braces)
    code: str | None  # content of the last ```python block


_BOXED = re.compile(r"\\boxed\s*\{")
_CODE_BLOCK = re.compile(r"```[^\S\n]*(?:python3?|py)[^\S\n]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_STEP_LINE = re.compile(r"^Step (\d+):")


def extract_boxed(text: str) -> str | None:
    """Content of the LAST \\boxed{...}, braces balanced; None if absent or left unclosed."""
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    start = matches[-1].end()
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def extract_code(text: str) -> str | None:
    """Content of the last closed ```python (or ```py) block, or None."""
    blocks = _CODE_BLOCK.findall(text)
    return blocks[-1] if blocks else None


def _count_steps(text: str) -> int:
    return sum(1 for line in text.splitlines() if _STEP_LINE.match(line.strip()))


def _think_violation(think: str, max_steps: int) -> tuple[int, str | None]:
    """Step count of a think block and its first violation: every non-empty line is a step."""
    numbers = []
    for line in think.splitlines():
        line = line.strip()
        if not line:
            continue
        m = _STEP_LINE.match(line)
        if m is None:
            return _count_steps(think), "bad step line"
        numbers.append(int(m.group(1)))
    if not numbers:
        return 0, "no steps"
    if numbers != list(range(1, len(numbers) + 1)):
        return len(numbers), "bad step numbering"
    if len(numbers) > max_steps:
        return len(numbers), "too many steps"
    return len(numbers), None


def _structure_violation(text: str, help_: bool) -> str | None:
    """First problem with the tag layout `<think>..</think> <answer>..</answer>`, or None."""
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        if text.count(tag) > 1:
            return "repeated tags"
    if "<think>" not in text or "</think>" not in text:
        return "missing think"
    if text.find("</think>") < text.find("<think>"):
        return "missing think"
    if text[: text.find("<think>")].strip():
        return "text before think"
    if "<answer>" not in text:
        return "missing answer"
    between = text[text.find("</think>") + len("</think>") : text.find("<answer>")]
    if between.strip() or text.find("<answer>") < text.find("</think>"):
        return "text between tags"
    if "</answer>" not in text:
        # Sampling stops at the trigger, so a help request may end without </answer>.
        return None if help_ else "missing answer"
    if text[text.find("</answer>") + len("</answer>") :].strip():
        return "text after answer"
    return None


def _normalise(text: str) -> str:
    return " ".join(text.split()).lower().strip("\"'\u2018\u2019\u201c\u201d*_ ")


def parse_response(
    text: str, kind: str, max_steps: int | None = None, truncated: bool = False
) -> ParsedResponse:
    """Parse one response under the protocol; `truncated`: sampling hit the token limit.

    `max_steps` defaults to MAX_STEPS[kind]. For a help request `well_formatted` means its
    local part (think steps + the trigger as the whole answer) is in the protocol. Boxed and
    code contents are extracted even from badly formatted responses (from the answer if there
    is one, else from the whole text), for the prose reward variant and for logging.
    """
    check_kind(kind)
    if max_steps is None:
        max_steps = MAX_STEPS[kind]
    help_ = requests_help(text)
    answer = _last_answer(text)
    source = text if answer is None else answer
    boxed = extract_boxed(source)
    code = extract_code(source)

    violation = "truncated" if truncated else _structure_violation(text, help_)
    if violation is None:
        think = text[text.find("<think>") + len("<think>") : text.find("</think>")]
        steps, violation = _think_violation(think, max_steps)
    else:
        think_start = text.find("<think>")
        steps = _count_steps(text if think_start < 0 else text[think_start:])
    if violation is None:
        assert answer is not None  # _structure_violation checked it
        if help_:
            if _normalise(answer).rstrip(".") != _normalise(TRIGGER).rstrip("."):
                violation = "extra text around trigger"
        elif kind == "code":
            if code is None:
                violation = "no code block"
        elif boxed is None or not boxed.strip():
            violation = "nothing boxed"
    return ParsedResponse(
        steps=steps,
        requests_help=help_,
        well_formatted=violation is None,
        violation=violation,
        answer=None if answer is None else answer.strip(),
        boxed=boxed,
        code=code,
    )
