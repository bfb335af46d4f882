"""Data-parallel training over MLX's own distributed layer (`mx.distributed`).

    mlx.launch -n 2 --backend ring -- .venv/bin/edgecl learn --task math --budget 0.3
    mlx.launch --hosts mac1,mac2 --backend ring -- edgecl learn ...     # two machines

One process per rank; `World.init()` finds the group `mlx.launch` set up (ring: Macs over
Ethernet or Thunderbolt, and any box over TCP; NCCL on NVIDIA). Outside `mlx.launch` the world
is one process and every method is the identity, so single-machine training takes this path too.

Rank 0 is the source of truth: it owns the store and the checkpoints, and the others receive
its adapter, optimizer and trainer state at the start (`broadcast_arrays`, `broadcast`).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import numpy as np

from edgecl.backends.blas import preload_openblas

preload_openblas()
import mlx.core as mx  # noqa: E402
from mlx.utils import tree_map  # noqa: E402


class World:
    """The ranks of one training run; size 1 without `mlx.launch`."""

    def __init__(self, group=None) -> None:
        self.group = group
        self.rank = group.rank() if group is not None else 0
        self.size = group.size() if group is not None else 1

    @classmethod
    def init(cls) -> World:
        if not mx.distributed.is_available():
            return cls()
        group = mx.distributed.init()
        return cls(group if group.size() > 1 else None)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> list[int]:
        """This rank's indices of n items (every size-th, from its rank)."""
        return list(range(self.rank, n, self.size))

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum over ranks (float64 in, float32 across the wire, float64 out)."""
        if self.group is None:
            return np.asarray(values, dtype=np.float64)
        out = mx.distributed.all_sum(mx.array(np.asarray(values, np.float32)), group=self.group)
        return np.array(out, dtype=np.float64)

    def sum_tree(self, tree):
        """Sum a tree of MLX arrays (gradients) over ranks."""
        if self.group is None:
            return tree
        return tree_map(lambda g: mx.distributed.all_sum(g, group=self.group), tree)

    def broadcast_arrays(self, arrays: dict[str, mx.array]) -> dict[str, mx.array]:
        """Rank 0's arrays on every rank (the others contribute zeros of the same shapes)."""
        if self.group is None:
            return arrays
        return {
            k: mx.distributed.all_sum(v if self.is_main else mx.zeros_like(v), group=self.group)
            for k, v in arrays.items()
        }

    def cores_per_rank(self) -> int:
        """This machine's cores shared among the ranks that run on it (for llama.cpp threads)."""
        host = socket.gethostname()
        return max(1, _usable_cores() // sum(h == host for h in self.gather(host)))

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's JSON-able `obj`, in rank order, on every rank."""
        if self.group is None:
            return [obj]
        data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
        lengths = np.zeros(self.size)
        lengths[self.rank] = len(data)
        lengths = self.sum(lengths).astype(int)
        padded = np.zeros(int(lengths.max()), dtype=np.uint8)
        padded[: len(data)] = data
        everything = np.array(mx.distributed.all_gather(mx.array(padded), group=self.group))
        rows = everything.reshape(self.size, -1)
        return [json.loads(row[:n].tobytes()) for row, n in zip(rows, lengths)]

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's JSON-able `obj` on every rank."""
        return self.gather(obj if self.is_main else None)[0]


def _usable_cores() -> int:
    """The cores this process may run on (its affinity, under taskset or a cgroup)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1
