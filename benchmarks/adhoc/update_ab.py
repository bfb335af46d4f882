"""A/B of two update levers that were measured and not kept (benchmarks/README.md, "Levers
measured"), each against the plain path, alternating in one process.

    python benchmarks/adhoc/update_ab.py compile   # nn.value_and_grad plain / mx.compile'd
    python benchmarks/adhoc/update_ab.py streams   # 2 micro-batches in turn / on 2 CPU streams

Micro-batches of 8 completions of 64 random tokens after a math prompt, LoRA rank 8 on every
layer, as `edgecl learn` trains. Prints the largest gradient difference, the seconds of each
trial, and the GEMM rate and load.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))
from edgecl.backends.base import LoraConfig  # noqa: E402
from edgecl.backends.mlx_backend import MLXModel  # noqa: E402  (OpenBLAS before MLX)
from edgecl.backends.mlx_loss import pack, pg_loss  # noqa: E402
from edgecl.core.protocol import build_messages  # noqa: E402
from edgecl.models.registry import resolve_model  # noqa: E402
from edgecl.tasks.registry import get_task  # noqa: E402
from gemm import gemm_gflops  # noqa: E402


def main() -> None:
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    lever = sys.argv[1] if len(sys.argv) > 1 else "compile"
    entry = resolve_model(None)
    model = MLXModel.load(entry.mlx_dir, entry.name)
    model.attach_lora(LoraConfig(rank=8, alpha=16, num_layers=-1))
    task, rng = get_task("math", None, 0), np.random.default_rng(0)
    batches = []
    for item in task.items("train")[: 1 if lever == "compile" else 2]:
        prompt = model.chat_ids(build_messages(task.kind, item.question, item.choices))
        completions = [rng.integers(100, 40000, 64).tolist() for _ in range(8)]
        batches.append(pack([prompt] * 8, completions))
    w = mx.array(np.linspace(-1, 1, 8).astype(np.float32))
    model.model.train()
    loss_and_grad = nn.value_and_grad(model.model, pg_loss)

    def plain():
        out = [loss_and_grad(model.model, *b, w, 128.0) for b in batches]
        for o in out:
            mx.eval(o)  # one after the other
        return out

    state = model.model.state
    compiled = mx.compile(lambda *b: loss_and_grad(model.model, *b, w, 128.0), inputs=state,
                          outputs=state)  # fmt: skip
    streams = [mx.new_stream(mx.cpu) for _ in batches]

    def other():
        if lever == "compile":
            out = [compiled(*b) for b in batches]
        else:
            out = []
            for b, stream in zip(batches, streams):
                with mx.stream(stream):
                    out.append(loss_and_grad(model.model, *b, w, 128.0))
        mx.eval(out)  # all at once
        return out

    a, b = plain(), other()
    diff = max(
        float(mx.abs(x - y).max())
        for (_, ga), (_, gb) in zip(a, b)
        for (_, x), (_, y) in zip(tree_flatten(ga), tree_flatten(gb))
    )
    print(f"{lever}: largest gradient difference {diff}", flush=True)
    times: dict[str, list[float]] = {"plain": [], lever: []}
    for _ in range(4 if lever == "compile" else 3):
        for name, run in (("plain", plain), (lever, other)):
            start = time.perf_counter()
            run()
            times[name].append(round(time.perf_counter() - start, 3))
    print(times, "gemm GFLOP/s", round(gemm_gflops()), "load", os.getloadavg())


if __name__ == "__main__":
    main()
