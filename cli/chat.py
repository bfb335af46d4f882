"""`edgecl chat`: talk to the learner's model; it asks the cloud only within your budget.

edgecl chat                                           # the learner's current adapter, on MLX
edgecl chat --budget 0.3 --cloud openai:gpt-4o-mini   # OPENAI_API_KEY from the environment
edgecl chat --cloud openai:smollm2 --cloud-url http://127.0.0.1:8080/v1 --backend llamacpp
edgecl chat --once "What is 2+3?" --json              # one answer, for scripts

In the chat: /budget, /stats, /cloud on|off, /reset, /quit. The model's <think> steps are
hidden unless --show-steps. Every exchange is logged in the data dir (`--no-log` turns that off,
`edgecl log purge` deletes the log).
"""

from __future__ import annotations

import json
from enum import Enum

import typer

from edgecl.errors import EdgeclError


class Backend(str, Enum):
    mlx = "mlx"
    llamacpp = "llamacpp"


# Options `edgecl chat` and `edgecl daemon run` share (the same session behind both).
BUDGET = typer.Option(0.3, min=0.0, max=1.0, help="Cloud share of queries (tau).")
CLOUD = typer.Option(None, help="openai:MODEL (none: always answer locally).")
CLOUD_URL = typer.Option(None, help="OpenAI-compatible base URL, e.g. .../v1.")
CLOUD_KEY_ENV = typer.Option(None, help="Env var holding the API key (never stored).")
BACKEND = typer.Option(Backend.mlx, help="mlx or llamacpp (GGUF + exported LoRA).")
LEARNER = typer.Option("default", help="Whose current adapter answers.")
MODEL = typer.Option(None, help="Model name or path (default: bundled).")
NO_LOG = typer.Option(False, "--no-log", help="Do not log the exchanges.")
CALLS_PER_DAY = typer.Option(None, min=0, help="Cap: cloud calls per UTC day.")
TOKENS_PER_DAY = typer.Option(None, min=0, help="Cap: cloud tokens per UTC day.")
SPEND_PER_DAY = typer.Option(None, min=0, help="Cap: money per UTC day.")
PRICE_PER_1K = typer.Option(0.0, min=0, help="Cloud price per 1000 tokens.")


def chat(
    once: str = typer.Option(None, "--once", help="Answer this one message and exit."),
    as_json: bool = typer.Option(False, "--json", help="With --once: print one JSON object."),
    budget: float = BUDGET,
    cloud: str = CLOUD,
    cloud_url: str = CLOUD_URL,
    cloud_key_env: str = CLOUD_KEY_ENV,
    backend: Backend = BACKEND,
    learner: str = LEARNER,
    base: bool = typer.Option(False, "--base", help="The base model, no adapter."),
    model: str = MODEL,
    max_tokens: int = typer.Option(256, min=8, help="Longest local answer."),
    show_steps: bool = typer.Option(False, "--show-steps", help="Show the <think> steps."),
    no_log: bool = NO_LOG,
    calls_per_day: int = CALLS_PER_DAY,
    tokens_per_day: int = TOKENS_PER_DAY,
    spend_per_day: float = SPEND_PER_DAY,
    price_per_1k: float = PRICE_PER_1K,
) -> None:
    """Chat with the local model, with budgeted help from the cloud."""
    from edgecl.budget import Caps
    from edgecl.chat import open_session

    if as_json and once is None:
        raise EdgeclError("--json needs --once TEXT")
    caps = Caps(calls_per_day, tokens_per_day, spend_per_day, price_per_1k)
    session, adapter = open_session(
        budget, cloud, cloud_url, cloud_key_env, backend.value, learner, base, model, max_tokens,
        caps, log=not no_log,
    )  # fmt: skip
    if once is not None:
        _once(session, once, as_json, show_steps)
        return
    _repl(session, adapter, show_steps)


def visible(text: str, show_steps: bool) -> str:
    """What a person reads: no <think> block (unless show_steps) and no answer tags."""
    if not show_steps and text.lstrip().startswith("<think>"):
        end = text.find("</think>")
        text = "" if end < 0 else text[end + len("</think>") :]
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        text = text.replace(tag, "")
    return text.strip()


class _Printer:
    """Prints the visible part of a streamed response as it grows."""

    def __init__(self, console, show_steps: bool) -> None:
        self.console, self.show_steps = console, show_steps
        self.reset()

    def reset(self) -> None:
        self.text, self.printed = "", ""

    def __call__(self, piece: str) -> None:
        self.text += piece
        if "<" in self.text[-12:]:  # maybe half a tag: wait for the rest
            return
        now = visible(self.text, self.show_steps)
        if now.startswith(self.printed):
            self.console.print(now[len(self.printed) :], end="", markup=False)
            self.printed = now

    def finish(self, answer: str) -> None:
        final = visible(answer, self.show_steps)
        rest = final[len(self.printed) :] if final.startswith(self.printed) else "\n" + final
        self.console.print(rest, markup=False)
        self.reset()


def _once(session, text: str, as_json: bool, show_steps: bool) -> None:
    turn = session.turn(text)
    if as_json:
        out = {
            "answer": visible(turn.answer, False),
            "response": turn.answer,
            "help_requested": turn.help_requested,
            "cloud_called": turn.cloud_called,
            "cloud_answered": turn.cloud_text is not None,
            "local_fallback": turn.fallback,
            "reason": turn.reason,
            "budget": session.budget.state(),
        }
        typer.echo(json.dumps(out))
        return
    if turn.reason:
        typer.echo(f"(answered locally: {turn.reason})", err=True)
    typer.echo(visible(turn.answer, show_steps))


def _repl(session, adapter, show_steps: bool) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    what = f"adapter {adapter}" if adapter else "the base model"
    console.print(f"edgecl chat: {session.engine.name}, {what}; budget tau {session.budget.tau:g}"
                  f"; cloud {getattr(session.cloud, 'name', 'none')}. /quit to leave.")  # fmt: skip
    printer = _Printer(console, show_steps)
    while True:
        try:
            text = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not text:
            continue
        if text.startswith("/"):
            if not _command(session, text, console):
                return
            continue
        console.print("model> ", end="")

        def notice(line: str) -> None:
            printer.reset()
            console.print(f"\n[dim]({line})[/dim]")

        turn = session.turn(text, on_piece=printer, on_notice=notice)
        if turn.cloud_text is not None:
            printer.reset()
            console.print("[cyan]cloud>[/cyan] ", end="")
            console.print(visible(turn.answer, show_steps), markup=False)
        else:
            printer.finish(turn.answer)


def _command(session, text: str, console) -> bool:
    """Run a slash command; False to leave the chat."""
    word, _, arg = text.partition(" ")
    if word in ("/quit", "/exit"):
        return False
    if word == "/budget":
        console.print(json.dumps(session.budget.state()))
    elif word == "/stats":
        console.print(json.dumps(session.stats))
    elif word == "/cloud" and arg in ("on", "off"):
        session.cloud_enabled = arg == "on"
        console.print(f"cloud {arg}")
    elif word == "/reset":
        session.reset()
        console.print("conversation cleared")
    else:
        console.print("commands: /budget, /stats, /cloud on|off, /reset, /quit")
    return True
