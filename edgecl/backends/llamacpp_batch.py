"""GRPO rollouts on llama.cpp: a group's G completions decoded together, one sequence per
completion in one `llama_batch`: 1.3-1.9x MLX's batched sampler on a quiet 2-core x86 box, 3-4.8x
on a busy one (`python benchmarks/rollouts_llamacpp_batched.py`; benchmarks/README.md).

    edgecl learn --task math --rollouts llamacpp

The samples come from the model's GGUF (for the bundled model, the Q4_1 file whose
dequantization MLX trains) with the current adapter exported to GGUF LoRA before every step,
so they are slightly off-policy: the update weights their tokens by truncated importance ratios
(mlx_loss.importance_weighted), from the log-probs recorded here.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import llama_cpp as L
import numpy as np
from llama_cpp import _logger

from edgecl.backends.base import Completion
from edgecl.backends.llamacpp import GGML_TYPE_F32, llama_log_lines, rejection_reason
from edgecl.backends.sampling import finish_reason, next_tokens, random_streams
from edgecl.errors import EdgeclError


class BatchedLlamaCpp:
    """A GGUF model on llama.cpp that samples many sequences at once, with one LoRA adapter
    that can be swapped between calls. Decoding uses all cores: batched, llama.cpp is
    compute-bound and gains from the second core even on a 2-core box."""

    def __init__(
        self, gguf: str | Path, n_threads: int | None = None, f32_kv_cache=False, flash_attn=True
    ):
        # llama-cpp-python prints every log line until a Llama(verbose=False) quiets it, and this
        # engine makes none: graph and adapter lines at each step would fill the terminal.
        _logger.set_verbose(False)
        with llama_log_lines():  # kept off the terminal, as every context's ~1000 lines
            self.model = L.llama_model_load_from_file(
                str(gguf).encode(), L.llama_model_default_params()
            )
        if not self.model:
            raise EdgeclError(f"llama.cpp cannot load {gguf}: is it a GGUF model file?")
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.threads = n_threads or os.cpu_count() or 1
        self.f32_kv_cache = f32_kv_cache
        # Flash attention: 1.5x faster on the real model, samples a little further from the
        # policy (KL 0.004 against 0.0013 per token; benchmarks/README.md). Tests turn it off.
        self.flash_attn = flash_attn
        self.adapter = None

    def set_adapter(self, lora_gguf: str | Path | None) -> None:
        """Use this GGUF LoRA from the next `sample` on (None: the base model)."""
        if self.adapter:
            L.llama_adapter_lora_free(self.adapter)
        self.adapter = None
        if lora_gguf is not None:
            with llama_log_lines() as log:
                adapter = L.llama_adapter_lora_init(self.model, str(lora_gguf).encode())
            if not adapter:  # a NULL pointer object
                raise EdgeclError(
                    f"llama.cpp rejected the LoRA adapter {lora_gguf} ({rejection_reason(log)})"
                )
            self.adapter = adapter

    def sample(
        self,
        prompts: Sequence[Sequence[int]],
        group_size: int,
        max_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed=None,
        *,
        decode,
        eos_ids=frozenset(),
    ) -> list[Completion]:
        """As MLXModel.sample (same order, seeds, stops and temperature-1 log-probs), with
        `decode` (ids to text) and `eos_ids` from the policy's tokenizer."""
        if not prompts:
            return []
        if min(len(p) for p in prompts) == 0:
            raise EdgeclError("empty prompt: give at least one token")
        n = len(prompts) * group_size
        streams = random_streams(seed, len(prompts), group_size)
        ctx, batch = self._context(prompts, n, max_tokens)
        try:
            logits = self._prefill(ctx, batch, prompts, group_size)
            ids: list[list[int]] = [[] for _ in range(n)]
            lps: list[list[float]] = [[] for _ in range(n)]
            finish: list[tuple] = [("length", None)] * n
            active = list(range(n))
            for step in range(max_tokens):
                uniform = np.array([streams[b].random() for b in active])
                token, token_lp = next_tokens(logits, temperature, top_p, uniform)
                keep = []
                for row, (b, t, lp) in enumerate(zip(active, token.tolist(), token_lp.tolist())):
                    ids[b].append(t)
                    lps[b].append(lp)
                    if ended := finish_reason(ids[b], eos_ids, stop, decode):
                        finish[b] = ended
                    else:
                        keep.append(row)
                if not keep or step == max_tokens - 1:
                    break
                active = [active[r] for r in keep]
                positions = [len(prompts[b // group_size]) + step for b in active]
                self._decode(ctx, batch, [ids[b][-1] for b in active], positions, active)
                logits = self._logits(ctx, len(active))
        finally:
            L.llama_batch_free(batch)
            with llama_log_lines():
                L.llama_free(ctx)
        return [
            Completion(b // group_size, ids[b], lps[b], decode(ids[b]), *finish[b])
            for b in range(n)
        ]

    def _context(self, prompts, n_seq: int, max_tokens: int):
        """A context for one call: a unified KV cache (a group's prompt is stored once and
        shared by its sequences), with room for every prompt and every completion."""
        params = L.llama_context_default_params()
        params.n_ctx = sum(len(p) for p in prompts) + n_seq * max_tokens + 256
        params.n_batch = params.n_ubatch = max(n_seq, max(len(p) for p in prompts))
        params.n_seq_max = n_seq
        params.n_threads = params.n_threads_batch = self.threads
        params.kv_unified = True
        params.flash_attn_type = 1 if self.flash_attn else 0
        if self.f32_kv_cache:
            params.type_k = params.type_v = GGML_TYPE_F32
        with llama_log_lines():
            ctx = L.llama_init_from_model(self.model, params)
        if not ctx:
            raise EdgeclError(f"llama.cpp could not make a context for {n_seq} sequences")
        if self.adapter and L.llama_set_adapters_lora(
            ctx, (L.llama_adapter_lora_p_ctypes * 1)(self.adapter), 1, (ctypes.c_float * 1)(1.0)
        ):
            L.llama_free(ctx)
            raise EdgeclError("llama.cpp could not attach the LoRA adapter")
        return ctx, L.llama_batch_init(params.n_batch, 0, 1)

    def _prefill(self, ctx, batch, prompts, group_size: int) -> np.ndarray:
        """Each prompt once, into the first sequence of its group, then shared with the rest;
        returns the next-token logits of every sequence."""
        memory = L.llama_get_memory(ctx)
        first = []
        for p, prompt in enumerate(prompts):
            seq = p * group_size
            self._decode(ctx, batch, prompt, range(len(prompt)), [seq] * len(prompt), last=True)
            first.append(self._logits(ctx, 1)[0])
            for g in range(1, group_size):
                L.llama_memory_seq_cp(memory, seq, seq + g, -1, -1)
        return np.repeat(np.stack(first), group_size, axis=0)

    def _decode(self, ctx, batch, tokens, positions, seqs, last: bool = False) -> None:
        """One llama_decode of tokens at positions in sequences; logits for every token, or with
        `last` for the last one only (a prefill)."""
        batch.n_tokens = len(tokens)
        for i, (token, pos, seq) in enumerate(zip(tokens, positions, seqs)):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.seq_id[i][0] = token, pos, 1, seq
            batch.logits[i] = not last or i == len(tokens) - 1
        if L.llama_decode(ctx, batch) != 0:
            raise EdgeclError("llama.cpp failed to decode a batch (out of memory?)")

    def _logits(self, ctx, rows: int) -> np.ndarray:
        flat = np.ctypeslib.as_array(L.llama_get_logits(ctx), shape=(rows * self.n_vocab,))
        return flat.reshape(rows, self.n_vocab).copy()

    def close(self) -> None:
        self.set_adapter(None)
        L.llama_model_free(self.model)


class LlamaCppRollouts:
    """The trainer's sampler for `--rollouts llamacpp`: the policy's chat template, tokenizer and
    stops, llama.cpp's batched decoding with the policy's current adapter."""

    def __init__(self, policy, gguf: str | Path, n_threads: int | None = None, **engine):
        self.policy = policy
        self.gguf = Path(gguf)
        self.engine = BatchedLlamaCpp(gguf, n_threads, **engine)
        self.workdir = tempfile.TemporaryDirectory(prefix="edgecl-rollouts-")

    def chat_ids(self, messages: list[dict]) -> list[int]:
        return self.policy.chat_ids(messages)

    def sample(self, prompts, group_size=1, max_tokens=128, temperature=1.0, top_p=1.0,
               stop=(), seed=None) -> list[Completion]:  # fmt: skip
        self.sync()
        policy = self.policy
        return self.engine.sample(prompts, group_size, max_tokens, temperature, top_p, stop,
                                  seed, decode=policy.decode, eos_ids=policy.eos_ids)  # fmt: skip

    def sync(self) -> None:
        """Export the policy's adapter as it is now to GGUF LoRA and use it (about 1 s)."""
        from edgecl.models.export import export_gguf_lora

        if self.policy.optimizer is None:  # no adapter attached: the base model
            return self.engine.set_adapter(None)
        directory = Path(self.workdir.name)
        self.policy.save_adapter(directory / "adapter", with_optimizer=False)  # weights suffice
        export_gguf_lora(directory / "adapter", directory / "adapter.gguf", base_gguf=self.gguf)
        self.engine.set_adapter(directory / "adapter.gguf")

    def close(self) -> None:
        self.engine.close()
        self.workdir.cleanup()
