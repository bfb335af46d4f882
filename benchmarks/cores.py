"""Do MLX's CPU ops use every core? The same ops with all cores, then pinned to one.

    python benchmarks/cores.py          # about 30 s; one JSON line per setting

Elementwise ops over 12288 x 782 float32 (the update's SwiGLU size for 8 rows) and a 2048^3
matmul, each the mean of 10 evaluations. An op that uses several cores is faster unpinned.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time


def measure() -> dict:
    from edgecl.backends.blas import preload_openblas

    preload_openblas()  # before MLX, as edgecl does
    mx = importlib.import_module("mlx.core")

    x, y = mx.random.normal((12288, 782)), mx.random.normal((12288, 782))
    a = mx.random.normal((2048, 2048))
    mx.eval(x, y, a)

    def ms(f, n: int = 10) -> float:
        mx.eval(f())
        start = time.perf_counter()
        for _ in range(n):
            mx.eval(f())
        return round((time.perf_counter() - start) / n * 1e3, 1)

    return {
        "cores": sorted(os.sched_getaffinity(0)),
        "multiply_ms": ms(lambda: x * y),
        "exp_ms": ms(lambda: mx.exp(x)),
        "sigmoid_ms": ms(lambda: mx.sigmoid(x)),
        "matmul_2048_ms": ms(lambda: a @ a, 3),
        "load": os.getloadavg()[0],
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--one-core"]:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        print(json.dumps(measure()), flush=True)
    else:
        print(json.dumps(measure()), flush=True)
        subprocess.run([sys.executable, __file__, "--one-core"], check=True)
