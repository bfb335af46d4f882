"""Data-parallel training over MLX's own distributed layer (`mx.distributed`).

    edgecl learn --task math --budget 0.3 --ranks 2                     # 2 ranks, this machine
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
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.backends.blas import preload_openblas
from edgecl.errors import EdgeclError

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
        """Rank 0's arrays on every rank, whatever the others hold: its keys, in its order (a
        loaded optimizer state orders them otherwise than a fresh one, and a ring all-sum of
        mismatched shapes waits forever), the others contributing zeros."""
        if self.group is None:
            return arrays
        layout = self.broadcast(
            {k: [v.shape, str(v.dtype).split(".")[-1]] for k, v in arrays.items()}
        )
        out = {}
        for key, (shape, dtype) in layout.items():
            mine = arrays[key] if self.is_main else mx.zeros(shape, getattr(mx, dtype))
            out[key] = mx.distributed.all_sum(mine, group=self.group)
        return out

    def cores_per_rank(self) -> int:
        """This machine's cores shared among the ranks that run on it (for llama.cpp threads):
        the union of their affinities (all of it, or each rank's pinned share) over their count."""
        host = socket.gethostname()
        mine = [(h, cores) for h, cores in self.gather([host, _cores()]) if h == host]
        if any(cores is None for _, cores in mine):  # no affinity here (macOS)
            return max(1, _core_count() // len(mine))
        return max(1, len(set().union(*(cores for _, cores in mine))) // len(mine))

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


def _cores() -> list[int] | None:
    """The cores this process may run on (its affinity, under taskset or a cgroup); None where
    the OS does not say (macOS)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _core_count() -> int:
    cores = _cores()
    return len(cores) if cores else os.cpu_count() or 1


def launched() -> bool:
    """Whether this process is a rank that a launcher started (ours or `mlx.launch`)."""
    return "MLX_RANK" in os.environ


def check_ranks(ranks: int, option: str = "--ranks") -> None:
    """One rank (or job) per core at most: more would only share cores and go slower."""
    available = _core_count()
    if not 1 <= ranks <= available:
        raise EdgeclError(
            f"{option} {ranks}: this machine gives {available} cores, so use 1 to {available}"
        )


def launch_local(command: list[str], ranks: int) -> int:
    """Run `command` as `ranks` processes of one data-parallel world on this machine (MLX's ring
    backend over 127.0.0.1), each pinned to its own share of the cores with as many BLAS
    threads. MLX's CPU elementwise ops use one core, so on a small x86 box two single-core
    ranks update faster than one process on both (benchmarks/README.md). `mlx.launch -n` does
    the same but relays output in a loop that takes most of a core. Returns 0, or the exit code
    of the first failed rank reaped, after stopping the others (they would wait on it forever)."""
    check_ranks(ranks)
    with tempfile.TemporaryDirectory(prefix="edgecl-ranks-") as tmp:
        hostfile = Path(tmp) / "hosts.json"
        hostfile.write_text(json.dumps([[f"127.0.0.1:{port}"] for port in _free_ports(ranks)]))
        procs = []
        for rank, share in enumerate(core_shares(ranks)):
            env, pin = pinned(share, ranks)
            env.update(MLX_HOSTFILE=str(hostfile), MLX_RANK=str(rank))
            procs.append(subprocess.Popen(command, env=env, preexec_fn=pin))
        return _wait_all(procs)


def core_shares(n: int) -> list[list[int] | None]:
    """n equal, disjoint shares of this process's cores; None each where the OS does not say."""
    cores, per = _cores(), max(1, _core_count() // n)
    return [cores[k * per : (k + 1) * per] if cores else None for k in range(n)]


def pinned(share: list[int] | None, n: int) -> tuple[dict, Callable[[], None] | None]:
    """The environment (as many BLAS threads as cores) and the preexec_fn that pin a child
    process to `share`, one of `n` shares (unpinned where the OS gives no affinity)."""
    threads = str(len(share) if share else max(1, _core_count() // n))
    env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
    return env, (lambda: os.sched_setaffinity(0, share)) if share else None


def _wait_all(procs: list[subprocess.Popen]) -> int:
    pending, failed = {p.pid: p for p in procs}, 0
    while pending:
        try:
            pid, status = os.wait()
        except KeyboardInterrupt:  # the ranks got the same Ctrl-C: let them save and stop
            continue
        if pending.pop(pid, None) is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and not failed:
            failed = code
            for other in pending.values():
                other.terminate()
    return failed


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
