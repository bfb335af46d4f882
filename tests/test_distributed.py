"""Data-parallel DA-GRPO over mx.distributed: 2 local ranks (ring backend on 127.0.0.1) train
as one process does on the same prompts.

.venv/bin/python -m pytest tests/test_distributed.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from edgecl.backends.distributed import launch_local
from edgecl.errors import EdgeclError
from edgecl.tasks.registry import get_task

WORKER = Path(__file__).with_name("dp_worker.py")


@pytest.fixture(scope="module")
def protocol_dir(tiny_mlx_dir, tmp_path_factory):
    from tiny_model import make_protocol_tiny

    rows = [
        {"prompt": f"What is {i % 7 + 1} + {i % 5 + 2}?", "answer": str(i % 7 + i % 5 + 3),
         "difficulty": "hard" if i % 3 == 0 else "easy"}
        for i in range(30)
    ]  # fmt: skip
    task_file = tmp_path_factory.mktemp("dp") / "sums.jsonl"
    task_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path_factory.mktemp("dp") / "mlx"
    return make_protocol_tiny(tiny_mlx_dir, out, get_task(str(task_file))), task_file


def run(command: list[str], home: Path, out: Path) -> dict:
    env = {**os.environ, "EDGECL_HOME": str(home)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return load(out)


def load(out: Path) -> dict:
    result = json.loads((out / "result.json").read_text())
    for name in ("initial", "adapter"):
        result[name] = {
            k: np.array(v) for k, v in mx.load(str(out / f"{name}.safetensors")).items()
        }
    return result


def test_two_ranks_train_as_one_process(protocol_dir, tmp_path, monkeypatch):
    model_dir, task_file = protocol_dir
    args = [str(WORKER), str(model_dir), str(task_file)]
    one = run([sys.executable, *args, str(tmp_path / "one")], tmp_path / "h1", tmp_path / "one")
    # Two ranks as `edgecl learn --ranks 2` starts them (ring over 127.0.0.1, pinned cores).
    monkeypatch.setenv("EDGECL_HOME", str(tmp_path / "h2"))
    assert launch_local([sys.executable, *args, str(tmp_path / "two")], 2) == 0
    two = load(tmp_path / "two")
    assert (one["ranks"], two["ranks"]) == (1, 2)
    cores = len(os.sched_getaffinity(0))  # two ranks on this machine share its cores
    assert (one["cores_per_rank"], two["cores_per_rank"]) == (cores, max(1, cores // 2))
    assert two["responses"] == one["responses"]  # per-prompt seeds: the same samples
    assert two["n_help"] == one["n_help"] and sum(one["n_help"]) > 0
    assert two["lambda"] == one["lambda"]  # J_c summed over ranks: the same dual steps
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4, atol=1e-6)
    # The ranks' gradients are summed in another order than one process sums them, and Adam
    # divides each entry by its own gradient scale: an entry whose gradient is ~0 (lora_a while
    # lora_b is still near 0) takes a step of ~lr whose sign float rounding decides. So the two
    # adapters are compared by how far training moved them: within 1% of that (measured:
    # at most 0.008%). A rank's lost half of the batch moves it by O(100%).
    for name, start in one["initial"].items():
        assert np.array_equal(two["initial"][name], start), name  # rank 0's start, broadcast
        moved = np.linalg.norm(one["adapter"][name] - start)
        assert moved > 0, name
        apart = np.linalg.norm(two["adapter"][name] - one["adapter"][name])
        assert apart < 0.01 * moved, name


RANK = """
import json, os, sys
import mlx.core as mx
from edgecl.backends.distributed import World
world = World.init()
if world.rank == 1 and sys.argv[2] == "fail":
    sys.exit(3)  # rank 0's all-sum below then fails or waits: either way the run must end
arrays = {"a": mx.full((3,), float(world.rank + 1)), "b": mx.ones((2, 2), mx.int32) * 5}
if world.rank == 1:  # a loaded optimizer state: other order, a key rank 0 lacks
    arrays = {"c": mx.zeros((1,)), "b": arrays["b"], "a": arrays["a"]}
got = world.broadcast_arrays(arrays)
row = {"keys": list(got), "a": got["a"].tolist(), "b": got["b"].tolist(),
       "cores": sorted(os.sched_getaffinity(0)), "blas": os.environ["OPENBLAS_NUM_THREADS"],
       "per_rank": world.cores_per_rank()}
open(os.path.join(sys.argv[1], f"rank{world.rank}.json"), "w").write(json.dumps(row))
"""


def test_launch_local_pins_ranks_and_broadcasts_rank0_arrays(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    ranks = 2 if len(cores) >= 2 else 1
    assert launch_local([sys.executable, "-c", RANK, str(tmp_path), "ok"], ranks) == 0
    rows = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(ranks)]
    share = len(cores) // ranks
    for r, row in enumerate(rows):
        assert row["keys"] == ["a", "b"]  # rank 0's keys, in its order
        assert row["a"] == [1.0, 1.0, 1.0] and row["b"] == [[5, 5], [5, 5]]
        assert row["cores"] == cores[r * share : (r + 1) * share]  # its own share, pinned
        assert row["blas"] == str(share) and row["per_rank"] == share


def test_launch_local_stops_the_others_when_a_rank_fails(tmp_path):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("this test needs 2 cores: CI's box has them")
    started = time.monotonic()
    # Rank 1 exits with 3; rank 0's broadcast then fails on the closed socket (exit 1). When both
    # have ended before the launcher looks, the kernel decides which it reaps first.
    assert launch_local([sys.executable, "-c", RANK, str(tmp_path), "fail"], 2) in (3, 1)
    assert time.monotonic() - started < 120  # rank 0 did not keep the launcher waiting
    assert not list(tmp_path.glob("rank*.json"))
    with pytest.raises(EdgeclError, match="--ranks 0: this machine gives"):
        launch_local([sys.executable, "-c", "pass"], 0)
