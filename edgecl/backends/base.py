"""What a backend hands the trainer (a sampled `Completion`) and the LoRA settings it takes.

The algorithm core never sees a backend; the trainer hands it texts and numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Completion:
    """One sampled response.

    `token_ids` are exactly the sampled ids (an end-of-sequence id included when the model chose
    it, so learning to stop is learnt too); `logprobs[i]` is log pi(token_ids[i] | prefix) under
    the unmodified model distribution (temperature 1, no top-p), whatever the sampling settings.
    """

    prompt_index: int
    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str  # "eos" | "stop" (a stop string) | "length" (hit max_tokens)
    stop: str | None = None  # the stop string that ended it

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class LoraConfig:
    """LoRA settings; `scale = alpha / rank` multiplies the low-rank update."""

    rank: int = 8
    alpha: float = 16.0
    num_layers: int = -1  # -1: every layer; n: the last n layers
    keys: tuple[str, ...] = (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    )
    extra: dict = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank
