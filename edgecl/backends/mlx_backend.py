"""The MLX backend: batched sampling with log-probs, LoRA, the policy-gradient step, checkpoints.

    from edgecl.backends.mlx_backend import MLXModel
    m = MLXModel.load("~/.local/share/edgecl/models/smollm2-135m-instruct/mlx")
    outs = m.sample([m.chat_ids([{"role": "user", "content": "Hi"}])], group_size=8)

One code path for Apple Silicon, Linux CPU (`mlx[cpu]`, with OpenBLAS preloaded) and NVIDIA.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgecl.backends.adapter_files import (
    ADAPTER_WEIGHTS,
    OPTIMIZER_STATE,
    read_adapter_config,
    write_adapter,
)
from edgecl.backends.base import Completion, LoraConfig
from edgecl.backends.blas import preload_openblas
from edgecl.backends.llama_forward import is_plain_llama, mlp
from edgecl.backends.memory import hold_freed_memory
from edgecl.backends.mlx_attention import decode_attention
from edgecl.backends.mlx_loss import (
    anchored_pg_loss,
    at_least_float32,
    lm_head,
    pack,
    pg_loss,
    position_logprobs,
    token_logprobs,
)
from edgecl.backends.sampling import finish_reason, next_tokens, random_streams
from edgecl.errors import EdgeclError

preload_openblas()  # must precede the first `import mlx.core` in the process

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
from mlx.utils import tree_flatten, tree_map, tree_unflatten  # noqa: E402
from mlx_lm.models.cache import BatchKVCache  # noqa: E402
from mlx_lm.tuner.utils import linear_to_lora_layers  # noqa: E402
from mlx_lm.utils import load as mlx_lm_load  # noqa: E402


class MLXModel:
    """A causal LM on MLX plus (optionally) a LoRA adapter and its optimizer."""

    def __init__(self, model: nn.Module, tokenizer, model_dir: Path, name: str):
        self.model = model
        self.tokenizer = tokenizer
        self.model_dir = model_dir
        self.name = name
        self.config = json.loads((model_dir / "config.json").read_text())
        self.eos_ids = set(tokenizer.eos_token_ids)
        self.lora: LoraConfig | None = None
        self.optimizer: optim.Optimizer | None = None
        self.anchor_kl: float | None = None  # the last anchored step's mean per-token KL

    @classmethod
    def load(cls, model_dir: str | Path, name: str | None = None) -> MLXModel:
        model_dir = Path(model_dir).expanduser()
        if not (model_dir / "config.json").is_file():
            raise EdgeclError(f"{model_dir} is not an MLX model directory (no config.json)")
        model, tokenizer = mlx_lm_load(str(model_dir))
        if mx.default_device() == mx.cpu:
            # Only float32 goes through BLAS on CPU; half precision is many times slower there.
            model.update(tree_map(_to_float32, model.parameters()))
        model.eval()
        return cls(model, tokenizer, model_dir, name or model_dir.name)

    @property
    def fingerprint(self) -> str:
        """Identifies the base weights: an adapter only fits the model it was trained on."""
        digest = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode())
        embed = dict(tree_flatten(self.model.parameters()))["model.embed_tokens.weight"]
        digest.update(np.array(embed[:4].astype(mx.float32)).tobytes())
        return digest.hexdigest()[:16]

    # ---------------------------------------------------------------- text
    def chat_ids(self, messages: list[dict]) -> list[int]:
        """Token ids of a chat prompt in the model's template, ready for the assistant turn."""
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i not in self.eos_ids])

    # ------------------------------------------------------------ sampling
    def sample(
        self,
        prompts: Sequence[Sequence[int]],
        group_size: int = 1,
        max_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | Sequence[int] | None = None,
    ) -> list[Completion]:
        """`group_size` completions of each prompt, decoded together in one batch.

        Each distinct prompt is prefilled once and its KV cache copied to its group. Returns
        completions prompt-major: [p0 s0, p0 s1, ..., p1 s0, ...]. temperature 0 is greedy.
        Every completion draws from its own random stream, fixed by (the prompt's seed, its
        index in the group): `seed` is one per prompt, or one for all (then prompt p's is
        (seed, p)). So a prompt's completions do not depend on which other prompts share the
        batch, which lets data-parallel ranks sample shares of a batch as one process would.
        """
        if not prompts:
            return []
        streams = random_streams(seed, len(prompts), group_size)
        logits, cache = self._prefill(prompts)
        rows = np.repeat(np.arange(len(prompts)), group_size)
        if group_size > 1:
            index = mx.array(rows)
            for c in cache:
                c.keys, c.values = c.keys[index], c.values[index]
                c.offset, c.left_padding = c.offset[index], c.left_padding[index]
            logits = logits[index]
        n = len(rows)
        ids: list[list[int]] = [[] for _ in range(n)]
        lps: list[list[float]] = [[] for _ in range(n)]
        finish: list[tuple[str, str | None]] = [("length", None)] * n
        active = list(range(n))
        for step in range(max_tokens):
            uniform = np.array([streams[b].random() for b in active])
            token, token_lp = next_tokens(np.array(logits), temperature, top_p, uniform)
            last = step == max_tokens - 1
            if not last:
                # Queue the next forward pass now, so it runs while Python does the bookkeeping;
                # rows that finish this step cost one wasted position each.
                logits = at_least_float32(self._decode(mx.array(token)[:, None], cache))
                mx.async_eval(logits)
            keep = []
            for row, (b, t, lp) in enumerate(zip(active, token.tolist(), token_lp.tolist())):
                ids[b].append(t)
                lps[b].append(lp)
                if ended := finish_reason(ids[b], self.eos_ids, stop, self.tokenizer.decode):
                    finish[b] = ended
                else:
                    keep.append(row)
            if not keep or last:
                break
            if len(keep) < len(active):
                index = mx.array(keep)
                for c in cache:
                    c.filter(index)
                logits = logits[index]
                active = [active[r] for r in keep]
        return [
            Completion(int(rows[b]), ids[b], lps[b], self.decode(ids[b]), *finish[b])
            for b in range(n)
        ]

    def _decode(self, tokens: mx.array, cache: list) -> mx.array:
        """Logits for one new token per row: `model(tokens, cache)[:, -1]`, faster for llama."""
        if not is_plain_llama(self.model):
            return self.model(tokens, cache=cache)[:, -1, :]
        inner = self.model.model
        h = inner.embed_tokens(tokens)
        mask = cache[0].make_mask(1)  # (rows, 1, 1, keys): a row's left padding is masked out
        for layer, c in zip(inner.layers, cache):
            h = h + decode_attention(layer.self_attn, layer.input_layernorm(h), c, mask)
            h = h + mlp(layer.mlp, layer.post_attention_layernorm(h))
        return lm_head(self.model)(inner.norm(h))[:, -1, :]

    def _prefill(self, prompts: Sequence[Sequence[int]]):
        lengths = [len(p) for p in prompts]
        if min(lengths) == 0:
            raise EdgeclError("empty prompt: give at least one token")
        width = max(lengths)
        padding = [width - k for k in lengths]
        tokens = mx.array([[0] * pad + list(p) for p, pad in zip(prompts, padding)])
        cache = [BatchKVCache(padding) for _ in self.model.layers]
        logits = at_least_float32(self.model(tokens, cache=cache)[:, -1, :])
        return logits, cache

    # --------------------------------------------------------- log-probs
    def sequence_logprobs(
        self, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]
    ) -> list[np.ndarray]:
        """Teacher-forced log pi(completion token | prefix) for each pair, no sampling."""
        prefix, inputs, positions, targets, _ = pack(prompts, completions)
        out = np.array(token_logprobs(self.model, prefix, inputs, positions, targets))
        return [out[i, : len(c)] for i, c in enumerate(completions)]

    # --------------------------------------------------------------- LoRA
    def attach_lora(self, config: LoraConfig, learning_rate: float = 1e-4, seed: int = 0) -> None:
        """Freeze the base weights and add trainable LoRA layers plus an Adam optimizer."""
        if self.lora is not None:
            raise EdgeclError("a LoRA adapter is already attached to this model")
        mx.random.seed(seed)  # lora_a's random init
        self.model.freeze()
        n_layers = len(self.model.layers)
        num_layers = n_layers if config.num_layers < 0 else min(config.num_layers, n_layers)
        linear_to_lora_layers(
            self.model,
            num_layers,
            {"rank": config.rank, "scale": config.scale, "dropout": 0.0, "keys": config.keys},
        )
        self.lora = config
        self.set_optimizer(learning_rate)

    @contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """The base model while inside: every LoRA layer's scale is 0 (then restored)."""
        layers = [m for _, m in self.model.named_modules() if hasattr(m, "lora_a")]
        scales = [m.scale for m in layers]
        for m in layers:
            m.scale = 0.0
        try:
            yield
        finally:
            for m, scale in zip(layers, scales):
                m.scale = scale

    @contextmanager
    def adapter_weights(self, weights: dict[str, mx.array]) -> Iterator[None]:
        """The adapter `weights` (name -> array, as trainable() gives) while inside."""
        current = self.trainable()
        self.model.load_weights(list(weights.items()), strict=False)
        try:
            yield
        finally:
            self.model.load_weights(list(current.items()), strict=False)

    def set_optimizer(self, learning_rate: float) -> None:
        """A fresh Adam (the warm-up and DA-GRPO phases each start their own)."""
        self.optimizer = optim.Adam(learning_rate=learning_rate)

    def trainable(self) -> dict[str, mx.array]:
        return dict(tree_flatten(self.model.trainable_parameters()))

    def policy_gradient_step(
        self,
        prompts: Sequence[Sequence[int]],
        completions: Sequence[Sequence[int]],
        weights: Sequence[float],
        normalizer: float,
        micro_batch: int = 8,
        world=None,
        anchor=None,
        behaviour=None,
    ) -> float:
        """One optimizer step on loss = -sum_i w_i * log pi(y_i | x_i) / normalizer.

        log pi(y_i | x_i) sums the log-probs of the completion's ids (never re-tokenised text).
        `anchor` = (adapter weights, per-row KL weights k_i) adds sum_i k_i KL_i / normalizer
        (mlx_loss.anchored_pg_loss); `anchor_kl` is then the mean per-token KL before the step.
        `behaviour`: per completion, the log-probs of its tokens under the sampler that drew it
        when that was not this model (llama.cpp rollouts), else None; those rows' tokens are
        importance-weighted (mlx_loss.importance_weighted). Micro-batches accumulate gradients
        so memory stays bounded on small machines. With a data-parallel `world` the gradients
        are summed over its ranks before the step.
        """
        if self.optimizer is None:
            raise EdgeclError("attach a LoRA adapter before training (attach_lora)")
        loss, grads = self.policy_gradient(
            prompts, completions, weights, normalizer, micro_batch, anchor, behaviour
        )
        if world is not None:
            grads = world.sum_tree(grads)
        self.optimizer.update(self.model, grads)
        mx.eval(self.model.trainable_parameters(), self.optimizer.state)
        return loss

    def policy_gradient(
        self, prompts, completions, weights, normalizer, micro_batch=8, anchor=None, behaviour=None
    ):
        """(loss, gradient tree) of the policy-gradient loss, without stepping."""
        hold_freed_memory()  # updates allocate the same sizes over and over
        self.model.train()
        plain = nn.value_and_grad(self.model, pg_loss)
        anchored = nn.value_and_grad(self.model, anchored_pg_loss)
        total, kl, grads = 0.0, 0.0, None
        for start in range(0, len(completions), micro_batch):
            end = start + micro_batch
            batch = pack(prompts[start:end], completions[start:end])
            w = mx.array(np.asarray(weights[start:end], dtype=np.float32))
            b = None if behaviour is None else _padded(behaviour[start:end], batch[3].shape[1])
            # Rows without KL weight (the self-distillation rows) skip the anchor's forward pass.
            if anchor is not None and any(anchor[1][start:end]):
                with self.adapter_weights(anchor[0]):
                    ref = mx.stop_gradient(position_logprobs(self.model, *batch[:3]))
                    mx.eval(ref)
                k = mx.array(np.asarray(anchor[1][start:end], dtype=np.float32))
                (loss, part), g = anchored(self.model, *batch, w, float(normalizer), ref, k, b)
                kl += part.item()
            else:
                loss, g = plain(self.model, *batch, w, float(normalizer), behaviour=b)
            grads = g if grads is None else tree_map(mx.add, grads, g)
            mx.eval(loss, grads)
            total += loss.item()
        if anchor is not None:
            n = sum(len(c) for c, k in zip(completions, anchor[1]) if k > 0)
            self.anchor_kl = kl / max(n, 1)
        self.model.eval()
        return total, grads

    def broadcast_state(self, world) -> None:
        """Give every rank of `world` rank 0's adapter weights and optimizer state."""
        if world.size == 1:
            return
        self.optimizer.init(self.model.trainable_parameters())  # the shapes, where still lazy
        weights = world.broadcast_arrays(self.trainable())
        self.model.load_weights(list(weights.items()), strict=False)
        state = world.broadcast_arrays(dict(tree_flatten(self.optimizer.state)))
        self.optimizer.state = tree_unflatten(list(state.items()))
        mx.eval(self.model.parameters(), self.optimizer.state)

    # -------------------------------------------------------- checkpoints
    def save_adapter(
        self, directory: str | Path, extra: dict | None = None, with_optimizer: bool = True
    ) -> Path:
        """Write adapter weights, config and (`with_optimizer`) optimizer state; atomic (a crash
        keeps the old one)."""
        if self.lora is None:
            raise EdgeclError("no LoRA adapter attached: nothing to save")
        config = {
            "fine_tune_type": "lora",
            "num_layers": self.lora.num_layers,
            "lora_parameters": {
                "rank": self.lora.rank,
                "scale": self.lora.scale,
                "alpha": self.lora.alpha,
                "dropout": 0.0,
                "keys": list(self.lora.keys),
            },
            "base_model": self.name,
            "base_fingerprint": self.fingerprint,
            "num_hidden_layers": self.config["num_hidden_layers"],
            # q/k heads, so the GGUF export can permute rows without the base model at hand
            "num_attention_heads": self.config["num_attention_heads"],
            "num_key_value_heads": self.config.get(
                "num_key_value_heads", self.config["num_attention_heads"]
            ),
            **(extra or {}),
        }
        optimizer = self.optimizer if with_optimizer else None
        state = dict(tree_flatten(optimizer.state)) if optimizer is not None else None
        return write_adapter(Path(directory), self.trainable(), state, config)

    def adapter_file_weights(self, directory: str | Path) -> dict[str, mx.array]:
        """The adapter weights saved in `directory`, as trainable() names them."""
        return mx.load(str(Path(directory) / ADAPTER_WEIGHTS))

    def load_adapter(self, directory: str | Path, learning_rate: float = 1e-4) -> dict:
        """Attach the adapter saved in `directory` (and its optimizer state); returns its config."""
        directory = Path(directory).expanduser()
        config = read_adapter_config(directory)
        if config.get("base_fingerprint") != self.fingerprint:
            raise EdgeclError(
                f"adapter {directory} was trained for model {config.get('base_model')!r}, "
                f"not {self.name!r}: use it with that model or train a new one"
            )
        params = config["lora_parameters"]
        lora = LoraConfig(
            rank=params["rank"],
            alpha=params.get("alpha", params["scale"] * params["rank"]),
            num_layers=config["num_layers"],
            keys=tuple(params["keys"]),
        )
        if self.lora is None:
            self.attach_lora(lora, learning_rate)
        weights = mx.load(str(directory / ADAPTER_WEIGHTS))
        try:
            self.model.load_weights(list(weights.items()), strict=False)
        except ValueError as e:
            raise EdgeclError(f"adapter {directory} does not fit this model: {e}") from e
        if (directory / OPTIMIZER_STATE).is_file():
            state = mx.load(str(directory / OPTIMIZER_STATE))
            self.optimizer.state = tree_unflatten(list(state.items()))
        mx.eval(self.model.parameters())
        return config


def _to_float32(p: mx.array) -> mx.array:
    return p.astype(mx.float32) if mx.issubdtype(p.dtype, mx.floating) else p


def _padded(rows, width: int) -> mx.array:
    """Per-token values of each row (None: a row without any) as a (rows, width) array, NaN
    where a row has no value."""
    out = np.full((len(rows), width), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        if row is not None:
            out[i, : len(row)] = row
    return mx.array(out)
