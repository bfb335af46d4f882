"""Make MLX's CPU matmuls use OpenBLAS on Linux.

The Linux `mlx-cpu` wheel bundles the reference BLAS (about 3 GFLOP/s here). Loading OpenBLAS
with RTLD_GLOBAL before `import mlx.core` makes its symbols win (about 88 GFLOP/s, a LoRA step
27x faster). Debian/Ubuntu: `apt-get install libopenblas0-pthread`. Set EDGECL_BLAS=/path/to/lib
to choose a library, or EDGECL_BLAS=none to skip.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
)

loaded: str | None = None


def preload_openblas() -> str | None:
    """Load OpenBLAS globally (Linux only, before MLX). Returns the path loaded, if any."""
    global loaded
    choice = os.environ.get("EDGECL_BLAS", "")
    if loaded or sys.platform != "linux" or choice == "none" or "mlx.core" in sys.modules:
        return loaded
    paths = [choice] if choice else [*_CANDIDATES, ctypes.util.find_library("openblas") or ""]
    for path in paths:
        if path and (Path(path).exists() or not path.startswith("/")):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            loaded = path
            return loaded
    return None
