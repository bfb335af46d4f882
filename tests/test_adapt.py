"""The daemon's adaptation cycle (edgecl.adapt): what counts as verifiable, the gate, a cycle
that trains, gates and promotes, an injected regression that is not swapped in, and the daemon
itself adapting while requests keep being answered.

.venv/bin/python -m pytest tests/test_adapt.py -q
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_chat import asking_model  # noqa: F401

from conftest import run_cli
from edgecl import adapt
from edgecl import learner as learners
from edgecl.backends.mlx_backend import MLXModel
from edgecl.config import Phase, TrainConfig
from edgecl.models.registry import resolve_model
from edgecl.store import Store
from edgecl.train import Trainer

ANSWER = "<think>\nStep 1: add them.\n</think>\n<answer>\\boxed{{{}}}</answer>"


def test_what_is_verifiable():
    assert adapt.reference_answer(ANSWER.format(12)) == "12"
    assert adapt.reference_answer("<answer>Paris</answer>") == "Paris"
    assert adapt.reference_answer("<answer>" + "very long prose " * 5 + "</answer>") is None
    assert adapt.reference_answer("no protocol at all") is None
    store = Store()
    feed(store, 3)
    store.log_exchange({"learner": "default", "prompt": "What is 1 + 1?", "cloud": 0,
                        "response": ANSWER.format(2)})  # local: no label  # fmt: skip
    rows = adapt.verifiable(store, "default")
    assert [r["answer"] for r in rows] == ["10", "11", "12"]
    assert adapt.new_since_last_cycle(store, "default") == 3


def test_the_gate_is_paired_and_watches_the_log_prob():
    current = {"solved": [True, False, False], "logprob": -2.0}
    assert adapt.decide(current, {"solved": [False, True, False], "logprob": -2.05})[0]
    promoted, why = adapt.decide(current, {"solved": [False, False, False], "logprob": -1.0})
    assert not promoted and "accuracy regressed" in why
    promoted, why = adapt.decide(current, {"solved": [True, False, False], "logprob": -2.2})
    assert not promoted and "below the floor" in why  # accuracy 0 cannot hide a regression


def feed(store: Store, n: int) -> None:
    """A workload: `n` questions the cloud answered."""
    for i in range(n):
        row = {"prompt": f"What is {i} + 10?", "response": ANSWER.format(i + 10)}
        store.log_exchange({"source": "daemon", "learner": "default", "cloud": 1, **row})


def first_version(model_dir) -> None:
    """The learner's current adapter: one DA-GRPO step, so the cycle has something to continue."""
    entry = resolve_model(str(model_dir))
    sums = os.path.join(os.environ["EDGECL_HOME"], "first.jsonl")
    with open(sums, "w") as f:
        f.writelines(f'{{"prompt": "What is {i} + 1?", "answer": "{i + 1}"}}\n' for i in range(8))
    config = TrainConfig("first", [Phase(sums, "0.3", 1)], model=str(model_dir), batch_size=2,
                         group_size=2, max_tokens=8, warmup_steps=0, lora_rank=4)  # fmt: skip
    trainer = Trainer(config, MLXModel.load(entry.mlx_dir, entry.name))
    trainer.prepare()
    trainer.run()


def test_a_cycle_promotes_and_an_injected_regression_is_kept_out(asking_model, monkeypatch):  # noqa: F811
    first_version(asking_model)
    store = Store()
    feed(store, 20)
    row = adapt.cycle("default", 0.3, steps=2, batch_size=2, group_size=2, max_tokens=8,
                      model=str(asking_model))  # fmt: skip
    assert row["promoted"], row["reason"]
    assert (row["from_version"], row["candidate"]) == (1, 2)
    assert learners.load(store, "default").current == 2
    assert adapt.new_since_last_cycle(store, "default") == 0

    monkeypatch.setenv("EDGECL_INJECT", "adapt-regression")
    row = adapt.cycle("default", 0.3, steps=1, batch_size=2, group_size=2, max_tokens=8,
                      model=str(asking_model))  # fmt: skip
    assert not row["promoted"] and "below the floor" in row["reason"], row["reason"]
    assert row["candidate"] == 3 and learners.load(store, "default").current == 2
    assert [v["version"] for v in store.versions("default")] == [1, 2, 3]  # kept, not used
    kept = store.adaptations("default")[-1]["details"]
    assert kept["after"]["logprob"] < kept["before"]["logprob"]


@pytest.fixture
def adapting_daemon(tiny_mlx_dir):
    from conftest_server import free_port

    home, port = os.environ["EDGECL_HOME"], free_port()
    first_version(tiny_mlx_dir)
    args = ["daemon", "start", "--port", str(port), "--model", str(tiny_mlx_dir),
            "--max-tokens", "8", "--adapt-after", "12", "--adapt-idle", "0",
            "--adapt-steps", "2"]  # fmt: skip
    started = run_cli(*args, home=home)
    assert started.returncode == 0, started.stderr
    token = run_cli("daemon", "token", home=home).stdout.strip()
    yield {"url": f"http://127.0.0.1:{port}", "headers": {"Authorization": f"Bearer {token}"}}
    assert run_cli("daemon", "stop", home=home).returncode == 0


def test_the_daemon_adapts_and_swaps_while_requests_keep_succeeding(adapting_daemon):
    url, headers = adapting_daemon["url"], adapting_daemon["headers"]
    before = httpx.get(url + "/health").json()["adapter"]
    assert before.endswith("0001")
    codes, done = [], threading.Event()

    def client() -> None:  # requests before, during and after the cycle and its swap
        body = {"model": "edgecl", "max_tokens": 4, "edgecl": {"local_only": True},
                "messages": [{"role": "user", "content": "What is 2 + 2?"}]}  # fmt: skip
        while not done.is_set():
            r = httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=60)
            codes.append(r.status_code)
            time.sleep(0.2)

    feed(Store(), 20)
    worker = threading.Thread(target=client)
    worker.start()
    try:
        deadline = time.time() + 300
        while httpx.get(url + "/health").json()["adapter"] == before:
            assert time.time() < deadline, "no adaptation was swapped in"
            time.sleep(0.5)
    finally:
        done.set()
        worker.join()
    assert httpx.get(url + "/health").json()["adapter"].endswith("0002")
    assert codes and set(codes) == {200}, codes
    status = run_cli("daemon", "status", home=os.environ["EDGECL_HOME"]).stdout
    assert "last adaptation:" in status and "version 2 promoted" in status, status
    log = (Path(os.environ["EDGECL_HOME"]) / "daemon" / "daemon.log").read_text()
    assert "adaptation: starting a cycle on 20 new verifiable exchanges" in log, log
    assert "adaptation: candidate version 2 promoted" in log, log
    print(f"{len(codes)} requests answered while adapting")
