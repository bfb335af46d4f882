"""Fast CPU inference on llama.cpp (llama-cpp-python), with a GGUF LoRA adapter checked to apply.

    from edgecl.backends.llamacpp import LlamaCppModel
    m = LlamaCppModel("model.gguf", adapter_gguf="adapter.gguf")
    print(m.chat([{"role": "user", "content": "Name three colours."}], temperature=0))

Why not `Llama(lora_path=...)`: llama-cpp-python 0.3.36 tests the handle returned by
`llama_adapter_lora_init` with `is None`, but ctypes returns a NULL *pointer object* on failure,
so a rejected adapter passes that test; the NULL then goes to `llama_set_adapters_lora` and the
first decode segfaults (seen with a shape-mismatched adapter), with no reason printed because its
log-level mapping hides llama.cpp's error line (see `llama_log_lines`).
So the adapter is attached here through the C API, and three checks make a failure loud:
1. before loading, `check_gguf_lora` compares its tensors with the model's (what llama.cpp
   would reject, with a readable reason);
2. the handle must be non-NULL and `llama_set_adapters_lora` must return 0;
3. the last-position logits of a fixed short prompt must change when the adapter is attached,
   whenever its B matrices are not (numerically) zero: a fresh LoRA has B = 0 and is a no-op.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import Llama

from edgecl.errors import EdgeclError
from edgecl.models.export import check_gguf_lora, read_gguf_header

PROBE_TEXT = "The capital of France is"  # any short text: only "do the logits move?" matters
MIN_EFFECTIVE_B = 1e-6  # below this |lora_b| an adapter cannot move float32 logits measurably
GGML_TYPE_F32 = 0


def default_threads() -> int:
    """1 thread on a (busy) 2-core box, where it is often faster; else up to 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(4, cores)


@contextlib.contextmanager
def llama_log_lines() -> Iterator[list[str]]:
    """Collect llama.cpp's log lines for a moment.

    llama-cpp-python 0.3.36 maps ggml's current log levels wrongly (ERROR=4 becomes DEBUG), so
    with verbose=False the reason for a rejected adapter is never shown; we catch it here.
    """
    from llama_cpp import _logger

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level, text, user_data):
        lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def rejection_reason(log: list[str]) -> str:
    """Why llama.cpp refused an adapter: its last "failed" log line, without the prefix."""
    reason = next((line for line in reversed(log) if "failed" in line), "no reason given")
    return reason.split(": ", 1)[-1].strip()


class LlamaCppModel:
    """A GGUF model on llama.cpp, optionally with one LoRA adapter (verified to be applied).

    Every call starts from a reset state: llama-cpp-python reuses its KV cache across calls,
    which makes even temperature 0 differ between identical calls on one `Llama`.
    `f32_kv_cache=True` keeps the KV cache in float32 (default float16) for exact comparisons.
    """

    def __init__(
        self,
        gguf_path: str | Path,
        adapter_gguf: str | Path | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        seed: int = 0,
        f32_kv_cache: bool = False,
    ) -> None:
        self.path = Path(gguf_path)
        meta, _ = read_gguf_header(self.path)  # EdgeclError for a missing or non-GGUF file
        if meta.get("general.type", "model") != "model":
            raise EdgeclError(f"{self.path} is a GGUF {meta['general.type']}, not a model")
        max_b = check_gguf_lora(adapter_gguf, self.path) if adapter_gguf is not None else 0.0
        threads = n_threads or default_threads()
        kv = {"type_k": GGML_TYPE_F32, "type_v": GGML_TYPE_F32} if f32_kv_cache else {}
        try:
            self.llm = Llama(
                model_path=str(self.path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                seed=seed,
                verbose=False,
                # The model's own template verbatim, not a built-in look-alike it may be mapped to.
                chat_format="chat_template.default" if "tokenizer.chat_template" in meta else None,
                **kv,
            )
        except (ValueError, RuntimeError) as e:
            raise EdgeclError(f"llama.cpp cannot load {self.path}: {e}") from e
        self._rng = random.Random(seed)
        self._formatter = None  # chat_ids' template, made on first use
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.adapter = Path(adapter_gguf) if adapter_gguf is not None else None
        if self.adapter is not None:
            try:
                self._attach_adapter(self.adapter, max_b)
            except EdgeclError:
                self.llm.close()
                raise

    def _attach_adapter(self, path: Path, max_b: float) -> None:
        """Attach a LoRA through the C API and prove it changes the output (module docstring)."""
        probe = self.tokenize(PROBE_TEXT)
        before = self.logits(probe)
        with llama_log_lines() as log:
            handle = llama_cpp.llama_adapter_lora_init(self.llm.model, str(path).encode())
        if not handle:  # a NULL POINTER object, which `is None` misses
            raise EdgeclError(
                f"llama.cpp rejected the LoRA adapter {path} for {self.path.name} "
                f"({rejection_reason(log)}); re-export the adapter for this model"
            )
        self._adapter_handle = handle  # freed by llama.cpp together with the model
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle)
        scales = (ctypes.c_float * 1)(1.0)
        if llama_cpp.llama_set_adapters_lora(self.llm.ctx, adapters, 1, scales) != 0:
            raise EdgeclError(f"llama.cpp could not attach the LoRA adapter {path}")
        after = self.logits(probe)
        if max_b >= MIN_EFFECTIVE_B and np.array_equal(before, after):
            raise EdgeclError(
                f"llama.cpp loaded the LoRA adapter {path} but it has no effect on "
                f"{self.path.name}; re-export the adapter for this model"
            )

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        """Token ids of `text` (special tokens such as <|im_end|> parsed as such)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def detokenize(self, ids: Sequence[int], special: bool = False) -> str:
        return self.llm.detokenize(list(ids), special=special).decode("utf-8", errors="replace")

    def logits(self, prompt_ids: Sequence[int]) -> np.ndarray:
        """float32 logits (vocab,) for the token after `prompt_ids`."""
        self._check_length(prompt_ids, 0)
        self.llm.reset()
        self.llm.eval(list(prompt_ids))
        row = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(row, shape=(self.llm.n_vocab(),)).copy()

    def chat_ids(self, messages: list[dict]) -> list[int] | None:
        """The prompt ids `chat` feeds the model for `messages` (the GGUF's own template, with the
        assistant turn opened), as llama-cpp-python's chat handler makes them; None for a GGUF
        without a chat template."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm, text = self.llm, self.llm._model.token_get_text
        if "tokenizer.chat_template" not in llm.metadata:
            return None
        if self._formatter is None:  # compiling the template once, not every turn
            self._formatter = Jinja2ChatFormatter(
                template=llm.metadata["tokenizer.chat_template"],
                eos_token=text(llm.token_eos()) if llm.token_eos() != -1 else "",
                bos_token=text(llm.token_bos()) if llm.token_bos() != -1 else "",
            )
        result = self._formatter(messages=messages)
        return llm.tokenize(result.prompt.encode(), add_bos=not result.added_special, special=True)

    def sequence_logprob(self, context: Sequence[int], continuation: Sequence[int]) -> float:
        """log P(continuation | context), teacher-forced one token at a time."""
        self._check_length(list(context) + list(continuation), 0)
        self.llm.reset()
        self.llm.eval(list(context))
        total = 0.0
        for token in continuation:
            row = np.ctypeslib.as_array(
                llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.llm.n_vocab(),)
            ).astype(np.float64)
            top = row.max()
            total += row[token] - top - np.log(np.exp(row - top).sum())
            self.llm.eval([token])
        return float(total)

    def generate_ids(
        self,
        prompt_ids: Sequence[int],
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[int]:
        """Sampled continuation ids, ending with the end-of-generation id if the model chose it.

        temperature 0 is greedy (argmax); otherwise plain temperature / top-p sampling.
        """
        self._check_length(prompt_ids, 1)
        max_tokens = min(max_tokens, self.llm.n_ctx() - len(prompt_ids))
        self.llm.set_seed(self._next_seed(seed))
        self.llm.reset()
        out: list[int] = []
        if max_tokens <= 0:
            return out
        stream = self.llm.generate(
            list(prompt_ids),
            temp=temperature,
            top_k=0,
            top_p=top_p,
            min_p=0.0,
            repeat_penalty=1.0,
            reset=True,
        )
        for token in stream:
            out.append(int(token))
            if llama_cpp.llama_vocab_is_eog(self._vocab, token) or len(out) >= max_tokens:
                break
        return out

    def chat(
        self,
        messages: list[dict],
        max_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        stream: bool = False,
        seed: int | None = None,
    ) -> str | Iterator[str]:
        """The assistant's reply under the model's chat template (text, or pieces if stream)."""
        self.llm.reset()
        result = self.llm.create_chat_completion(
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            stop=list(stop or []),
            stream=stream,
            seed=self._next_seed(seed),
        )
        if not stream:
            return result["choices"][0]["message"]["content"] or ""
        return (
            chunk["choices"][0]["delta"]["content"]
            for chunk in result
            if chunk["choices"][0]["delta"].get("content")
        )

    def close(self) -> None:
        self.llm.close()

    def __enter__(self) -> LlamaCppModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _next_seed(self, seed: int | None) -> int:
        """An explicit seed, else the next of a stream seeded at construction (repeatable runs)."""
        return seed if seed is not None else self._rng.randrange(2**31)

    def _check_length(self, prompt_ids: Sequence[int], room: int) -> None:
        if not prompt_ids:
            raise EdgeclError("empty prompt: give at least one token")
        if len(prompt_ids) + room > self.llm.n_ctx():
            raise EdgeclError(
                f"prompt of {len(prompt_ids)} tokens does not fit the context of "
                f"{self.llm.n_ctx()} tokens; shorten it or raise n_ctx"
            )
