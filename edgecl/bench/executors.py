"""Where benchmark jobs run: local processes (the default) or a Ray cluster.

Each job is the self-contained command `edgecl bench job SPEC`, which prints its result as the
last line of its output. Locally, jobs run in child processes, one after another or
`--parallel N` at a time, each pinned to its share of the cores, each with a log file. With Ray
(`pip install 'edgecl[ray]'`), each job is a task on whichever node has a free CPU; every node
needs edgecl installed and uses its own data dir unless EDGECL_HOME names a shared one.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgecl.errors import EdgeclError

EXECUTORS = ("local", "ray")


def job_command(spec: dict) -> list[str]:
    return [sys.executable, "-c", "from edgecl.cli.main import run; run()", "bench", "job",
            json.dumps(spec)]  # fmt: skip


def _run(spec: dict, log: Path | None, env: dict | None = None,
         pin: Callable[[], None] | None = None) -> dict:  # fmt: skip
    """Run one job in a child process (`pin`: its preexec_fn), its progress lines going to `log`
    (appended) as they come; returns the result (the last line of its stdout)."""
    env = {**os.environ, **(env or {})}
    if log is None:  # a Ray task: the error's tail travels back in the exception
        out = subprocess.run(job_command(spec), capture_output=True, text=True, env=env)
        errors = out.stderr
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            out = subprocess.run(job_command(spec), stdout=subprocess.PIPE, stderr=f, text=True,
                                 env=env, preexec_fn=pin)  # fmt: skip
        errors = log.read_text(errors="replace")
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        tail = errors.strip().splitlines()[-1:] or ["no output"]
        raise EdgeclError(f"bench job {spec['name']} failed (exit {out.returncode}): {tail[0]}")
    return json.loads(lines[-1])


def run_local(specs: list[dict], logs: Path, on_line: Callable[[str], None] = print,
              parallel: int = 1) -> list[dict]:  # fmt: skip
    """Run the jobs in child processes, `parallel` at a time, each pinned to its own share of
    the cores (MLX's elementwise ops use one core: two single-core jobs finish sooner than two
    in a row). Jobs that need the same warm-up wait for the first to make it."""
    from edgecl.backends.distributed import check_ranks, core_shares, pinned

    check_ranks(parallel, "--parallel")
    free = queue.SimpleQueue()
    for share in core_shares(parallel):
        free.put(share)

    failed = threading.Event()

    def one(k: int, spec: dict) -> dict | None:
        if failed.is_set():  # after a failure no job starts (those running finish)
            return None
        share = free.get()
        try:
            on_line(f"job {k + 1}/{len(specs)}: {spec['name']} (log: {logs / spec['name']}.log)")
            env, pin = pinned(share, parallel) if parallel > 1 else (None, None)
            return _run(spec, logs / f"{spec['name']}.log", env, pin)
        except BaseException:
            failed.set()
            raise
        finally:
            free.put(share)

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, range(len(specs)), specs))


def run_ray(specs: list[dict], address: str | None = None,
            on_line: Callable[[str], None] = print) -> list[dict]:  # fmt: skip
    try:
        import ray
    except ImportError:
        raise EdgeclError("--executor ray needs Ray: pip install 'edgecl[ray]'") from None
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    home = os.environ.get("EDGECL_HOME")
    remote = ray.remote(num_cpus=1)(_run)
    pending = {remote.remote(s, None, {"EDGECL_HOME": home} if home else None): s for s in specs}
    results = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        spec = pending.pop(done[0])
        results.append(ray.get(done[0]))
        on_line(f"done: {spec['name']} ({len(results)}/{len(specs)})")
    order = [s["name"] for s in specs]
    return sorted(results, key=lambda r: order.index(r["name"]))
