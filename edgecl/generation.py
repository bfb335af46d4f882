"""Streaming chat generation with a learner's adapter, on MLX or on llama.cpp, one interface.

    engine = load_engine("mlx", model_name=None, adapter=version_dir)
    for piece in engine.stream(messages, max_tokens=256, temperature=0.0):
        print(piece, end="")

`suppress_help=True` bans the help trigger where an answer starts (right after `<answer>`), so
the model answers locally; chat uses it when the budget or a cap says no. Generation stops at
`</answer>` and at the trigger (kept in the text), like training's sampler.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from edgecl.core.protocol import STOP_STRINGS, TRIGGER

ANSWER_TAG = "<answer>"


class ChatEngine(Protocol):
    name: str

    def stream(
        self, messages: list[dict], max_tokens: int, temperature: float, suppress_help: bool
    ) -> Iterator[str]: ...

    def count_tokens(self, messages: list[dict]) -> int: ...

    def help_probability(self, messages: list[dict], response: str) -> float | None: ...

    def swap_adapter(self, adapter: Path) -> None: ...


class TriggerSuppressor:
    """Which ids to ban given the ids so far: the trigger's first token (with or without a
    leading space) when the text so far ends with `<answer>`."""

    def __init__(self, encode, decode) -> None:
        self.decode = decode
        self.banned = sorted({encode(TRIGGER)[0], encode(" " + TRIGGER)[0]})
        self.window = len(encode(ANSWER_TAG)) + 2

    def active(self, ids: Sequence[int]) -> bool:
        return self.decode(list(ids[-self.window :])).rstrip().endswith(ANSWER_TAG)


def _stops(text: str) -> bool:
    return any(s in text for s in STOP_STRINGS)


class MLXChat:
    """mlx-lm's own `stream_generate` on the MLX model (and its LoRA layers)."""

    def __init__(self, model) -> None:
        self.model = model
        self.name = f"mlx:{model.name}"
        tok = model.tokenizer
        self.suppressor = TriggerSuppressor(
            lambda t: tok.encode(t, add_special_tokens=False), tok.decode
        )

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.model.chat_ids(messages))

    def swap_adapter(self, adapter: Path) -> None:
        self.model.load_adapter(adapter)

    def help_probability(self, messages: list[dict], response: str) -> float | None:
        """P(help) of the response (edgecl.evaluate.help_probabilities): what calibration
        measured."""
        from edgecl.backends.base import Completion
        from edgecl.evaluate import help_probabilities

        done = Completion(0, [], [], response, "stop")
        return help_probabilities(self.model, [self.model.chat_ids(messages)], [done])[0]

    def stream(
        self, messages: list[dict], max_tokens: int, temperature: float, suppress_help: bool
    ) -> Iterator[str]:
        import mlx.core as mx
        from mlx_lm.generate import stream_generate
        from mlx_lm.sample_utils import make_sampler

        processors = []
        if suppress_help:
            banned = mx.array(self.suppressor.banned)

            def ban(tokens: mx.array, logits: mx.array) -> mx.array:
                if self.suppressor.active(tokens.tolist()):
                    logits[..., banned] = -mx.inf
                return logits

            processors.append(ban)
        text = ""
        for response in stream_generate(
            self.model.model, self.model.tokenizer, self.model.chat_ids(messages),
            max_tokens=max_tokens, sampler=make_sampler(temp=temperature),
            logits_processors=processors,
        ):  # fmt: skip
            text += response.text
            yield response.text
            if _stops(text):
                break


class LlamaChat:
    """llama.cpp (llama-cpp-python) with the adapter exported as a GGUF LoRA."""

    def __init__(self, llm, name: str) -> None:
        self.llm = llm
        self.name = f"llamacpp:{name}"
        self.suppressor = TriggerSuppressor(
            lambda t: llm.tokenize(t, special=False), lambda ids: llm.detokenize(ids)
        )

    def count_tokens(self, messages: list[dict]) -> int:
        text = "".join(m["content"] for m in messages)
        return len(self.llm.tokenize(text)) + 8 * len(messages)  # the template's few tokens

    def swap_adapter(self, adapter: Path) -> None:
        from edgecl.backends.llamacpp import LlamaCppModel
        from edgecl.models.export import adapter_gguf_for

        base = self.llm.path
        self.llm = LlamaCppModel(str(base), adapter_gguf=str(adapter_gguf_for(adapter, base)))

    def help_probability(self, messages: list[dict], response: str) -> float | None:
        """As MLXChat's, from llama.cpp's logits (the GGUF LoRA attached)."""
        from edgecl.evaluate import help_branches

        encode = lambda t: self.llm.tokenize(t, special=False)  # noqa: E731
        splits = help_branches(encode, response)
        if not splits:
            return float(response.rstrip().endswith(TRIGGER))
        prompt = self.llm.chat_ids(messages)
        if prompt is None:  # no chat template to score under: chat applies no threshold
            return None
        return max(math.exp(self.llm.sequence_logprob(prompt + h, b)) for h, b in splits)

    def stream(
        self, messages: list[dict], max_tokens: int, temperature: float, suppress_help: bool
    ) -> Iterator[str]:
        from llama_cpp import LogitsProcessorList

        processors = None
        if suppress_help:

            def ban(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
                if self.suppressor.active(list(ids)):
                    scores[self.suppressor.banned] = -np.inf
                return scores

            processors = LogitsProcessorList([ban])
        self.llm.llm.reset()
        chunks = self.llm.llm.create_chat_completion(
            messages=messages, max_tokens=max_tokens, temperature=temperature, top_k=0,
            top_p=1.0, min_p=0.0, repeat_penalty=1.0, stream=True, logits_processor=processors,
        )  # fmt: skip
        text = ""
        for chunk in chunks:
            piece = chunk["choices"][0]["delta"].get("content") or ""
            text += piece
            if piece:
                yield piece
            if _stops(text):
                break


def load_engine(backend: str, model_name: str | None, adapter: Path | None) -> ChatEngine:
    """The chat engine for `backend` ("mlx" or "llamacpp"), the model and an adapter dir."""
    from edgecl.models.registry import resolve_model

    entry = resolve_model(model_name)
    if backend == "mlx":
        from edgecl.backends.mlx_backend import MLXModel

        model = MLXModel.load(entry.mlx_dir, entry.name)
        if adapter is not None:
            model.load_adapter(adapter)
        return MLXChat(model)
    from edgecl.backends.llamacpp import LlamaCppModel
    from edgecl.models.export import adapter_gguf_for
    from edgecl.models.registry import ensure_gguf

    base = ensure_gguf(entry)
    lora = adapter_gguf_for(adapter, base) if adapter is not None else None
    return LlamaChat(LlamaCppModel(str(base), adapter_gguf=str(lora) if lora else None), entry.name)
