"""What every cloud returns, so the trainer treats a real endpoint and the reference alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class CloudReply:
    """One cloud completion, or why there is none.

    status: "ok", "timeout", "refused", "http_<code>" or "error". latency_s is the wall time
    of the whole call, retries and back-off included (what the training step waited).
    """

    text: str
    ok: bool
    status: str
    latency_s: float
    attempts: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    simulated: bool = False
    error: str | None = None
    reused: bool = False  # an answer already paid for, replayed after a resume: not a new call
    call_id: int | None = None  # its cloud_calls row, when logged as it was made (PaidAnswers)

    def log_fields(self) -> dict[str, Any]:
        """The fields the `cloud_calls` table keeps (the text goes to the samples log)."""
        return {
            "simulated": self.simulated,
            "status": self.status,
            "ok": self.ok,
            "latency_s": self.latency_s,
            "attempts": self.attempts,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "error": self.error,
        }


class Cloud(Protocol):
    """A helper model. complete() never raises for network faults: it returns ok=False,
    because a failed call must cost the training run one reward, not the run itself."""

    name: str
    simulated: bool

    def complete(self, messages: list[dict], item: Any = None) -> CloudReply: ...
