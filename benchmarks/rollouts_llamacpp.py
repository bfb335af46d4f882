"""Should GRPO rollouts be sampled on llama.cpp (current adapter exported to GGUF LoRA) instead
of with MLX's batched sampler? Measured on the real bundled model.

    python benchmarks/rollouts_llamacpp.py              # G=8 x 128 tokens x 4 prompts, ~10 min
    python benchmarks/rollouts_llamacpp.py --group-size 2 --max-tokens 16   # a quick smoke run

Measurements, one JSON line each (with the 1-minute load average before and after):
  mlx_sample         MLX `sample` (LoRA attached) of G x prompts completions, aggregate tok/s
  mlx_pg_step        one policy-gradient step on that batch (what MLX does between rollouts)
  adapter_reload     save_adapter + export_gguf_lora + a new LlamaCppModel with the adapter:
                     what using llama.cpp for rollouts adds to every training step
  llamacpp_sample    the same completions one after another on llama.cpp (Q4_1 GGUF + adapter,
                     T=1), n_threads 1 and 2
  overlap_thread     llama.cpp sampling in a background thread (n_threads=1) while MLX runs the
  overlap_process    policy-gradient step, vs each alone; the same with a child process
  logits_gap         MLX (float32) vs llama.cpp (Q4_1, f16 KV) next-token distribution on one
                     prompt: how off-policy llama.cpp's samples are
Every completion runs to max_tokens (EOS ignored), as in benchmarks/sampling.py, whose prompts
these are. The last line is the conclusion.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from sampling import PROMPTS  # benchmarks/sampling.py, next to this file


def load() -> float:
    return round(os.getloadavg()[0], 2)


def emit(name: str, **fields) -> dict:
    row = {"measurement": name, **fields}
    print(json.dumps(row), flush=True)
    return row


def llama_rollouts(llm, prompts, group_size: int, max_tokens: int, seed: int = 0, reuse=True):
    """G completions of each prompt, one at a time, each run to max_tokens: (tokens, seconds).

    As LlamaCppModel.generate_ids, minus its stop at end-of-generation; with `reuse`, without
    its reset() either, so llama-cpp-python keeps the prompt's KV cache for the group's next
    completion (it re-evaluates only the last prompt token) instead of prefilling G times.
    """
    start = time.perf_counter()
    n = 0
    for p, prompt in enumerate(prompts):
        for g in range(group_size):
            llm.llm.set_seed(seed + p * group_size + g)
            if not reuse:
                llm.llm.reset()
            stream = llm.llm.generate(
                list(prompt),
                temp=1.0,
                top_k=0,
                top_p=1.0,
                min_p=0.0,
                repeat_penalty=1.0,
                reset=True,
            )
            for i, _ in enumerate(stream, 1):
                if i >= max_tokens:
                    break
            n += i
    return n, time.perf_counter() - start


def _llama_worker(gguf, lora, n_threads, prompts, group_size, max_tokens, conn) -> None:
    """Child process for overlap_process: load, report ready, wait for go, sample, report."""
    from edgecl.backends.llamacpp import LlamaCppModel

    with LlamaCppModel(gguf, adapter_gguf=lora, n_threads=n_threads) as llm:
        conn.send("ready")
        conn.recv()
        start = time.perf_counter()
        n, seconds = llama_rollouts(llm, prompts, group_size, max_tokens)
        conn.send((n, seconds, start))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--reloads", type=int, default=3, help="adapter_reload repetitions")
    args = parser.parse_args()

    import mlx.core as mx
    import numpy as np

    from edgecl.backends.base import LoraConfig
    from edgecl.backends.llamacpp import LlamaCppModel
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.models.export import export_gguf_lora
    from edgecl.models.registry import ensure_gguf, resolve_model

    entry = resolve_model(args.model)
    gguf = ensure_gguf(entry)
    model = MLXModel.load(entry.mlx_dir, entry.name)
    model.attach_lora(LoraConfig(rank=8, alpha=16.0), learning_rate=1e-4)  # all 7 keys, all layers
    model.eos_ids = set()  # every completion runs to max_tokens
    prompts = [model.chat_ids([{"role": "user", "content": p}]) for p in PROMPTS]
    G, T = args.group_size, args.max_tokens
    emit(
        "setup",
        model=entry.name,
        gguf=Path(gguf).name,
        group_size=G,
        prompts=len(prompts),
        max_tokens=T,
        prompt_tokens=[len(p) for p in prompts],
        cpus=os.cpu_count(),
        load=load(),
    )

    # (a) MLX batched sampling, LoRA attached (as during training)
    before = load()
    start = time.perf_counter()
    outs = model.sample(prompts, G, T, temperature=1.0, seed=0)
    seconds = time.perf_counter() - start
    n = sum(len(o.token_ids) for o in outs)
    mlx_sample = emit(
        "mlx_sample",
        tokens=n,
        seconds=round(seconds, 2),
        tok_s=round(n / seconds, 1),
        load_before=before,
        load_after=load(),
    )

    batch_prompts = [prompts[o.prompt_index] for o in outs]
    batch_ids = [o.token_ids for o in outs]
    weights = np.random.default_rng(0).standard_normal(len(outs)).tolist()  # advantage-like
    normalizer = float(sum(len(c) for c in batch_ids))

    def pg_step() -> float:
        start = time.perf_counter()
        model.policy_gradient_step(batch_prompts, batch_ids, weights, normalizer)
        return time.perf_counter() - start

    # the policy-gradient step alone (its update also makes lora_b non-zero for the export)
    before = load()
    pg_alone = pg_step()
    emit(
        "mlx_pg_step",
        sequences=len(batch_ids),
        tokens=int(normalizer),
        seconds=round(pg_alone, 2),
        load_before=before,
        load_after=load(),
    )

    with tempfile.TemporaryDirectory() as tmp:
        adapter_dir = Path(tmp) / "adapter"
        lora = Path(tmp) / "adapter.gguf"

        # (c) what a llama.cpp rollout adds per training step: save, export, reload
        before = load()
        parts = {"save": [], "export": [], "load": []}
        for _ in range(args.reloads):
            t0 = time.perf_counter()
            model.save_adapter(adapter_dir)
            t1 = time.perf_counter()
            export_gguf_lora(adapter_dir, lora, base_gguf=gguf)
            t2 = time.perf_counter()
            LlamaCppModel(gguf, adapter_gguf=lora, n_threads=1).close()
            t3 = time.perf_counter()
            for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                parts[key].append(value)
        t0 = time.perf_counter()
        LlamaCppModel(gguf, n_threads=1).close()
        base_load = time.perf_counter() - t0
        medians = {k: statistics.median(v) for k, v in parts.items()}
        reload = emit(
            "adapter_reload",
            repetitions=args.reloads,
            save_s=round(medians["save"], 3),
            export_s=round(medians["export"], 3),
            load_with_adapter_s=round(medians["load"], 3),
            load_without_adapter_s=round(base_load, 3),
            total_s=round(sum(medians.values()), 2),
            adapter_mb=round(lora.stat().st_size / 2**20, 1),
            load_before=before,
            load_after=load(),
        )

        # (b) llama.cpp, one completion after another
        llama = {}
        for threads in (1, 2):
            with LlamaCppModel(gguf, adapter_gguf=lora, n_threads=threads) as llm:
                before = load()
                n, seconds = llama_rollouts(llm, prompts, G, T)
            llama[threads] = emit(
                "llamacpp_sample",
                n_threads=threads,
                adapter=True,
                tokens=n,
                seconds=round(seconds, 2),
                tok_s=round(n / seconds, 1),
                load_before=before,
                load_after=load(),
            )

        # (d) llama.cpp sampling (next batch) while MLX takes the step on the previous batch
        with LlamaCppModel(gguf, adapter_gguf=lora, n_threads=1) as llm:
            result = {}

            def background() -> None:
                result["n"], result["seconds"] = llama_rollouts(llm, prompts, G, T, seed=1000)

            before = load()
            start = time.perf_counter()
            thread = threading.Thread(target=background)
            thread.start()
            pg_together = pg_step()
            thread.join()
            wall = time.perf_counter() - start
        overlap_thread = emit(
            "overlap_thread",
            pg_alone_s=round(pg_alone, 2),
            llama_alone_s=llama[1]["seconds"],
            pg_together_s=round(pg_together, 2),
            llama_together_s=round(result["seconds"], 2),
            wall_together_s=round(wall, 2),
            sum_alone_s=round(pg_alone + llama[1]["seconds"], 2),
            saving=round(1 - wall / (pg_alone + llama[1]["seconds"]), 3),
            load_before=before,
            load_after=load(),
        )

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_llama_worker, args=(str(gguf), str(lora), 1, prompts, G, T, child)
        )
        proc.start()
        assert parent.recv() == "ready"
        before = load()
        start = time.perf_counter()
        parent.send("go")
        pg_together = pg_step()
        n, llama_seconds, _ = parent.recv()
        wall = time.perf_counter() - start
        proc.join()
        overlap_process = emit(
            "overlap_process",
            pg_alone_s=round(pg_alone, 2),
            llama_alone_s=llama[1]["seconds"],
            pg_together_s=round(pg_together, 2),
            llama_together_s=round(llama_seconds, 2),
            wall_together_s=round(wall, 2),
            sum_alone_s=round(pg_alone + llama[1]["seconds"], 2),
            saving=round(1 - wall / (pg_alone + llama[1]["seconds"]), 3),
            load_before=before,
            load_after=load(),
        )

        # how far llama.cpp's Q4_1 compute is from MLX's float32 copy of the same weights
        prompt = prompts[0]
        want = np.array(model.model(mx.array([prompt]))[0, -1].astype(mx.float32))
        with LlamaCppModel(gguf, adapter_gguf=lora) as llm:
            got = llm.logits(prompt)
        lp_want = want - np.logaddexp.reduce(want)
        lp_got = got - np.logaddexp.reduce(got)
        emit(
            "logits_gap",
            max_abs_logit_diff=round(float(np.abs(got - want).max()), 4),
            max_abs_logit=round(float(np.abs(want).max()), 2),
            kl_llama_mlx=float(f"{np.sum(np.exp(lp_got) * (lp_got - lp_want)):.3g}"),
            same_argmax=bool(got.argmax() == want.argmax()),
        )

    # per training step: rollouts + step, sequentially, vs llama.cpp rollouts
    best = max(llama.values(), key=lambda r: r["tok_s"])
    mlx_step = mlx_sample["seconds"] + pg_alone
    llama_step = best["seconds"] + reload["total_s"] + pg_alone
    overlapped = min(overlap_thread["wall_together_s"], overlap_process["wall_together_s"])
    pipelined = overlapped + reload["total_s"]
    emit(
        "conclusion",
        llamacpp_vs_mlx_sampling=round(best["tok_s"] / mlx_sample["tok_s"], 2),
        best_llamacpp_threads=best["n_threads"],
        step_mlx_rollouts_s=round(mlx_step, 1),
        step_llamacpp_rollouts_s=round(llama_step, 1),
        step_llamacpp_overlapped_s=round(pipelined, 1),
        note=(
            "step = rollouts + policy-gradient step; llama.cpp adds the adapter reload; "
            "'overlapped' samples batch k+1 (off-policy by one step) during the step on batch k"
        ),
    )


if __name__ == "__main__":
    main()
