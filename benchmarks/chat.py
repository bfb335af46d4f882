"""Chat speed against the raw engines: time to first token and tokens/s, MLX and llama.cpp.

    python benchmarks/chat.py                   # 5 alternating trials each, base model
    python benchmarks/chat.py --trials 7 --max-tokens 128 --adapter DIR

edgecl's chat engines (edgecl.generation: MLXChat over mlx-lm's stream_generate with the
trigger-suppression processor attached, LlamaChat over llama-cpp-python's chat completion)
against the same engines called directly (`mlx_lm.stream_generate`, `Llama.create_chat_completion`)
on the same prompt, greedy, up to `--max-tokens`, all stopping at the protocol's stop strings.
The rate is streamed pieces per second after the first. Trials alternate edgecl / raw; the
medians are reported with their ratios (target: >= 0.95). edgecl is measured on chat's normal
path and, separately, with the trigger-suppression processor attached (a fallback answer).
Prints one JSON object, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from edgecl.core.protocol import STOP_STRINGS, build_messages
from edgecl.generation import load_engine

PROMPT = "Name three colours and say one thing about each."


def timed(pieces) -> tuple[float, float]:
    """(seconds to the first piece, pieces per second after it) of a stream."""
    start = time.perf_counter()
    first, n = None, 0
    for _ in pieces:
        first = first or time.perf_counter() - start
        n += 1
    total = time.perf_counter() - start
    return first or 0.0, (n - 1) / max(total - (first or 0.0), 1e-9)


def raw_mlx(engine, messages, max_tokens):
    from mlx_lm.generate import stream_generate
    from mlx_lm.sample_utils import make_sampler

    model = engine.model
    ids = model.chat_ids(messages)
    sampler = make_sampler(temp=0.0)
    text = ""
    for r in stream_generate(model.model, model.tokenizer, ids, max_tokens=max_tokens,
                             sampler=sampler):  # fmt: skip
        yield r.text
        text += r.text
        if any(stop in text for stop in STOP_STRINGS):
            return


def raw_llama(engine, messages, max_tokens):
    engine.llm.llm.reset()
    chunks = engine.llm.llm.create_chat_completion(
        messages=messages, max_tokens=max_tokens, temperature=0.0, top_k=0, top_p=1.0,
        min_p=0.0, repeat_penalty=1.0, stream=True, stop=list(STOP_STRINGS),
    )  # fmt: skip
    return (
        c["choices"][0]["delta"]["content"]
        for c in chunks
        if c["choices"][0]["delta"].get("content")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--adapter", type=Path, default=None)
    args = parser.parse_args()
    messages = build_messages("math", PROMPT)
    out = {"load_average": os.getloadavg(), "max_tokens": args.max_tokens, "trials": args.trials}
    for backend, raw in (("mlx", raw_mlx), ("llamacpp", raw_llama)):
        engine = load_engine(backend, None, args.adapter)
        ours, suppressing, theirs = [], [], []
        for _ in range(args.trials):  # alternate, so a drifting load hits all alike
            ours.append(timed(engine.stream(messages, args.max_tokens, 0.0, False)))
            suppressing.append(timed(engine.stream(messages, args.max_tokens, 0.0, True)))
            theirs.append(timed(raw(engine, messages, args.max_tokens)))

        def summary(rows):
            return {"ttft_s": statistics.median(r[0] for r in rows),
                    "pieces_per_s": statistics.median(r[1] for r in rows)}  # fmt: skip

        a, b, c = summary(ours), summary(theirs), summary(suppressing)
        out[backend] = {
            "edgecl": a,
            "raw": b,
            "edgecl_suppressing": c,
            "speed_ratio": a["pieces_per_s"] / b["pieces_per_s"],
            "ttft_ratio": b["ttft_s"] / a["ttft_s"],
            "suppressing_speed_ratio": c["pieces_per_s"] / b["pieces_per_s"],
        }
        print(json.dumps({backend: out[backend]}), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
