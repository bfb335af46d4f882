"""The OpenAI-compatible client against a real server, and against injected network faults."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest_server import free_port, llama_server  # noqa: F401  (session fixture)

from edgecl.cloud.openai import OpenAICloud
from edgecl.errors import EdgeclError

MESSAGES = [{"role": "user", "content": "Say hello."}]
SECRET = "sk-test-DO-NOT-LEAK-1234567890"
COMPLETION = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there"}}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECL_HOME", str(tmp_path))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def fake_server() -> Iterator[Callable[[list], tuple[str, list]]]:
    """A tiny HTTP server on 127.0.0.1 that plays a script of (status, headers, body) answers.

    Injected faults: it answers each POST with the next scripted reply (the last one repeats)
    and records the request headers it saw. A body of bytes is sent as is (malformed JSON, a
    huge answer); a header "x-cut-after: N" sends N bytes of the body and hangs up.
    """
    servers = []

    def start(script: list) -> tuple[str, list]:
        seen: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append(dict(self.headers))
                status, headers, body = script[min(len(seen), len(script)) - 1]
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                headers = dict(headers)
                cut = headers.pop("x-cut-after", None)  # send this many bytes, then hang up
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data if cut is None else data[: int(cut)])
                if cut is not None:
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_real_llama_server_completion(llama_server):  # noqa: F811
    cloud = OpenAICloud(llama_server, model="smollm2", max_tokens=8, timeout_s=60)
    reply = cloud.complete(MESSAGES)
    assert reply.ok and reply.status == "ok", reply
    assert reply.text.strip()
    assert reply.attempts == 1 and reply.error is None and not reply.simulated
    assert reply.prompt_tokens > 0 and 0 < reply.completion_tokens <= 8
    assert 0 < reply.latency_s < 60


def test_refused_connection_after_bounded_retries():
    port = free_port()  # nothing listens there
    cloud = OpenAICloud(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, backoff_s=0.01)
    start = time.perf_counter()
    reply = cloud.complete(MESSAGES)
    assert (reply.ok, reply.status, reply.attempts, reply.text) == (False, "refused", 3, "")
    assert time.perf_counter() - start < 2


def test_timeout_when_server_never_answers():
    """Injected fault: a listener that accepts connections and never writes a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    cloud = OpenAICloud(url, "m", timeout_s=0.3, max_retries=1, backoff_s=0.01)
    start = time.perf_counter()
    reply = cloud.complete(MESSAGES)
    elapsed = time.perf_counter() - start
    listener.close()
    for conn in held:
        conn.close()
    assert (reply.ok, reply.status, reply.attempts) == (False, "timeout", 2)
    assert 0.6 <= elapsed < 3


def test_500_then_success(fake_server):
    url, seen = fake_server([(500, {}, {"error": "boom"}), (200, {}, COMPLETION)])
    reply = OpenAICloud(url, "m", backoff_s=0.01).complete(MESSAGES)
    assert (reply.ok, reply.status, reply.attempts, reply.text) == (True, "ok", 2, "hi there")
    assert (reply.prompt_tokens, reply.completion_tokens) == (7, 2)
    assert len(seen) == 2


def test_400_is_not_retried(fake_server):
    url, seen = fake_server([(400, {}, {"error": "bad request"}), (200, {}, COMPLETION)])
    reply = OpenAICloud(url, "m", backoff_s=0.01).complete(MESSAGES)
    assert (reply.ok, reply.status, reply.attempts) == (False, "http_400", 1)
    assert "bad request" in reply.error and len(seen) == 1


def test_retry_after_is_honoured_and_capped(fake_server):
    url, seen = fake_server([(429, {"Retry-After": "3600"}, {}), (200, {}, COMPLETION)])
    cloud = OpenAICloud(url, "m", backoff_s=0.01, max_retry_after_s=0.4)
    start = time.perf_counter()
    reply = cloud.complete(MESSAGES)
    assert reply.ok and reply.attempts == 2
    assert 0.4 <= time.perf_counter() - start < 2


def test_persistent_503_gives_up(fake_server):
    url, seen = fake_server([(503, {}, {"error": "overloaded"})])
    reply = OpenAICloud(url, "m", max_retries=3, backoff_s=0.01).complete(MESSAGES)
    assert (reply.ok, reply.status, reply.attempts, len(seen)) == (False, "http_503", 4, 4)


def test_key_is_sent_but_never_kept(fake_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    url, seen = fake_server([(401, {}, {"error": f"Incorrect API key provided: {SECRET}"})])
    cloud = OpenAICloud(url, "m", backoff_s=0.01)
    reply = cloud.complete(MESSAGES)
    assert seen[0]["Authorization"] == f"Bearer {SECRET}"
    assert (reply.ok, reply.status, reply.attempts) == (False, "http_401", 1)
    kept = repr(cloud) + str(vars(cloud)) + repr(reply) + str(vars(cloud._http))
    kept += str(dict(cloud._http.headers))
    assert SECRET not in kept and "DO-NOT-LEAK" not in kept


def test_key_read_at_call_time(fake_server, monkeypatch):
    url, seen = fake_server([(200, {}, COMPLETION)])
    cloud = OpenAICloud(url, "m", api_key_env="EDGECL_TEST_KEY")
    monkeypatch.setenv("EDGECL_TEST_KEY", "k1")
    cloud.complete(MESSAGES)
    monkeypatch.setenv("EDGECL_TEST_KEY", "k2")
    cloud.complete(MESSAGES)
    monkeypatch.delenv("EDGECL_TEST_KEY")
    assert cloud.complete(MESSAGES).ok  # a local URL needs no key
    assert [h.get("Authorization") for h in seen] == ["Bearer k1", "Bearer k2", None]


def test_remote_url_without_key_is_a_clear_error(monkeypatch):
    with pytest.raises(EdgeclError, match="set OPENAI_API_KEY or pass --cloud-key-env NAME"):
        OpenAICloud("https://api.example.com/v1", "gpt")
    monkeypatch.setenv("MY_KEY", SECRET)
    cloud = OpenAICloud("https://api.example.com/v1", "gpt", api_key_env="MY_KEY")
    assert SECRET not in repr(cloud)
    with pytest.raises(EdgeclError, match="set OTHER_KEY"):
        OpenAICloud("https://api.example.com/v1", "gpt", api_key_env="OTHER_KEY")


def ok_body(text: str = "4") -> dict:
    return {"choices": [{"message": {"content": text}}], "usage": {"prompt_tokens": 5,
            "completion_tokens": 1}}  # fmt: skip


def test_a_body_cut_short_is_retried(fake_server):
    url, seen = fake_server([(200, {"x-cut-after": "20"}, ok_body()), (200, {}, ok_body())])
    reply = OpenAICloud(url, "m", backoff_s=0.01).complete(MESSAGES)
    assert (reply.ok, reply.text, reply.attempts, len(seen)) == (True, "4", 2, 2)


def test_an_answer_far_too_long_is_refused_not_retried(fake_server):
    url, seen = fake_server([(200, {}, ok_body("x" * (2 << 20)))])
    reply = OpenAICloud(url, "m", backoff_s=0.01).complete(MESSAGES)
    assert (reply.ok, reply.status, reply.attempts, len(seen)) == (False, "too_long", 1, 1)
    assert "ignored max_tokens" in reply.error


def test_malformed_json_is_an_error_not_an_exception(fake_server):
    url, _ = fake_server([(200, {}, b'{"choices": [{"message": ')])
    reply = OpenAICloud(url, "m").complete(MESSAGES)
    assert (reply.ok, reply.status) == (False, "error") and "malformed" in reply.error


def test_malformed_200_is_an_error_not_an_exception(fake_server):
    url, _ = fake_server([(200, {}, {"unexpected": True})])
    reply = OpenAICloud(url, "m").complete(MESSAGES)
    assert (reply.ok, reply.status) == (False, "error")
