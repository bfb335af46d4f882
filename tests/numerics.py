"""Tolerances for the numerical tests, derived from floating-point error bounds, not tuned to a box.

    from numerics import U16, gamma, rel_err, to_float64

What changes between CPUs is the order in which BLAS adds things up: OpenBLAS picks its kernels
by core (`OPENBLAS_CORETYPE=Haswell`, `Zen`, `SkylakeX` with AVX-512 give different blockings),
and so does the reference BLAS. Whatever the order, a floating-point sum of n terms is off by at
most gamma(n) = n*u / (1 - n*u) of the sum of the terms' magnitudes, u the unit roundoff (Higham,
"Accuracy and Stability of Numerical Algorithms", 3.1). Errors are stated relative to the
largest magnitude of the reference tensor, and each bound names the reduction it comes from.

Where a float64 reference is cheap (the tiny model on the CPU) the two computations are compared
in float64, so a real difference between them stands out by orders of magnitude. MLX's fused
kernels `mx.fast.rms_norm` and `mx.fast.rope` compute in float32 inside, even on float64 inputs
(measured by `benchmarks/float_error.py`: their vjps are off by 3e-7 and 1e-6 of the largest
entry against plain float64 ops), so such a float64 model is exact to the float32 roundoff of its
norms, gamma(hidden size), not to float64's.

The suite was run whole under each kernel set a user may get (tests/README.md).
"""

from __future__ import annotations

import numpy as np

U32 = 2.0**-24  # unit roundoff of float32 (half its machine epsilon)
U16 = 2.0**-11  # unit roundoff of float16 (llama.cpp's default KV cache)


def gamma(n: int, u: float = U32) -> float:
    """Higham's bound on the relative error of a sum of n terms rounded to unit roundoff u."""
    assert n * u < 1, "the bound needs n*u < 1"
    return n * u / (1 - n * u)


def rel_err(got, want) -> float:
    """max |got - want| relative to max |want|."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


def to_float64(model) -> None:
    """Turn an MLXModel's floating-point weights (LoRA included) into float64, in place. MLX
    computes float64 on the CPU only: use it under the `cpu_device` fixture."""
    import mlx.core as mx
    from mlx.utils import tree_map

    model.model.update(
        tree_map(
            lambda p: p.astype(mx.float64) if mx.issubdtype(p.dtype, mx.floating) else p,
            model.model.parameters(),
        )
    )


def logits_tol(config: dict, f16_kv_cache: bool = False) -> float:
    """max |llama.cpp - MLX| logits, relative to the largest |MLX logit|, for a float32 model.

    Each backend is within gamma(longest dot product, the MLP's) of exact, whatever kernels it
    uses. llama.cpp's default float16 KV cache rounds every key and value (u16 each); through
    the layers: 2 roundings x 2 (keys' error passes through the softmax) x layers."""
    if f16_kv_cache:
        return 4 * config["num_hidden_layers"] * U16
    return 2 * gamma(config["intermediate_size"])
