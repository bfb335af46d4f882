"""This box's float32 GEMM rate, the yardstick every benchmark reports its throughput against.

from gemm import gemm_gflops   # benchmarks/ is on sys.path when a script there runs
"""

from __future__ import annotations

import time

from edgecl.backends.blas import preload_openblas

preload_openblas()  # MLX's matmuls go through OpenBLAS, as in edgecl itself


def gemm_gflops(n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of the best of `repeats` n x n float32 matmuls through MLX (and so its BLAS)."""
    import mlx.core as mx

    a, b = mx.random.normal((n, n)), mx.random.normal((n, n))
    mx.eval(a @ b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(a @ b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9
