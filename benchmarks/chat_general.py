"""Does chat keep general ability? The 60 general prompts through `edgecl chat`'s own turn.

    python benchmarks/chat_general.py                    # the learner's current adapter
    python benchmarks/chat_general.py --adapter DIR      # another adapter version

Each prompt is one chat turn (edgecl.chat.ChatSession, MLX, greedy, `--max-tokens`, no cloud,
not logged), as `edgecl chat --once` answers it: the protocol's system prompt and template, and
when the model asks for help, the local fallback with the trigger suppressed. Reported: how many
turns ask for help, how many of those are prompts the base model answers well (its own answer,
without the adapter, does not degenerate: edgecl.retention.degenerate), and how many shown
answers degenerate. Prints a summary line, then each prompt that asked or degenerated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecl import learner as learners
from edgecl.budget import CloudBudget
from edgecl.chat import ChatSession
from edgecl.generation import MLXChat
from edgecl.retention import ANSWER_TOKENS, base_answers, degenerate, general_prompts
from edgecl.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, help="default: the learner's current version")
    parser.add_argument("--learner", default="default")
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    from edgecl.cli.eval import _load_model

    store = Store()
    adapter = args.adapter
    if adapter is None:
        me = learners.load(store, args.learner)
        adapter = learners.version_path(me) if me is not None else None
        if adapter is None:
            raise SystemExit(f"learner {args.learner!r} has no adapter: run `edgecl learn`")
    model = _load_model(None, None)
    prompts = general_prompts("all")
    base_ok = [
        not degenerate(model.tokenizer.decode(answer))
        for split in ("distill", "held_out")
        for _, answer in base_answers(model, split, ANSWER_TOKENS)
    ]
    # base_answers() keeps each split's order; put them back in general_prompts("all") order.
    order = general_prompts("distill") + general_prompts("held_out")
    base_ok = [base_ok[order.index(p)] for p in prompts]
    model.load_adapter(adapter)
    session = ChatSession(MLXChat(model), CloudBudget(store, args.learner, 0.0, None),
                          max_tokens=args.max_tokens)  # fmt: skip
    rows = []
    for prompt, ok in zip(prompts, base_ok):
        session.reset()
        turn = session.turn(prompt)
        rows.append({"prompt": prompt, "base_ok": ok, "help": turn.help_requested,
                     "degenerate": degenerate(turn.answer), "answer": turn.answer})  # fmt: skip
    store.close()
    summary = {
        "adapter": str(adapter),
        "prompts": len(rows),
        "base_answers_well": sum(r["base_ok"] for r in rows),
        "asked_for_help": sum(r["help"] for r in rows),
        "asked_where_base_answers_well": sum(r["help"] and r["base_ok"] for r in rows),
        "degenerate_answers": sum(r["degenerate"] for r in rows),
    }
    print(json.dumps(summary))
    for r in rows:
        if r["help"] or r["degenerate"]:
            print(json.dumps(r))


if __name__ == "__main__":
    main()
