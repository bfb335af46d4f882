"""Three A/Bs behind benchmarks/README.md's levers table, alternating in one process:

    python benchmarks/adhoc/kernels_ab.py head      # the vocabulary softmax: MLX's ops / the kernel
    python benchmarks/adhoc/kernels_ab.py packing   # a micro-batch's rows padded / packed
    python benchmarks/adhoc/kernels_ab.py decode    # sampling: MLX's softmax and SwiGLU / kernels

`head`: log pi(target) over 49152 logits at 8 x 128 positions, forward and backward, without the
vocabulary matmul. `decode`: `MLXModel.sample` of 4 prompts x G 8 x 128 tokens, EOS ignored
(benchmarks/sampling.py's shape), with decode attention's softmax and the MLP's SwiGLU in MLX's
ops or the kernels; prints tok/s too. `packing`: 2 micro-batches of one group of 8 completions
of 40-96 random tokens after a math prompt (the real-EOS shape of `learn`'s default 96
tokens), the update's loss and gradient with LoRA rank 8 on every layer. Prints seconds per
trial and the load.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[2]))
from edgecl.backends import kernels  # noqa: E402  (OpenBLAS before MLX)


def head() -> dict:
    import mlx.core as mx

    rng = np.random.default_rng(0)
    logits = mx.array(rng.normal(0, 4, (8, 128, 49152)).astype(np.float32))
    targets = mx.array(rng.integers(0, 49152, (8, 128)).astype(np.int32))
    w = mx.array(rng.normal(size=(8, 128)).astype(np.float32))
    assert kernels.apply_to(logits), "no kernel: run bash scripts/build_kernels.sh"

    def mlx_ops(x):
        lp = x - mx.logsumexp(x, axis=-1, keepdims=True)
        return (mx.take_along_axis(lp, targets[..., None], axis=-1)[..., 0] * w).sum()

    def kernel(x):
        return (kernels.target_logprobs(x, targets)[0] * w).sum()

    return {name: (lambda f=f: mx.eval(mx.value_and_grad(f)(logits)))
            for name, f in (("mlx ops", mlx_ops), ("kernel", kernel))}  # fmt: skip


def packing() -> dict:
    import mlx.core as mx
    import mlx.nn as nn

    import edgecl.backends.mlx_loss as mlx_loss
    from edgecl.backends.base import LoraConfig
    from edgecl.backends.llama_forward import is_plain_llama
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.core.protocol import build_messages
    from edgecl.models.registry import resolve_model
    from edgecl.tasks.registry import get_task

    entry = resolve_model(None)
    model = MLXModel.load(entry.mlx_dir, entry.name)
    model.attach_lora(LoraConfig(rank=8, alpha=16, num_layers=-1))
    task, rng = get_task("math", None, 0), np.random.default_rng(0)
    batches = []
    for item in task.items("train")[:2]:
        prompt = model.chat_ids(build_messages(task.kind, item.question, item.choices))
        lengths = [40, 45, 50, 55, 60, 70, 96, 96]
        batches.append(mlx_loss.pack([prompt] * 8, [rng.integers(100, 40000, n).tolist()
                                                    for n in lengths]))  # fmt: skip
    w = mx.array(np.linspace(-1, 1, 8).astype(np.float32))
    model.model.train()
    loss_and_grad = nn.value_and_grad(model.model, mlx_loss.pg_loss)

    def run(packed):  # the padded path is the one other model families take
        mlx_loss.is_plain_llama = is_plain_llama if packed else lambda model: False
        mx.eval([loss_and_grad(model.model, *b, w, 16.0) for b in batches])

    return {"padded": lambda: run(False), "packed": lambda: run(True)}


def decode() -> dict:
    import mlx.core as mx

    import edgecl.backends.mlx_attention as attention
    import edgecl.backends.mlx_backend as backend
    from edgecl.models.registry import resolve_model

    entry = resolve_model(None)
    model = backend.MLXModel.load(entry.mlx_dir, entry.name)
    model.eos_ids = set()  # every completion runs to 128 tokens
    chats = [[{"role": "user", "content": f"Count to {n}."}] for n in (3, 5, 7, 9)]
    prompts = [model.chat_ids(chat) for chat in chats]
    kernel = (attention.causal_softmax, backend.mlp)
    mlx_ops = (lambda scores, _: mx.softmax(scores, axis=-1, precise=True), lambda m, x: m(x))

    def run(parts):
        attention.causal_softmax, backend.mlp = parts
        start = time.perf_counter()
        out = model.sample(prompts, 8, 128, temperature=1.0, seed=0)
        rate = sum(len(c.token_ids) for c in out) / (time.perf_counter() - start)
        print(f"{rate:.1f} tok/s")

    return {"mlx ops": lambda: run(mlx_ops), "kernels": lambda: run(kernel)}


def main() -> None:
    modes = {"head": head, "packing": packing, "decode": decode}
    trials = modes[sys.argv[1] if len(sys.argv) > 1 else "head"]()
    for f in trials.values():
        f()  # first calls allocate
    for _ in range(3):
        for name, f in trials.items():
            start = time.perf_counter()
            f()
            print(f"{name}: {time.perf_counter() - start:.2f} s  load {os.getloadavg()[0]:.2f}",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
