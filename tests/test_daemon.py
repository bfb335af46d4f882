"""`edgecl daemon`: the OpenAI-compatible server, driven by the real `openai` client, with
offloading to a real local OpenAI-compatible server; its guards (token, Host, body size,
unsupported parameters); and its life (start, status, one per data dir, logs, stop).

.venv/bin/python -m pytest tests/test_daemon.py -q
"""

from __future__ import annotations

import json
import os
import stat

import httpx
import pytest
from conftest_server import free_port, llama_server  # noqa: F401
from test_chat import asking_model, server_requests  # noqa: F401
from test_cloud_openai import fake_server  # noqa: F401

from conftest import run_cli
from edgecl.core.protocol import TRIGGER
from edgecl.server import split_response


def test_split_response_hides_tags_and_half_triggers():
    assert split_response("<think>\nStep 1: 3 + 4 = 7.\n</think>\n<answer>\\boxed{7}</answer>") == (
        "Step 1: 3 + 4 = 7.",
        "\\boxed{7}",
    )
    assert split_response("<think>\nStep 1: so") == ("Step 1: so", "")  # still thinking
    assert split_response("<think>\nS\n</think>\n<answer>I need ext") == ("S", "")
    assert split_response("Hello there.") == ("", "Hello there.")


@pytest.fixture
def daemon(asking_model, llama_server):  # noqa: F811
    home = os.environ["EDGECL_HOME"]
    port = free_port()
    args = ["daemon", "start", "--port", str(port), "--model", str(asking_model),
            "--cloud", "openai:smollm2", "--cloud-url", llama_server, "--budget", "1",
            "--max-tokens", "48", "--max-body", "4096", "--calls-per-day", "2"]  # fmt: skip
    started = run_cli(*args, home=home)
    assert started.returncode == 0, started.stderr
    token = run_cli("daemon", "token", home=home).stdout.strip()
    yield {"home": home, "port": port, "token": token, "url": f"http://127.0.0.1:{port}"}
    stopped = run_cli("daemon", "stop", home=home)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr


def test_a_real_openai_client_gets_plain_and_streamed_answers(daemon, llama_server):  # noqa: F811
    from openai import OpenAI

    client = OpenAI(base_url=daemon["url"] + "/v1", api_key=daemon["token"], max_retries=0)
    assert len(client.models.list().data) == 1

    from edgecl.store import Store

    store = Store()  # an exchange logged 40 days ago: past the default retention of 30 days
    with store.db.conn:
        store.db.conn.execute("INSERT INTO exchanges (created, source, prompt) VALUES "
                              "('2000-01-01T00:00:00+00:00', 'chat', 'old')")  # fmt: skip
    before = server_requests(llama_server)
    plain = client.chat.completions.create(
        model="edgecl", messages=[{"role": "user", "content": "What is 3 + 4?"}]
    )
    ext = plain.model_extra["edgecl"]
    assert ext["help_requested"] and ext["cloud_used"]  # the asking model, budget 1
    content = plain.choices[0].message.content
    assert content and "<answer>" not in content and TRIGGER not in content
    assert server_requests(llama_server) == before + 1

    # Local only: the help request is answered locally, and says why.
    local = client.chat.completions.create(
        model="edgecl", messages=[{"role": "user", "content": "What is 2 + 5?"}],
        extra_body={"edgecl": {"local_only": True}},
    )  # fmt: skip
    ext = local.model_extra["edgecl"]
    assert ext["help_requested"] and not ext["cloud_used"] and ext["local_fallback"]
    assert "cloud is off" in ext["reason"]
    assert server_requests(llama_server) == before + 1

    # Streamed, with usage at the end; no piece of the trigger is ever shown.
    chunks = list(client.chat.completions.create(
        model="edgecl", messages=[{"role": "user", "content": "What is 1 + 6?"}],
        stream=True, stream_options={"include_usage": True},
    ))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and TRIGGER not in text and "<answer>" not in text
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    finals = [c.model_extra.get("edgecl") for c in chunks if c.model_extra.get("edgecl")]
    assert len(finals) == 1 and finals[0]["cloud_used"]  # the second call of the day's cap 2

    # The cap of 2 calls a day is spent: the next help request is answered locally.
    capped = client.chat.completions.create(
        model="edgecl", messages=[{"role": "user", "content": "What is 4 + 4?"}]
    )
    assert not capped.model_extra["edgecl"]["cloud_used"]
    assert "cap" in capped.model_extra["edgecl"]["reason"]
    assert server_requests(llama_server) == before + 2

    status = json.loads(run_cli("daemon", "status", "--json", home=daemon["home"]).stdout)
    assert status["running"] and status["requests_total"] == 4
    learner = run_cli("status", home=daemon["home"]).stdout  # the learner's glance names it
    assert f"daemon: http://127.0.0.1:{daemon['port']}/v1" in learner
    assert status["requests_in_flight"] == 0  # every admission released once, streams too
    logged = store.exchanges()
    assert [e["source"] for e in logged] == ["daemon"] * 4  # the old one purged
    assert logged[0]["prompt"] == "What is 3 + 4?" and logged[0]["cloud"] == 1
    assert status["cloud_answered_total"] == 2 and status["budget_calls_today"] == 2


def test_guards_token_host_size_parameters_and_one_daemon_per_data_dir(daemon, asking_model):  # noqa: F811
    url, auth = daemon["url"], {"Authorization": f"Bearer {daemon['token']}"}
    ask = {"model": "edgecl", "messages": [{"role": "user", "content": "What is 1 + 1?"}]}
    no_token = httpx.post(url + "/v1/chat/completions", json=ask)
    assert no_token.status_code == 401
    assert no_token.json()["error"]["code"] == "invalid_api_key"
    wrong_host = httpx.get(url + "/v1/models", headers={**auth, "Host": "evil.example:80"})
    assert wrong_host.status_code == 421  # a DNS-rebinding page cannot reach it
    big = {**ask, "messages": [{"role": "user", "content": "x" * 5000}]}
    assert httpx.post(url + "/v1/chat/completions", json=big, headers=auth).status_code == 413
    parts = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}
    for extra in ({"tools": [{"type": "function", "function": {"name": "f"}}]}, {"n": 2},
                  {"max_tokens": "many"}, parts):  # fmt: skip
        bad = httpx.post(url + "/v1/chat/completions", json={**ask, **extra}, headers=auth)
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert "access-control-allow-origin" not in {k.lower() for k in bad.headers}
    health = httpx.get(url + "/health")  # no token needed
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["adapter"] is None  # no learner yet: the base model answers
    metrics = httpx.get(url + "/metrics", headers=auth).text
    assert "edgecl_requests_total" in metrics

    token_file = os.path.join(daemon["home"], "daemon", "token")
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600

    second = run_cli("daemon", "run", "--port", str(free_port()), "--model", str(asking_model),
                     home=daemon["home"])  # fmt: skip
    assert second.returncode == 1 and "already runs on this data dir" in second.stderr
    assert second.stderr.count("\n") == 1  # one line, no traceback
    log = run_cli("daemon", "logs", home=daemon["home"]).stdout
    assert "serving on http://127.0.0.1:" in log


def test_install_writes_a_service_that_systemd_accepts(tmp_path):
    import plistlib
    import shutil
    import subprocess
    import sys

    from edgecl import daemon

    home = os.environ["EDGECL_HOME"]
    out = run_cli("daemon", "install", "--budget", "0.2", "--port", "9001", home=home,
                  env={"XDG_CONFIG_HOME": str(tmp_path)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    unit = tmp_path / "systemd" / "user" / "edgecl.service"
    text = unit.read_text()
    assert f"{sys.executable} -m edgecl.cli.main daemon run --budget 0.2 --port 9001" in text
    assert f"EDGECL_HOME={home}" in text and "append:" in text
    if shutil.which("systemd-analyze"):
        check = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                               text=True)  # fmt: skip
        assert check.returncode == 0, check.stderr

    where, plist = daemon.service_file(["--budget", "0.2"], platform="darwin")
    agent = plistlib.loads(plist.encode())
    assert where.name == "org.edgecl.daemon.plist"
    assert agent["ProgramArguments"][-3:] == ["run", "--budget", "0.2"]
    assert agent["EnvironmentVariables"] == {"EDGECL_HOME": home}


def test_a_daily_cap_holds_across_the_daemon_and_chat_at_once(daemon, asking_model, llama_server):  # noqa: F811
    """Cap 2 calls a day on one data dir; 3 daemon requests and 2 `edgecl chat --once` at the
    same time, every one of them asking for help, while `edgecl learn` trains on the same
    database: the real server sees 2 calls in all, no "database is locked" reaches anyone, and
    no step or exchange is lost."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    before = server_requests(llama_server)
    auth = {"Authorization": f"Bearer {daemon['token']}"}

    def ask(k: int) -> dict:
        body = {"model": "edgecl", "messages": [{"role": "user", "content": f"What is {k} + 2?"}]}
        return httpx.post(daemon["url"] + "/v1/chat/completions", json=body, headers=auth,
                          timeout=300).json()["edgecl"]  # fmt: skip

    chat = [sys.executable, "-c", "from edgecl.cli.main import run; run()", "chat", "--model",
            str(asking_model), "--cloud", "openai:smollm2", "--cloud-url", llama_server,
            "--budget", "1", "--calls-per-day", "2", "--max-tokens", "48", "--json",
            "--once"]  # fmt: skip
    env = dict(os.environ, EDGECL_HOME=daemon["home"])
    task = os.path.join(daemon["home"], "sums.jsonl")
    with open(task, "w") as f:
        f.writelines(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                     for i in range(12))  # fmt: skip
    learn = subprocess.Popen(  # and a training run on the same database meanwhile
        [*chat[:3], "learn", "--task", task, "--model", str(asking_model), "--steps", "4",
         "--batch-size", "2", "--group-size", "2", "--max-tokens", "48", "--warmup-steps", "0",
         "--run-name", "beside"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env)  # fmt: skip
    chats = [subprocess.Popen([*chat, f"What is {k} + 3?"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for k in range(2)]  # fmt: skip
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(ask, range(3)))
    ran = [p.communicate(timeout=300) for p in chats]
    outs = [json.loads(out) for out, _ in ran]
    trained = learn.communicate(timeout=600)[0]
    assert learn.returncode == 0 and "locked" not in trained, trained
    assert not [err for _, err in ran if "locked" in err]
    from edgecl.store import Store

    store = Store()
    assert [s["step"] for s in store.steps("beside")] == [1, 2, 3, 4]  # no step lost
    assert len(store.exchanges()) == 5  # every answer logged: 3 from the daemon, 2 from chat
    assert all(a["help_requested"] for a in answers) and all(o["help_requested"] for o in outs)
    used = sum(a["cloud_used"] for a in answers) + sum(o["cloud_answered"] for o in outs)
    assert used == 2
    assert server_requests(llama_server) == before + 2


def test_a_failing_cloud_is_answered_locally_and_not_charged(asking_model, fake_server):  # noqa: F811
    """Injected cloud faults (a server that answers 503, then malformed JSON): the daemon answers
    every request locally, says why, logs each failed call and charges none to the budget."""
    url, seen = fake_server([(503, {}, {"error": "overloaded"})] * 4 + [(200, {}, {"x": 1})])
    home, port = os.environ["EDGECL_HOME"], free_port()
    started = run_cli("daemon", "start", "--port", str(port), "--model", str(asking_model),
                      "--cloud", "openai:m", "--cloud-url", url, "--budget", "1",
                      "--max-tokens", "48", home=home)  # fmt: skip
    assert started.returncode == 0, started.stderr
    auth = {"Authorization": f"Bearer {run_cli('daemon', 'token', home=home).stdout.strip()}"}
    try:
        for k in range(2):
            body = {"model": "m", "messages": [{"role": "user", "content": f"What is {k} + 1?"}]}
            out = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                             headers=auth, timeout=120)  # fmt: skip
            assert out.status_code == 200
            ext = out.json()["edgecl"]
            assert ext["cloud_called"] and not ext["cloud_used"] and ext["local_fallback"]
            assert ext["reason"].startswith("the cloud call failed")
            assert TRIGGER not in out.json()["choices"][0]["message"]["content"]
        assert len(seen) == 5  # 1 + 3 bounded retries of the 503, then the malformed answer
        status = json.loads(run_cli("daemon", "status", "--json", home=home).stdout)
        assert status["budget_calls_today"] == 0 and status["errors_total"] == 0
    finally:
        run_cli("daemon", "stop", home=home)
    from edgecl.store import Store

    rows = Store().db.execute("SELECT status FROM ledger ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["failed", "failed"]


def test_stop_from_the_process_that_started_it_with_a_client_still_connected(tiny_mlx_dir):
    """A keep-alive client stays connected, and the daemon is this process's own child (a zombie
    once it exits, until reaped): stop still returns as soon as the daemon has shut down."""
    import time

    from edgecl import daemon

    port = free_port()
    daemon.start(["--model", str(tiny_mlx_dir), "--max-tokens", "8", "--budget", "0"], port)
    with httpx.Client() as client:
        ask = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        out = client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=ask,
                          headers={"Authorization": f"Bearer {daemon.token()}"})  # fmt: skip
        assert out.status_code == 200
        start = time.perf_counter()
        assert daemon.stop() is not None
        assert time.perf_counter() - start < 20 and daemon.state() is None
    log = (daemon.home() / "daemon.log").read_text()
    assert log.rstrip().endswith("edgecl daemon: stopped")
