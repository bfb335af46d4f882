"""The daemon's speed against the raw engine, and its latency under concurrent clients.

    python benchmarks/daemon.py                  # the learner's adapter (base model if none)
    python benchmarks/daemon.py --trials 7 --max-tokens 64 --clients 4

Starts `edgecl daemon` on a free port of this data dir (stops it after), then alternates
trials of one streamed answer through the daemon (the `openai` client) and one straight from
mlx-lm's `stream_generate` on the same model, adapter, protocol messages and greedy settings:
time to first token (first delta) and tokens/s after it, medians over the trials. Then
`--clients` threads send `--requests` plain completions each at once: p50/p95 latency. No cloud
(every answer local), so the numbers are the serving overhead. Then the same latency during an
adaptation cycle: `--adapt` math questions with their answers are logged as if the cloud had
answered them, the daemon starts a cycle on them (edgecl.adapt), and the clients run while it
trains (stopping the daemon interrupts the cycle: nothing is promoted). Those exchanges stay in
the log, so set EDGECL_HOME to a data dir of its own. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

QUESTIONS = ["What is 17 + 25?", "Name three colours.", "What is 6 times 7?",
             "Give one tip for sleeping well.", "What is 123 + 456?"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def through_daemon(client, question: str, max_tokens: int) -> tuple[float, float]:
    start = time.perf_counter()
    first, usage = None, None
    stream = client.chat.completions.create(
        model="edgecl", messages=[{"role": "user", "content": question}], max_tokens=max_tokens,
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    for chunk in stream:
        delta = chunk.choices[0].delta if chunk.choices else None
        shown = delta and (delta.content or delta.model_extra.get("reasoning_content"))
        if first is None and shown:
            first = time.perf_counter()
        usage = chunk.usage or usage
    end = time.perf_counter()
    return first - start, (usage.completion_tokens - 1) / max(end - first, 1e-9)


def raw(model, question: str, max_tokens: int) -> tuple[float, float]:
    from mlx_lm.generate import stream_generate
    from mlx_lm.sample_utils import make_sampler

    from edgecl.core.protocol import build_messages

    ids = model.chat_ids(list(build_messages("math", question)))
    start, first, n = time.perf_counter(), None, 0
    for _ in stream_generate(model.model, model.tokenizer, ids, max_tokens=max_tokens,
                             sampler=make_sampler(temp=0.0)):  # fmt: skip
        first = first or time.perf_counter()
        n += 1
    end = time.perf_counter()
    return first - start, (n - 1) / max(end - first, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3, help="per client")
    parser.add_argument("--adapt", type=int, default=32, help="workload items fed (0: no cycle)")
    args = parser.parse_args()

    from openai import OpenAI

    from edgecl import daemon
    from edgecl import learner as learners
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.models.registry import resolve_model
    from edgecl.store import Store

    port = free_port()
    log = daemon.home() / "daemon.log"
    marker = f"benchmark {time.time()}"  # this run's part of the log
    with log.open("a") as f:
        f.write(marker + "\n")
    from edgecl.adapt import new_since_last_cycle

    store = Store()
    pending = new_since_last_cycle(store, "default")  # left by an earlier run: not a trigger
    store.close()
    after = str(pending + args.adapt)
    adapt_args = ["--adapt-after", after, "--adapt-idle", "0"] if args.adapt else []
    daemon.start(["--max-tokens", str(args.max_tokens), "--budget", "0", *adapt_args], port)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=daemon.token())
        me = learners.load(Store(), "default")
        adapter = None if me is None else learners.version_path(me)
        entry = resolve_model(None)
        model = MLXModel.load(entry.mlx_dir, entry.name)
        if adapter is not None:
            model.load_adapter(adapter)
        served, direct = [], []
        through_daemon(client, QUESTIONS[0], args.max_tokens)  # warm both up
        raw(model, QUESTIONS[0], args.max_tokens)
        for k in range(args.trials):
            question = QUESTIONS[k % len(QUESTIONS)]
            served.append(through_daemon(client, question, args.max_tokens))
            direct.append(raw(model, question, args.max_tokens))

        def one(k: int) -> float:
            start = time.perf_counter()
            client.chat.completions.create(
                model="edgecl", max_tokens=args.max_tokens,
                messages=[{"role": "user", "content": QUESTIONS[k % len(QUESTIONS)]}],
            )  # fmt: skip
            return time.perf_counter() - start

        n = args.clients * args.requests
        with ThreadPoolExecutor(args.clients) as pool:
            latencies = sorted(pool.map(one, range(n)))
        adapting = []
        if args.adapt:
            feed_workload(args.adapt)
            while "adaptation: starting a cycle" not in log.read_text().split(marker)[-1]:
                time.sleep(1)
            time.sleep(20)  # past the cycle's model loading, into its DA-GRPO steps
            with ThreadPoolExecutor(args.clients) as pool:
                adapting = sorted(pool.map(one, range(n)))
    finally:
        daemon.stop()

    def median(rows: list, i: int) -> float:
        return round(statistics.median(r[i] for r in rows), 4)

    print(json.dumps({
        "adapter": str(adapter), "max_tokens": args.max_tokens, "trials": args.trials,
        "load_avg": os.getloadavg(),
        "daemon": {"ttft_s": median(served, 0), "tok_s": median(served, 1)},
        "raw": {"ttft_s": median(direct, 0), "tok_s": median(direct, 1)},
        "tok_s_ratio": round(median(served, 1) / median(direct, 1), 3),
        "ttft_ratio": round(median(direct, 0) / median(served, 0), 3),
        "concurrent": {"clients": args.clients, "requests": n,
                       "p50_s": round(latencies[n // 2], 3),
                       "p95_s": round(latencies[min(n - 1, int(0.95 * n))], 3)},
        "during_adaptation": adapting and {
            "p50_s": round(adapting[n // 2], 3),
            "p95_s": round(adapting[min(n - 1, int(0.95 * n))], 3)},
    }))  # fmt: skip


def feed_workload(n: int) -> None:
    """`n` math train questions logged as answered by the cloud with their gold answers."""
    from edgecl.store import Store
    from edgecl.tasks.registry import get_task

    store, task = Store(), get_task("math")
    for item in task.items("train")[-n:]:
        answer = f"<answer>{task.gold_answer(item)}</answer>"
        store.log_exchange({"source": "daemon", "learner": "default", "cloud": 1, "help": 1,
                            "prompt": item.question, "response": answer})  # fmt: skip
    store.close()


if __name__ == "__main__":
    main()
