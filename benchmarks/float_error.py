"""How far float32 gradients of the policy-gradient loss are from float64 ones (issue 11).

    OPENBLAS_CORETYPE=SkylakeX python benchmarks/float_error.py   # AVX-512 OpenBLAS kernels
    OPENBLAS_CORETYPE=Haswell python benchmarks/float_error.py

On the tests' tiny random model (tests/tiny_model.py) with a LoRA, the case "one prompt G times"
of tests/test_mlx_backend.py: the shared-prefix loss and a plain forward pass, each in float32
and in float64. Prints the gap between the two paths' float64 log-probs; per gradient tensor
(the worst five), the errors relative to its largest float64 entry; then the float32 roundoff
that MLX's fused rms_norm and rope keep on float64 inputs (their vjps against plain float64
ops). tests/README.md explains what these numbers mean.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
from test_mlx_backend import PROMPTS, _both_losses  # noqa: E402

from edgecl.backends.base import LoraConfig  # noqa: E402
from edgecl.backends.mlx_backend import MLXModel  # noqa: E402
from numerics import rel_err, to_float64  # noqa: E402
from tiny_model import make_tiny_mlx  # noqa: E402


def gradients(model_dir: Path, float64: bool):
    from mlx.utils import tree_unflatten

    model = MLXModel.load(model_dir)
    model.attach_lora(LoraConfig(rank=4, alpha=8), seed=0)
    model.model.update(
        tree_unflatten([(k, v + 0.05) for k, v in model.trainable().items() if "lora_b" in k])
    )
    if float64:
        to_float64(model)
    prompt = model.chat_ids(PROMPTS[0])
    rng = np.random.default_rng(0)
    completions = [rng.integers(1, 200, size=k).tolist() for k in (5, 1, 9)]
    (shared_lp, shared), (plain_lp, plain) = _both_losses(
        model, [prompt] * 3, completions, [0.7, -1.3, 0.4]
    )
    return shared, plain, np.abs(np.array(shared_lp) - np.array(plain_lp)).max()


def fused_kernel_error() -> dict:
    import mlx.core as mx

    x = mx.random.normal((1, 4, 50, 16)).astype(mx.float64)
    w = mx.random.normal((16,)).astype(mx.float64)

    def plain_rope(x):
        inv = 1e4 ** (-mx.arange(0, 16, 2, dtype=mx.float64) / 16)
        t = mx.arange(50, dtype=mx.float64)[:, None] * inv[None]
        x1, x2 = x[..., :8], x[..., 8:]
        return mx.concatenate(
            [x1 * mx.cos(t) - x2 * mx.sin(t), x1 * mx.sin(t) + x2 * mx.cos(t)], -1
        )

    pairs = {
        "rms_norm": (
            lambda x: mx.fast.rms_norm(x, w, 1e-5),
            lambda x: x * mx.rsqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w,
        ),
        "rope": (
            lambda x: mx.fast.rope(x, 16, traditional=False, base=1e4, scale=1.0, offset=0),
            plain_rope,
        ),
    }

    def grad(f):
        return np.array(mx.grad(lambda x: (f(x) ** 3).sum())(x))

    return {name: rel_err(grad(fast), grad(plain)) for name, (fast, plain) in pairs.items()}


def main() -> None:
    model_dir = make_tiny_mlx(Path(tempfile.mkdtemp()) / "mlx")
    s32, p32, _ = gradients(model_dir, float64=False)
    s64, p64, lp_gap = gradients(model_dir, float64=True)
    print(f"float64 sequence log-probs, shared prefix vs plain forward: max gap {lp_gap:.1e}")
    rows = sorted(
        (
            (rel_err(s32[k], p64[k]), rel_err(p32[k], p64[k]), rel_err(s64[k], p64[k]), k)
            for k in p64
        ),
        reverse=True,
    )
    print("tensor: shared32 vs float64 | plain32 vs float64 | shared64 vs plain64")
    for shared, plain, both64, key in rows[:5]:
        print(f"{key}: {shared:.2e} | {plain:.2e} | {both64:.2e}")
    for name, err in fused_kernel_error().items():
        print(f"mx.fast.{name} vjp on float64 against plain float64 ops: {err:.1e}")


if __name__ == "__main__":
    main()
