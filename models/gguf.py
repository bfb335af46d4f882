"""GGUF <-> MLX model directories for llama-architecture models, with no model hub.

    python -c "from edgecl.models.gguf import gguf_to_mlx; gguf_to_mlx('m.gguf', 'out/')"

GGUF -> MLX: `mx.load` reads the tensors (Q4_1/Q8_0 arrive as MLX-quantized triplets, which
we dequantize to float32, the only dtype that goes through BLAS on CPU), the metadata gives the
llama config, and the tokenizer is rebuilt from the GGUF vocabulary and merges. llama.cpp's
converter permutes the q/k rows for its RoPE layout; `mx.load` does not undo that, so we do.

MLX -> GGUF (float32): the reverse, for tiny test models and for running an MLX-only model on
llama.cpp. Tokenizer metadata is copied from a reference GGUF or built from tokenizer.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgecl.errors import EdgeclError

# GGUF tensor names (per block: "blk.N.<name>") and their Hugging Face / mlx-lm names.
BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
TOP_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK_GGUF = {v: k for k, v in BLOCK_NAMES.items()}
_TOP_GGUF = {v: k for k, v in TOP_NAMES.items()}
SUPPORTED_ARCHITECTURES = ("llama",)
SUPPORTED_TOKENIZERS = ("gpt2",)  # byte-level BPE: SmolLM2, Llama 3 and most recent models
CONTROL_TOKEN = 3  # llama.cpp token type of special tokens such as <|im_end|>

# llama.cpp pre-tokenizer names -> the split regex its merges were learned with.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_SPLITS = {"llama3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT, "smaug-bpe": _LLAMA3_SPLIT}


def hf_name(gguf_name: str) -> str:
    """'blk.3.attn_q.weight' -> 'model.layers.3.self_attn.q_proj.weight'."""
    parts = gguf_name.split(".")
    if parts[0] == "blk":
        return f"model.layers.{parts[1]}.{BLOCK_NAMES[parts[2]]}.{parts[3]}"
    return f"{TOP_NAMES[parts[0]]}.{parts[1]}"


def gguf_name(hf: str) -> str:
    """The inverse of `hf_name`."""
    parts = hf.split(".")
    if parts[0] == "model" and parts[1] == "layers":
        return f"blk.{parts[2]}.{_BLOCK_GGUF['.'.join(parts[3:-1])]}.{parts[-1]}"
    return f"{_TOP_GGUF[hf.rsplit('.', 1)[0]]}.{parts[-1]}"


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF q/k rows -> llama.cpp's interleaved RoPE layout (what its converter does)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp q/k rows -> HF layout; the inverse of `permute_rows`."""
    return (
        w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _plain(value):
    """MLX metadata values -> Python scalars / lists."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    return value


def read_gguf(path: str | Path) -> tuple[dict, dict]:
    """(tensors as MLX arrays, metadata) of a GGUF file, with a clear error for non-GGUF input."""
    import mlx.core as mx

    path = Path(path)
    if not path.is_file():
        raise EdgeclError(f"no such model file: {path} (give the path of a .gguf file)")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise EdgeclError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
    try:
        tensors, meta = mx.load(str(path), return_metadata=True)
    except Exception as e:  # MLX cannot read some quantisations (e.g. Q4_K)
        raise EdgeclError(
            f"cannot read {path}: {e} (MLX reads F32/F16/Q4_0/Q4_1/Q8_0 GGUFs)"
        ) from e
    meta = {k: _plain(v) for k, v in meta.items()}
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise EdgeclError(
            f"{path.name}: architecture {arch!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    if meta.get("general.type", "model") != "model":
        raise EdgeclError(f"{path.name} is a GGUF {meta['general.type']}, not a model")
    return tensors, meta


def llama_config(meta: dict) -> dict:
    """mlx-lm / Hugging Face config.json for a llama GGUF's metadata."""
    hidden = int(meta["llama.embedding_length"])
    heads = int(meta["llama.attention.head_count"])
    vocab = meta.get("llama.vocab_size") or len(meta["tokenizer.ggml.tokens"])
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "intermediate_size": int(meta["llama.feed_forward_length"]),
        "num_hidden_layers": int(meta["llama.block_count"]),
        "num_attention_heads": heads,
        "num_key_value_heads": int(meta.get("llama.attention.head_count_kv", heads)),
        "head_dim": int(meta.get("llama.rope.dimension_count", hidden // heads)),
        "rms_norm_eps": float(meta["llama.attention.layer_norm_rms_epsilon"]),
        "rope_theta": float(meta.get("llama.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(meta.get("llama.context_length", 2048)),
        "vocab_size": int(vocab),
        "tie_word_embeddings": True,  # set to False below when the file has output.weight
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": meta.get("tokenizer.ggml.eos_token_id"),
        "torch_dtype": "float32",
    }


def _dequantize(tensors: dict, name: str, in_dim: int | None):
    """A float32 numpy array for tensor `name` (plain or MLX-quantized weight/scales/biases).

    4- and 8-bit groups are unpacked in numpy, one rounding per operation, so the weights (and
    the model fingerprint that adapters and stored warm-ups are keyed on) come out bit for bit
    the same on every machine; `mx.dequantize` on a GPU rounds differently (seen: a CUDA box
    gave another fingerprint for the same GGUF, so the warm-up made here was not reused there).
    """
    import mlx.core as mx

    w = tensors[f"{name}.weight"] if f"{name}.weight" in tensors else tensors[name]
    scales = tensors.get(f"{name}.scales")
    if scales is None:
        return np.array(w.astype(mx.float32))
    group = in_dim // scales.shape[-1]
    bits = w.shape[-1] * 32 // in_dim
    biases = tensors[f"{name}.biases"]
    if bits not in (4, 8):
        out = mx.dequantize(w, scales, biases, group_size=group, bits=bits, stream=mx.cpu)
        return np.array(out.astype(mx.float32))
    packed = np.array(w).view(np.uint8)  # little-endian: the low bits of a word come first
    if bits == 4:
        packed = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(*packed.shape[:-1], -1)
    q = packed.astype(np.float32).reshape(*scales.shape, group)
    scale = np.array(scales.astype(mx.float32))[..., None]
    bias = np.array(biases.astype(mx.float32))[..., None]
    return (q * scale + bias).reshape(*scales.shape[:-1], in_dim)


def build_tokenizer(meta: dict):
    """A `tokenizers.Tokenizer` equal to llama.cpp's for a byte-level BPE GGUF vocabulary."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    kind = meta.get("tokenizer.ggml.model")
    if kind not in SUPPORTED_TOKENIZERS:
        raise EdgeclError(
            f"tokenizer type {kind!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_TOKENIZERS)})"
        )
    tokens = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    pre = meta.get("tokenizer.ggml.pre", "default")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":  # GPT-2 regex after splitting every digit on its own
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    elif pre in _PRE_SPLITS:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_PRE_SPLITS[pre]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    types = meta.get("tokenizer.ggml.token_type", [])
    specials = [t for t, kind in zip(tokens, types) if kind == CONTROL_TOKEN]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok


def tokenizer_config(meta: dict) -> dict:
    tokens = meta["tokenizer.ggml.tokens"]

    def token(key: str):
        index = meta.get(f"tokenizer.ggml.{key}")
        return tokens[int(index)] if index is not None else None

    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("bos_token_id"),
        "eos_token": token("eos_token_id"),
        "unk_token": token("unknown_token_id"),
        "pad_token": token("padding_token_id"),
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "chat_template": meta.get("tokenizer.chat_template"),
        "model_max_length": int(meta.get("llama.context_length", 2048)),
    }


def gguf_to_mlx(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write an mlx-lm model directory (float32 safetensors, config, tokenizer) for a GGUF."""
    import mlx.core as mx

    tensors, meta = read_gguf(gguf_path)
    build = build_tokenizer(meta)  # fail on an unsupported tokenizer before writing anything
    config = llama_config(meta)
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    hidden, ffn = config["hidden_size"], config["intermediate_size"]
    names = sorted({k.rsplit(".", 1)[0] for k in tensors})
    weights = {}
    for name in names:
        kind = name.split(".")[2] if name.startswith("blk.") else name
        in_dim = ffn if kind == "ffn_down" else hidden
        w = _dequantize(tensors, name, in_dim)
        if kind == "attn_q":
            w = unpermute_rows(w, n_head)
        elif kind == "attn_k":
            w = unpermute_rows(w, n_kv)
        weights[hf_name(f"{name}.weight")] = mx.array(w)
    config["tie_word_embeddings"] = "lm_head.weight" not in weights
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    build.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(meta), indent=2))
    return out


def tokenizer_metadata(gguf_path: str | Path) -> dict:
    """The tokenizer.* metadata of a GGUF, as plain Python values (for copying it elsewhere)."""
    _, meta = read_gguf(gguf_path)
    return {k: v for k, v in meta.items() if k.startswith("tokenizer.")}


def mlx_to_gguf(model_dir: str | Path, out_path: str | Path, tokenizer_meta: dict) -> Path:
    """Write a float32 llama GGUF for an MLX/HF llama directory (weights in safetensors).

    `tokenizer_meta` are the `tokenizer.*` fields (see `tokenizer_metadata`).
    """
    import gguf
    import mlx.core as mx

    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") not in SUPPORTED_ARCHITECTURES:
        raise EdgeclError(
            f"{model_dir}: model_type {config.get('model_type')!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    weights = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        weights.update(mx.load(str(file)))
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    writer = gguf.GGUFWriter(str(out_path), "llama")
    writer.add_name(model_dir.name)
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(config.get("head_dim", config["hidden_size"] // n_head))
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _add_tokenizer(writer, tokenizer_meta)
    for name in sorted(weights):
        if name == "lm_head.weight" and config.get("tie_word_embeddings", False):
            continue
        w = np.array(weights[name].astype(mx.float32))
        target = gguf_name(name)
        if ".attn_q." in target:
            w = permute_rows(w, n_head)
        elif ".attn_k." in target:
            w = permute_rows(w, n_kv)
        writer.add_tensor(target, np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out_path)


def _add_tokenizer(writer, meta: dict) -> None:
    writer.add_tokenizer_model(meta["tokenizer.ggml.model"])
    if "tokenizer.ggml.pre" in meta:
        writer.add_tokenizer_pre(meta["tokenizer.ggml.pre"])
    writer.add_token_list(list(meta["tokenizer.ggml.tokens"]))
    writer.add_token_types(list(meta["tokenizer.ggml.token_type"]))
    writer.add_token_merges(list(meta["tokenizer.ggml.merges"]))
    for key, add in (
        ("bos_token_id", writer.add_bos_token_id),
        ("eos_token_id", writer.add_eos_token_id),
        ("unknown_token_id", writer.add_unk_token_id),
        ("padding_token_id", writer.add_pad_token_id),
    ):
        if meta.get(f"tokenizer.ggml.{key}") is not None:
            add(int(meta[f"tokenizer.ggml.{key}"]))
    if "tokenizer.ggml.add_bos_token" in meta:
        writer.add_add_bos_token(bool(meta["tokenizer.ggml.add_bos_token"]))
    if meta.get("tokenizer.chat_template"):
        writer.add_chat_template(meta["tokenizer.chat_template"])


def tokenizer_metadata_from_dir(model_dir: str | Path) -> dict:
    """GGUF tokenizer.* fields for a byte-level BPE `tokenizer.json` (the inverse of
    `build_tokenizer`), so an MLX-only model can run on llama.cpp."""
    model_dir = Path(model_dir)
    spec = json.loads((model_dir / "tokenizer.json").read_text())
    model = spec.get("model", {})
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")):
        raise EdgeclError(f"{model_dir}: only byte-level BPE tokenizers can be written to GGUF")
    vocab = dict(model["vocab"])
    special = {t["content"] for t in spec.get("added_tokens", []) if t.get("special")}
    for t in spec.get("added_tokens", []):
        vocab.setdefault(t["content"], t["id"])
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    digits = '"individual_digits": true' in json.dumps(spec.get("pre_tokenizer"))
    meta = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "smollm" if digits else "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [CONTROL_TOKEN if t in special else 1 for t in tokens],
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.add_bos_token": bool(config.get("add_bos_token", False)),
    }
    for key, field in (
        ("bos_token", "bos_token_id"),
        ("eos_token", "eos_token_id"),
        ("unk_token", "unknown_token_id"),
        ("pad_token", "padding_token_id"),
    ):
        token = config.get(key)
        token = token.get("content") if isinstance(token, dict) else token
        if token in vocab:
            meta[f"tokenizer.ggml.{field}"] = vocab[token]
    if config.get("chat_template"):
        meta["tokenizer.chat_template"] = config["chat_template"]
    return meta
