"""Any OpenAI-compatible chat endpoint (OpenAI, DeepSeek, vLLM, llama.cpp's server, Ollama).

The API key is read from an environment variable at each call and never kept on the object,
logged or returned, so a run's database, logs and checkpoints cannot leak it.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from typing import Any
from urllib.parse import urlparse

import httpx

from edgecl.cloud.base import CloudReply
from edgecl.errors import EdgeclError

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_BODY_BYTES = 1 << 20  # a 1024-token answer is a few KiB; more means max_tokens was ignored


class AnswerTooLong(Exception):
    pass


def _read_capped(resp: httpx.Response, cap: int) -> bytes:
    """The body, refusing one over `cap` bytes before it is all in memory."""
    chunks, size = [], 0
    for chunk in resp.iter_bytes():
        size += len(chunk)
        if size > cap:
            raise AnswerTooLong(f"the answer is over {cap} bytes: the server ignored max_tokens")
        chunks.append(chunk)
    return b"".join(chunks)


class OpenAICloud:
    """POST {base_url}/chat/completions with bounded retries.

    Retried: 429 and 5xx, connection errors, timeouts and bodies cut short, up to 1 +
    max_retries attempts, waiting backoff_s * 2**k between them (or the server's Retry-After,
    capped at max_retry_after_s). Other 4xx answers and bodies over MAX_BODY_BYTES are final.
    """

    simulated = False

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        max_retry_after_s: float = 30.0,
    ) -> None:
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise EdgeclError(f"cloud URL {base_url!r} is not http(s)://host/...: fix --cloud-url")
        self.local = parsed.hostname in LOCAL_HOSTS
        if not self.local and not os.environ.get(api_key_env):
            raise EdgeclError(
                f"no API key for {parsed.hostname}: set {api_key_env} or pass --cloud-key-env NAME"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_retry_after_s = max_retry_after_s
        self.name = f"openai:{model}@{parsed.hostname}"
        self._http = httpx.Client(timeout=timeout_s)

    def __repr__(self) -> str:
        return (
            f"OpenAICloud(base_url={self.base_url!r}, model={self.model!r}, "
            f"api_key_env={self.api_key_env!r})"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenAICloud:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def complete(self, messages: list[dict], item: Any = None) -> CloudReply:
        """One chat completion; `item` is unused (only the reference cloud reads it)."""
        start = time.perf_counter()
        key = os.environ.get(self.api_key_env)
        if not key and not self.local:
            return self._fail("error", f"{self.api_key_env} is no longer set", 0, start)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        status, error = "error", ""
        for attempt in range(1, self.max_retries + 2):
            wait = self.backoff_s * 2 ** (attempt - 1)
            try:
                url = f"{self.base_url}/chat/completions"
                with self._http.stream("POST", url, json=body, headers=headers) as resp:
                    raw = _read_capped(resp, MAX_BODY_BYTES)
            except AnswerTooLong as exc:  # the server ignores max_tokens: asking again won't help
                return self._fail("too_long", str(exc), attempt, start)
            except httpx.TimeoutException as exc:
                status, error = "timeout", f"no answer within {self.timeout_s}s ({exc})"
            except httpx.RequestError as exc:  # connection, protocol, decoding, redirects
                status = "refused" if _refused(exc) else "error"
                error = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    return self._parse(raw, attempt, start)
                status = f"http_{resp.status_code}"
                error = _http_error(resp.status_code, raw)
                if resp.status_code != 429 and resp.status_code < 500:
                    return self._fail(status, _redact(error, key), attempt, start)
                after = _retry_after(resp.headers.get("retry-after"))
                if after is not None:
                    wait = min(after, self.max_retry_after_s)
            if attempt <= self.max_retries:
                time.sleep(wait)
        return self._fail(status, _redact(error, key), self.max_retries + 1, start)

    def _parse(self, raw: bytes, attempt: int, start: float) -> CloudReply:
        try:
            data = json.loads(raw)
            text = data["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            return self._fail("error", f"malformed completion: {exc!r}", attempt, start)
        usage = data.get("usage") or {}
        return CloudReply(
            text=text,
            ok=True,
            status="ok",
            latency_s=time.perf_counter() - start,
            attempts=attempt,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )

    def _fail(self, status: str, error: str, attempts: int, start: float) -> CloudReply:
        return CloudReply(
            text="",
            ok=False,
            status=status,
            latency_s=time.perf_counter() - start,
            attempts=attempts,
            error=error,
        )


def _refused(exc: BaseException) -> bool:
    """True when the cause chain holds a refused TCP connection (nothing listens there)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "refused" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _http_error(status: int, raw: bytes) -> str:
    if status in (401, 403):
        return f"HTTP {status}: the endpoint rejected the key"  # bodies echo keys
    return f"HTTP {status}: {raw[:200].decode(errors='replace')}"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _redact(text: str, key: str | None) -> str:
    return text.replace(key, "***") if key else text
