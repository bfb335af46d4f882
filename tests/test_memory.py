"""memory.hold_freed_memory: a training process keeps what it frees for its next allocation."""

from __future__ import annotations

import subprocess
import sys

import pytest

FREE_50_MB = """
import sys
import numpy as np
from edgecl.backends.memory import hold_freed_memory

def resident():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

if sys.argv[1] == "hold":
    assert hold_freed_memory()
block = np.ones(50 << 20, dtype=np.uint8)  # touched, so resident
before = resident()
del block
print(before - resident())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt and /proc are Linux's")
def test_freed_blocks_stay_resident_only_when_held():
    returned = {
        mode: int(subprocess.check_output([sys.executable, "-c", FREE_50_MB, mode], text=True))
        for mode in ("default", "hold")
    }
    assert returned["default"] >= 45 << 20  # glibc unmaps a large block when it is freed
    assert returned["hold"] < 1 << 20  # held: it stays in the heap for the next array
