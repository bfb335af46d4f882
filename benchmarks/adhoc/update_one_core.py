"""The update of one micro-batch as one rank of `learn --ranks 2` runs it, call after call:

    taskset -c 0 env OPENBLAS_NUM_THREADS=1 python benchmarks/adhoc/update_one_core.py
    ... update_one_core.py --glibc-memory      # without memory.hold_freed_memory (the A/B)
    ... update_one_core.py --touch-gb 3.5      # memory touched before the first call
    perf record -g -p PID                      # while it runs: where the time goes

The loss and gradient of 8 completions of 128 random tokens after the math prompt, LoRA rank 8
on every layer (benchmarks/README.md, levers table and "The update under perf"). Prints the
first call's seconds (a process's first update also first touches its memory), then each next.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[2]))
from edgecl.backends import kernels  # noqa: E402, F401  (OpenBLAS before MLX)


def main() -> None:
    import mlx.core as mx
    import mlx.nn as nn

    from edgecl.backends import mlx_loss
    from edgecl.backends.base import LoraConfig
    from edgecl.backends.memory import hold_freed_memory
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.core.protocol import build_messages
    from edgecl.models.registry import resolve_model
    from edgecl.tasks.registry import get_task

    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--glibc-memory", action="store_true", help="skip hold_freed_memory")
    parser.add_argument("--touch-gb", type=float, default=0.0)
    args = parser.parse_args()
    if not args.glibc_memory:
        hold_freed_memory()  # as MLXModel.policy_gradient does
    entry = resolve_model(None)
    model = MLXModel.load(entry.mlx_dir, entry.name)
    model.attach_lora(LoraConfig(rank=8, alpha=16, num_layers=-1))
    task, rng = get_task("math", None, 0), np.random.default_rng(0)
    item = task.items("train")[0]
    prompt = model.chat_ids(build_messages(task.kind, item.question, item.choices))
    batch = mlx_loss.pack([prompt] * 8, [rng.integers(100, 40000, 128).tolist() for _ in range(8)])
    weights = mx.array(np.linspace(-1, 1, 8).astype(np.float32))
    model.model.train()
    loss_and_grad = nn.value_and_grad(model.model, mlx_loss.pg_loss)
    if args.touch_gb:
        np.ones(int(args.touch_gb * 1e9), dtype=np.uint8)  # written, then freed: held, if held
    print(f"pid {os.getpid()}", flush=True)
    for call in range(args.calls + 1):
        start = time.perf_counter()
        mx.eval(loss_and_grad(model.model, *batch, weights, 16.0))
        seconds = time.perf_counter() - start
        print(f"{'first' if call == 0 else 'next'}: {seconds:.2f} s  load {os.getloadavg()[0]:.2f}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
