"""`edgecl chat`: budgeted offloading per turn, the token bucket and caps, trigger suppression,
one-shot JSON, and the REPL in a pseudo-terminal against a real local OpenAI-compatible server.

.venv/bin/python -m pytest tests/test_chat.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest_server import llama_server  # noqa: F401

from conftest import run_cli
from edgecl.budget import BURST, Caps, CloudBudget
from edgecl.cloud.base import CloudReply
from edgecl.core.protocol import TRIGGER, build_messages, requests_help
from edgecl.store import Store
from edgecl.tasks.registry import get_task


@pytest.fixture(scope="module")
def asking_model(tiny_mlx_dir, tmp_path_factory):
    """The tiny model taught to answer every sum with a help request (a stand-in for an adapter
    that asks; the real model would need a long warm-up)."""
    from tiny_model import make_protocol_tiny

    rows = [{"prompt": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1), "difficulty": "hard"}
            for i in range(20)]  # fmt: skip
    task_file = tmp_path_factory.mktemp("ask") / "sums.jsonl"
    task_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path_factory.mktemp("ask") / "mlx"
    return make_protocol_tiny(tiny_mlx_dir, out, get_task(str(task_file)), steps=40)


def reply(ok=True, tokens=(10, 5)) -> CloudReply:
    return CloudReply(text="<answer>\\boxed{7}</answer>" if ok else "", ok=ok,
                      status="ok" if ok else "http_500", latency_s=0.1, attempts=1,
                      prompt_tokens=tokens[0] if ok else 0,
                      completion_tokens=tokens[1] if ok else 0,
                      error=None if ok else "HTTP 500")  # fmt: skip


def test_the_bucket_gives_tau_per_query_and_one_call_of_burst():
    store = Store()
    zero = CloudBudget(store, "z", 0.0)
    zero.query()
    assert zero.reserve(100) == (None, "the budget is 0")
    b = CloudBudget(store, "b", 0.3)
    calls = 0
    for _ in range(20):
        b.query()
        ledger_id, why = b.reserve(100)
        if ledger_id is not None:
            b.settle(ledger_id, reply())
            calls += 1
        else:
            assert why == "over budget (tau 0.3)"
    assert calls <= BURST + 0.3 * 20 and calls >= 0.3 * 20 - 1
    state = b.state()
    assert state["queries"] == 20 and state["calls_today"] == calls


def test_a_failed_call_is_logged_not_charged_and_caps_hold():
    store = Store()
    b = CloudBudget(store, "c", 1.0, Caps(calls_per_day=2, tokens_per_day=1000))
    b.query()
    ledger_id, _ = b.reserve(100)
    b.settle(ledger_id, reply(ok=False))
    assert b.state()["calls_today"] == 0 and b.state()["bucket"] == 1.0  # refunded
    row = store.db.execute("SELECT status, error FROM ledger WHERE id = ?", [ledger_id]).fetchone()
    assert row == ("failed", "HTTP 500")
    for _ in range(2):
        b.query()
        ledger_id, why = b.reserve(100)
        b.settle(ledger_id, reply())
    b.query()
    assert b.reserve(100) == (None, "the daily cap of 2 cloud calls is reached")
    big = CloudBudget(store, "d", 1.0, Caps(tokens_per_day=1000))
    big.query()
    assert big.reserve(2000)[1] == "the daily cap of 1000 cloud tokens is reached"


def test_two_processes_never_exceed_a_cap(tmp_path):
    """Two processes reserve as fast as they can against a cap of 5 calls a day: 5 in all."""
    code = (
        "from edgecl.budget import Caps, CloudBudget; from edgecl.store import Store\n"
        "b = CloudBudget(Store(), 'shared', 1.0, Caps(calls_per_day=5))\n"
        "got = 0\n"
        "for _ in range(20):\n"
        "    b.query(); i, why = b.reserve(10); got += i is not None\n"
        "print(got)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    got = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert sum(got) == 5, got
    assert Store().db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 5


def test_suppression_turns_a_help_request_into_a_local_answer(asking_model):
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.chat import ChatSession
    from edgecl.generation import MLXChat

    engine = MLXChat(MLXModel.load(asking_model, "asking"))
    messages = build_messages("math", "What is 3 + 4?")
    asked = "".join(engine.stream(messages, 48, 0.0, suppress_help=False))
    assert requests_help(asked)
    local = "".join(engine.stream(messages, 48, 0.0, suppress_help=True))
    assert TRIGGER not in local and "<answer>" in local

    session = ChatSession(engine, CloudBudget(Store(), "s", 0.0), cloud=None, store=Store())
    notices = []
    turn = session.turn("What is 3 + 4?", on_notice=notices.append)
    assert turn.help_requested and turn.fallback and not turn.cloud_called
    assert turn.reason == "no cloud is set (--cloud openai:MODEL --cloud-url URL)"
    assert notices == [f"answering locally: {turn.reason}"]
    (logged,) = Store().exchanges()
    assert logged["prompt"] == "What is 3 + 4?" and logged["help"] == 1 and logged["cloud"] == 0


def test_llamacpp_chat_measures_p_help_as_mlx_does(asking_model, tmp_path):
    """The calibrated threshold applies on both chat backends: the same P(help) from each."""
    from edgecl.backends.llamacpp import LlamaCppModel
    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.generation import LlamaChat, MLXChat
    from tiny_model import make_tiny_gguf

    mlx = MLXChat(MLXModel.load(asking_model, "asking"))
    gguf = make_tiny_gguf(asking_model, tmp_path / "asking.gguf")
    llama = LlamaChat(LlamaCppModel(gguf, n_ctx=512, f32_kv_cache=True), "asking")
    messages = build_messages("math", "What is 3 + 4?")
    assert llama.llm.chat_ids(messages) == mlx.model.chat_ids(messages)  # the same template
    asked = "".join(mlx.stream(messages, 48, 0.0, suppress_help=False))
    local = "".join(mlx.stream(messages, 48, 0.0, suppress_help=True))
    for response in (asked, local, "no answer tag " + TRIGGER):
        p_mlx = mlx.help_probability(messages, response)
        assert llama.help_probability(messages, response) == pytest.approx(p_mlx, abs=1e-3)
    assert mlx.help_probability(messages, asked) > 0.5  # the model asks here


def server_requests(url: str) -> int:
    """Chat requests the llama-cpp server has logged (its access log)."""
    from conftest_server import _server

    return Path(_server["log"]).read_text(errors="replace").count("POST /v1/chat/completions")


def test_once_json_with_budget_zero_never_calls_a_real_server(asking_model, llama_server):  # noqa: F811
    home = os.environ["EDGECL_HOME"]
    common = ["chat", "--model", str(asking_model), "--cloud", "openai:smollm2",
              "--cloud-url", llama_server, "--max-tokens", "48", "--json", "--once"]  # fmt: skip
    before = server_requests(llama_server)
    result = run_cli(*common, "What is 3 + 4?", "--budget", "0", home=home)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["help_requested"] and not out["cloud_called"] and out["local_fallback"]
    assert out["reason"] == "the budget is 0" and out["budget"]["calls_today"] == 0
    assert server_requests(llama_server) == before

    result = run_cli(*common, "What is 3 + 4?", "--budget", "1", home=home)
    out = json.loads(result.stdout)
    assert out["help_requested"] and out["cloud_called"] and out["cloud_answered"]
    assert not out["local_fallback"] and out["budget"]["calls_today"] == 1
    assert TRIGGER not in out["response"]  # the cloud's answer composed in its place
    assert server_requests(llama_server) == before + 1


def test_repl_help_turn_cap_fallback_and_stats(asking_model, llama_server):  # noqa: F811
    import pexpect

    env = {**os.environ, "COLUMNS": "200"}
    args = ["-c", "from edgecl.cli.main import run; run()", "chat", "--model", str(asking_model),
            "--cloud", "openai:smollm2", "--cloud-url", llama_server, "--budget", "1",
            "--calls-per-day", "1", "--max-tokens", "48"]  # fmt: skip
    child = pexpect.spawn(sys.executable, args, env=env, encoding="utf-8", timeout=180)
    transcript = []
    child.logfile_read = _Collect(transcript)
    child.expect("you> ")
    child.sendline("What is 3 + 4?")
    child.expect("asking the cloud")
    child.expect("cloud>")
    child.expect("you> ")
    child.sendline("/reset")  # the tiny model only asks without earlier turns in its context
    child.expect("conversation cleared")
    child.expect("you> ")
    child.sendline("What is 5 + 6?")  # asks again: the daily cap of 1 call is spent
    child.expect("the daily cap of 1 cloud calls is reached")
    child.expect("you> ")
    child.sendline("/stats")
    child.expect('"cloud_calls": 1')
    child.expect("you> ")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    text = "".join(transcript)
    assert text.count("asking the cloud") == 1 and "answering locally" in text
    assert '"local_fallbacks": 1' in text and '"turns": 2' in text


class _Collect:
    def __init__(self, out: list) -> None:
        self.out = out

    def write(self, s: str) -> None:
        self.out.append(s)

    def flush(self) -> None:
        pass


def test_log_purge(tmp_path):
    store = Store()
    store.log_exchange({"source": "chat", "learner": "x", "prompt": "hi", "response": "hello"})
    result = run_cli("log", "purge", home=os.environ["EDGECL_HOME"])
    assert result.returncode == 0 and "deleted 1 logged exchange" in result.stdout
    assert Store().exchanges() == []
