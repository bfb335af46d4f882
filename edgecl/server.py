"""The daemon's OpenAI-compatible HTTP API (FastAPI), answering with budgeted offloading.

    edgecl daemon start
    OpenAI(base_url="http://127.0.0.1:8745/v1", api_key=open(DATA_DIR/"daemon/token").read())

Routes: POST /v1/chat/completions (plain, or SSE with `stream: true` and
`stream_options.include_usage`), GET /v1/models, GET /health (no token), GET /metrics
(Prometheus text).

- Safety: every route but /health needs `Authorization: Bearer <token>`; the Host header must
  name this machine's loopback (against DNS rebinding); no CORS headers are ever sent; a body
  over `max_body` bytes gets 413; unsupported parameters (tools, n > 1, ...) get 400; at most
  `queue` requests wait for the model, more get 429. Errors have OpenAI's shape.
- Answers: the local model answers under the protocol (edgecl.chat.ChatSession, one request at a
  time); `message.content` is the answer without protocol tags, `message.reasoning_content` the
  model's <think> steps. The `edgecl` object of a response (and the `X-Edgecl-Cloud` header)
  says whether help was requested, whether the cloud answered, and why not. A request with
  `"edgecl": {"local_only": true}` never goes to the cloud.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from fastapi import Request  # at module level: FastAPI resolves annotations here

from edgecl.core.protocol import TRIGGER

UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "logprobs", "top_logprobs",
               "response_format", "audio", "modalities", "prediction")  # fmt: skip
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def split_response(text: str) -> tuple[str, str]:
    """(reasoning, content) of a protocol response: the <think> steps, and the answer without
    tags (a partial trigger at its end held back, so a stream never shows half of one)."""
    head, sep, rest = text.partition("</think>")
    if not sep:  # no think block, or one still being written
        head, rest = (text, "") if "<think>" in text else ("", text)
    reasoning = head.replace("<think>", "").strip()
    content = rest.replace("<answer>", "").split("</answer>")[0].strip()
    for k in range(len(TRIGGER), 0, -1):
        if content.endswith(TRIGGER[:k]):
            content = content[:-k].rstrip()
            break
    return reasoning, content


def error(status: int, message: str, kind: str, code: str | None = None):
    from fastapi.responses import JSONResponse

    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


class Answerer:
    """One ChatSession, made and used on one worker thread (the model and its SQLite connection
    stay on the thread that made them), so requests are answered one at a time."""

    def __init__(self, open_session: Callable[[], object], log_days: float | None = 30) -> None:
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgecl-answer")
        self.session = self.worker.submit(open_session).result()
        self.model_name = self.session.engine.name.split(":", 1)[-1]
        self.log_days, self.purged = log_days, 0.0
        self.started = time.time()
        self.counts = {"requests": 0, "errors": 0, "help_requested": 0, "cloud_answered": 0}
        self.in_flight, self.last_request = 0, time.time()  # edgecl.adapt yields to requests

    def close(self) -> None:
        """Finish the request in hand, then close the session's database (on its thread)."""
        if self.session.store is not None:
            self.worker.submit(self.session.store.close).result()
        self.worker.shutdown(wait=True)

    def swap(self, adapter) -> None:
        """Load a promoted adapter version between two requests, on the answering thread: the
        request in hand finishes on the old one, the next uses the new one."""

        def load() -> None:
            self.session.engine.swap_adapter(adapter)
            self.session.adapter = str(adapter)
            self.session.threshold = None  # calibrations are per version; this one has none

        self.worker.submit(load).result()

    def budget_state(self) -> dict:
        """The budget as stored (a connection of this thread's own)."""
        from edgecl.budget import CloudBudget
        from edgecl.store import Store

        b = self.session.budget
        store = Store()
        try:
            return CloudBudget(store, b.learner, b.tau, b.caps, b.source).state()
        finally:
            store.close()

    def answer(
        self,
        messages: list[dict],
        max_tokens: int,
        temperature: float,
        local_only: bool,
        on_piece: Callable[[str], None],
    ):
        users = [m for m in messages if m.get("role") == "user"]
        text = str(users[-1]["content"])
        history = [
            m
            for m in messages[: messages.index(users[-1])]
            if m.get("role") in ("user", "assistant")
        ]
        s = self.session
        if s.store is not None and self.log_days is not None and time.time() - self.purged > 3600:
            cutoff = datetime.now(timezone.utc) - timedelta(days=self.log_days)
            s.store.purge_exchanges(cutoff.isoformat(timespec="seconds"))  # the retention period
            self.purged = time.time()
        s.history, s.max_tokens, s.temperature = history, max_tokens, temperature
        s.cloud_enabled = not local_only
        try:
            turn = s.turn(text, on_piece=on_piece)
        finally:
            s.cloud_enabled = True
        self.counts["help_requested"] += turn.help_requested
        self.counts["cloud_answered"] += turn.cloud_text is not None
        return turn


def create_app(
    answerer: Answerer, token: str, max_body: int = 1 << 20, queue: int = 8, max_tokens: int = 512
):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.background import BackgroundTask

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    waiting = threading.BoundedSemaphore(queue + 1)  # the one running, and `queue` waiting

    def admit() -> bool:
        if not waiting.acquire(blocking=False):
            return False
        answerer.in_flight += 1
        return True

    def leave() -> None:
        answerer.in_flight -= 1
        answerer.last_request = time.time()
        waiting.release()

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = request.headers.get("host", "").rsplit(":", 1)[0]
        if host not in LOOPBACK:
            why = f"Host {host!r} is not this machine's loopback"
            return error(421, why, "invalid_request_error")
        if request.url.path != "/health":
            if request.headers.get("authorization", "") != f"Bearer {token}":
                return error(
                    401,
                    "missing or wrong bearer token (the daemon's token file)",
                    "authentication_error",
                    "invalid_api_key",
                )
        length = request.headers.get("content-length")
        if length is not None and int(length) > max_body:
            return error(413, f"request body over {max_body} bytes", "invalid_request_error")
        return await call_next(request)

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "model": answerer.model_name,
            "adapter": answerer.session.adapter,
            "uptime_s": round(time.time() - answerer.started, 1),
        }

    @app.get("/v1/models")
    async def models():
        model = {"id": answerer.model_name, "object": "model", "created": int(answerer.started),
                 "owned_by": "edgecl"}  # fmt: skip
        return {"object": "list", "data": [model]}

    @app.get("/metrics")
    async def metrics():
        lines = [f"edgecl_uptime_seconds {time.time() - answerer.started:.1f}"]
        lines += [f"edgecl_{k}_total {v}" for k, v in answerer.counts.items()]
        lines.append(f"edgecl_requests_in_flight {answerer.in_flight}")
        budget = answerer.budget_state()
        lines += [f"edgecl_budget_{k} {v}" for k, v in budget.items() if isinstance(v, int | float)]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        body = await request.body()
        if len(body) > max_body:
            return error(413, f"request body over {max_body} bytes", "invalid_request_error")
        try:
            req = json.loads(body)
        except ValueError:
            return error(400, "the body is not JSON", "invalid_request_error")
        bad = _check(req, max_tokens)
        if bad is not None:
            return error(400, bad, "invalid_request_error")
        if not admit():
            return error(
                429,
                f"{queue} requests already wait for the model; retry shortly",
                "rate_limit_error",
            )
        answerer.counts["requests"] += 1
        args = (
            req["messages"],
            int(req.get("max_tokens") or req.get("max_completion_tokens") or max_tokens),
            float(req.get("temperature", 0.0)),
            bool((req.get("edgecl") or {}).get("local_only", False)),
        )
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if req.get("stream"):
            usage = bool((req.get("stream_options") or {}).get("include_usage"))
            done = []

            def release() -> None:  # once: when the stream ends, or after a stream never begun
                if not done:
                    done.append(True)
                    leave()

            return StreamingResponse(
                _stream(answerer, args, rid, created, usage, release),
                media_type="text/event-stream",
                background=BackgroundTask(release),
            )
        try:
            loop = asyncio.get_running_loop()
            turn = await loop.run_in_executor(
                answerer.worker, answerer.answer, *args, lambda piece: None
            )
        except Exception as e:  # the model or the cloud broke: say so, OpenAI-shaped
            answerer.counts["errors"] += 1
            return error(500, f"edgecl could not answer: {e}", "server_error")
        finally:
            leave()
        reasoning, content = split_response(turn.answer)
        out = {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": answerer.model_name,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {
                        "role": "assistant",
                        "content": content,
                        "reasoning_content": reasoning,
                    },
                }
            ],
            "usage": _usage(answerer, args[0], turn),
            "edgecl": _extension(turn),
        }
        return JSONResponse(out, headers={"X-Edgecl-Cloud": str(int(turn.cloud_text is not None))})

    return app


def _check(req: dict, max_tokens: int) -> str | None:
    """Why this request cannot be served (OpenAI's 400), or None. Text content parts
    ([{"type": "text", "text": ...}]) are joined into plain strings in place."""
    if not isinstance(req, dict) or not isinstance(req.get("messages"), list):
        return "'messages' must be a list of {role, content}"
    for m in req["messages"]:
        if not isinstance(m, dict) or "role" not in m:
            return "each message needs a 'role' and a 'content'"
        if isinstance(m.get("content"), list):
            if any(
                not isinstance(part, dict) or part.get("type") != "text" for part in m["content"]
            ):
                return "edgecl reads text only: every content part must be {type: text}"
            m["content"] = "".join(str(part.get("text", "")) for part in m["content"])
    if not any(m["role"] == "user" for m in req["messages"]):
        return "'messages' needs at least one user message"
    for name in UNSUPPORTED:
        if req.get(name) not in (None, False, [], {}):
            return f"edgecl does not support '{name}'"
    try:
        n = int(req.get("n") or 1)
        asked = req.get("max_tokens") or req.get("max_completion_tokens")
        asked = None if asked is None else int(asked)
        float(req.get("temperature", 0.0))
    except (TypeError, ValueError):
        return "n, max_tokens and temperature must be numbers"
    if n != 1:
        return "edgecl returns one choice: n must be 1"
    if asked is not None and not 1 <= asked <= max_tokens:
        return f"max_tokens must be between 1 and {max_tokens}"
    return None


def _usage(answerer: Answerer, messages: list[dict], turn) -> dict:
    """Tokens of the client's messages, and of what the local model generated for them."""
    prompt = answerer.session.engine.count_tokens(messages)
    completion = turn.tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _extension(turn) -> dict:
    return {
        "help_requested": turn.help_requested,
        "cloud_used": turn.cloud_text is not None,
        "cloud_called": turn.cloud_called,
        "local_fallback": turn.fallback,
        "reason": turn.reason,
    }


async def _stream(
    answerer: Answerer,
    args: tuple,
    rid: str,
    created: int,
    usage: bool,
    release: Callable[[], None],
):
    """SSE chunks: reasoning and content deltas as the local model writes them (a help request's
    trigger is never shown), then the rest of the final answer, the edgecl object, usage."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    text, shown = "", ["", ""]

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        body = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": answerer.model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    def deltas(full: str) -> dict:
        delta = {}
        for k, (name, now) in enumerate(
            zip(("reasoning_content", "content"), split_response(full))
        ):
            if now.startswith(shown[k]) and len(now) > len(shown[k]):
                delta[name], shown[k] = now[len(shown[k]) :], now
        return delta

    def on_piece(piece: str) -> None:  # on the worker thread
        loop.call_soon_threadsafe(pieces.put_nowait, piece)

    task = loop.run_in_executor(answerer.worker, answerer.answer, *args, on_piece)
    try:
        yield chunk({"role": "assistant", "content": ""})
        while not (task.done() and pieces.empty()):
            try:
                piece = await asyncio.wait_for(pieces.get(), timeout=0.1)
            except TimeoutError:
                continue
            if text.count("</answer>") or TRIGGER in text:
                continue  # a fallback answer after a help request: shown from the final text
            text += piece
            if delta := deltas(text):
                yield chunk(delta)
        try:
            turn = await task
        except Exception as e:
            answerer.counts["errors"] += 1
            yield f"data: {json.dumps({'error': {'message': str(e), 'type': 'server_error'}})}\n\n"
            return
        yield chunk(deltas(turn.answer) or {}, "stop", edgecl=_extension(turn))
        if usage:
            body = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": answerer.model_name,
                "choices": [],
                "usage": _usage(answerer, args[0], turn),
            }
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        release()
