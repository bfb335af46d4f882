"""mlx-lm LoRA adapter directory -> GGUF LoRA file that llama.cpp applies at load time.

    python -c "from edgecl.models.export import export_gguf_lora as e; e('adapters/run1')"

Conventions (those of llama.cpp's convert_lora_to_gguf.py and its loader, llama-adapter.cpp):
metadata general.architecture=llama, general.type=adapter, adapter.type=lora and
adapter.lora.alpha (float32); llama.cpp scales the update by alpha / rank, so alpha = scale * rank
for mlx-lm's `y = x W^T + scale * (x @ lora_a) @ lora_b`. Tensors `blk.N.attn_q.weight.lora_a`
have numpy shape (rank, in) and `.lora_b` (out, rank), i.e. mlx-lm's matrices transposed. The
q/k rows of lora_b get the same RoPE row permutation as the base q/k weights (`permute_rows`).
llama-cpp-python does not report an adapter that llama.cpp rejects (see edgecl.backends.llamacpp),
so what llama.cpp would reject is checked here first, with a message that says what to do.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from edgecl.errors import EdgeclError
from edgecl.models.gguf import gguf_name, permute_rows

ADAPTER_FILE = "adapters.safetensors"
CONFIG_FILE = "adapter_config.json"

# module -> (in-features, out-features) in terms of the model's sizes.
_DIMS = {
    "self_attn.q_proj": ("hidden", "q_dim"),
    "self_attn.k_proj": ("hidden", "kv_dim"),
    "self_attn.v_proj": ("hidden", "kv_dim"),
    "self_attn.o_proj": ("q_dim", "hidden"),
    "mlp.gate_proj": ("hidden", "ffn"),
    "mlp.up_proj": ("hidden", "ffn"),
    "mlp.down_proj": ("ffn", "hidden"),
}
_NAME = re.compile(r"model\.layers\.(\d+)\.([a-z_]+\.[a-z_]+)\.lora_([ab])")


def export_gguf_lora(
    adapter_dir: str | Path, out_path: str | Path | None = None, base_gguf: str | Path | None = None
) -> Path:
    """Write the GGUF LoRA for an mlx-lm adapter dir (default `<adapter_dir>/adapter.gguf`).

    With `base_gguf`, also check that the adapter fits that model (layers, tensor shapes).
    """
    adapter_dir = Path(adapter_dir)
    config, pairs = load_adapter(adapter_dir)
    params = config["lora_parameters"]
    rank, scale = int(params["rank"]), float(params["scale"])
    base = gguf_model_info(base_gguf) if base_gguf is not None else None
    if base is not None:
        _check_fits(adapter_dir, config, pairs, base)
    heads = _head_counts(adapter_dir, config, pairs, base)

    import gguf

    out = Path(out_path) if out_path is not None else adapter_dir / "adapter.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, scale * rank)
    if config.get("base_model"):
        writer.add_name(f"{config['base_model']} LoRA")
    for (layer, module), (a, b) in sorted(pairs.items()):
        target = gguf_name(f"model.layers.{layer}.{module}.weight")
        b_t = b.T
        if module == "self_attn.q_proj":
            b_t = permute_rows(b_t, heads["q"])
        elif module == "self_attn.k_proj":
            b_t = permute_rows(b_t, heads["k"])
        writer.add_tensor(f"{target}.lora_a", np.ascontiguousarray(a.T, dtype=np.float32))
        writer.add_tensor(f"{target}.lora_b", np.ascontiguousarray(b_t, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)  # readers (the daemon) never see a half-written file
    return out


def load_adapter(adapter_dir: str | Path) -> tuple[dict, dict[tuple[int, str], tuple]]:
    """(adapter_config, {(layer, module): (lora_a (in, r), lora_b (r, out))}) after checks.

    Raises EdgeclError for missing files, unknown tensor names, unpaired or inconsistent shapes.
    """
    adapter_dir = Path(adapter_dir)
    weights_file, config_file = adapter_dir / ADAPTER_FILE, adapter_dir / CONFIG_FILE
    for path in (weights_file, config_file):
        if not path.is_file():
            raise EdgeclError(
                f"{path} not found: {adapter_dir} is not an adapter directory "
                f"(it needs {ADAPTER_FILE} and {CONFIG_FILE})"
            )
    try:
        config = json.loads(config_file.read_text())
        params = config["lora_parameters"]
        int(params["rank"]), float(params["scale"])
    except (ValueError, KeyError, TypeError) as e:
        raise EdgeclError(
            f"{config_file} is not a valid mlx-lm LoRA config ({e!r}); retrain or fix the file"
        ) from e
    if config.get("fine_tune_type", "lora") != "lora":
        raise EdgeclError(
            f"{adapter_dir} is a {config['fine_tune_type']!r} adapter; only LoRA exports to GGUF"
        )
    rank = int(params["rank"])

    from edgecl.backends.blas import preload_openblas

    preload_openblas()  # before the first `import mlx`, so later training keeps the fast BLAS
    import mlx.core as mx

    try:
        tensors = mx.load(str(weights_file))
    except Exception as e:
        raise EdgeclError(f"cannot read {weights_file}: {e} (is it a safetensors file?)") from e
    halves: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for name, value in tensors.items():
        match = _NAME.fullmatch(name)
        if match is None or match.group(2) not in _DIMS:
            raise EdgeclError(
                f"{weights_file}: unexpected tensor {name!r} (expected LoRA weights "
                f"'model.layers.N.<{'|'.join(_DIMS)}>.lora_a/lora_b')"
            )
        key = (int(match.group(1)), match.group(2))
        halves.setdefault(key, {})[match.group(3)] = np.array(value.astype(mx.float32))
    if not halves:
        raise EdgeclError(f"{weights_file} holds no LoRA tensors; retrain the adapter")

    pairs, sizes = {}, {}
    for (layer, module), half in sorted(halves.items()):
        where = f"{adapter_dir}: model.layers.{layer}.{module}"
        if set(half) != {"a", "b"}:
            raise EdgeclError(f"{where} has lora_{''.join(half)} without its partner; retrain")
        a, b = half["a"], half["b"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != rank or b.shape[0] != rank:
            raise EdgeclError(
                f"{where}: lora_a {a.shape} / lora_b {b.shape} do not have rank {rank} "
                f"of {CONFIG_FILE} (expected (in, {rank}) and ({rank}, out))"
            )
        for dim, size in zip(_DIMS[module], (a.shape[0], b.shape[1]), strict=True):
            if sizes.setdefault(dim, size) != size:
                raise EdgeclError(
                    f"{where} implies {dim}={size} but other tensors say {sizes[dim]}: "
                    "the adapter mixes models; retrain it"
                )
        pairs[(layer, module)] = (a, b)
    return config, pairs


def gguf_model_info(path: str | Path) -> dict:
    """Name, layer count, head counts and tensor shapes (rows, cols) of a llama GGUF model."""
    path = Path(path)
    meta, shapes = read_gguf_header(path)
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise EdgeclError(f"{path.name}: architecture {arch!r} is not supported (only llama)")
    kind = meta.get("general.type", "model")
    if kind != "model":
        raise EdgeclError(f"{path.name} is a GGUF {kind}, not a model")
    heads = int(meta["llama.attention.head_count"])
    return {
        "name": meta.get("general.name") or path.stem,
        "block_count": int(meta["llama.block_count"]),
        "n_head": heads,
        "n_head_kv": int(meta.get("llama.attention.head_count_kv", heads)),
        "shapes": shapes,
    }


def check_gguf_lora(adapter_gguf: str | Path, base_gguf: str | Path) -> float:
    """Check a GGUF LoRA file against a GGUF model the way llama.cpp will; return max |lora_b|.

    llama.cpp rejects a mismatched adapter with a log line only, so the reasons are spelled out
    here. The returned magnitude tells the caller whether the adapter can change the logits.
    """
    import gguf

    adapter_gguf = Path(adapter_gguf)
    meta, shapes = read_gguf_header(adapter_gguf)
    if meta.get("general.type") != "adapter" or meta.get("adapter.type") != "lora":
        raise EdgeclError(
            f"{adapter_gguf} is not a GGUF LoRA adapter (general.type="
            f"{meta.get('general.type')!r}); export one with export_gguf_lora"
        )
    base = gguf_model_info(base_gguf)
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise EdgeclError(
            f"adapter {adapter_gguf} is for a {arch!r} model, not llama ({base['name']})"
        )
    halves: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, shape in shapes.items():
        stem, _, half = name.rpartition(".")
        if half not in ("lora_a", "lora_b"):
            raise EdgeclError(f"{adapter_gguf}: unexpected tensor {name!r}; re-export the adapter")
        halves.setdefault(stem, {})[half] = shape
    for stem, half in sorted(halves.items()):
        want = base["shapes"].get(stem)
        a, b = half.get("lora_a"), half.get("lora_b")
        if a is None or b is None:
            problem = f"{stem} lacks lora_a or lora_b"
        elif want is None:
            problem = f"the model has no tensor {stem}"
        elif (b[0], a[1]) != want or a[0] != b[1]:
            problem = f"{stem} is {want[0]}x{want[1]} in the model, {b[0]}x{a[1]} here"
        else:
            continue
        raise EdgeclError(
            f"adapter {adapter_gguf} was made for another model, not {base['name']} ({problem}); "
            "use the model it was trained on or re-export it"
        )
    reader = gguf.GGUFReader(str(adapter_gguf))
    return max(
        (float(np.abs(t.data).max()) for t in reader.tensors if t.name.endswith(".lora_b")),
        default=0.0,
    )


# GGUF value types -> struct formats (8: string, 9: array are handled apart).
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}


def read_gguf_header(path: str | Path) -> tuple[dict, dict[str, tuple[int, ...]]]:
    """(scalar metadata, {tensor name: numpy-order shape}) of a GGUF file, reading no tensors.

    Our own few lines because gguf.GGUFReader parses every vocabulary entry into objects (about
    10 s for a 49k-token vocabulary on a busy 2-core box); arrays are skipped here.
    """
    import mmap
    import struct

    path = Path(path)
    if not path.is_file():
        raise EdgeclError(f"no such file: {path} (give the path of a .gguf file)")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise EdgeclError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    pos = 8

    def take(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("Q")
        pos += n
        return bytes(buf[pos - n : pos]).decode("utf-8", errors="replace")

    def value(kind: int):
        nonlocal pos
        if kind in _SCALARS:
            return take(_SCALARS[kind])
        if kind == 8:
            return string()
        if kind != 9:
            raise ValueError(f"unknown GGUF value type {kind}")
        item, count = take("I"), take("Q")
        if item in _SCALARS:
            pos += count * struct.calcsize(_SCALARS[item])
        else:
            for _ in range(count):
                value(item)
        return None  # arrays are not needed here

    try:
        n_tensors, n_kv = take("Q"), take("Q")
        meta = {}
        for _ in range(n_kv):
            key = string()
            meta[key] = value(take("I"))
        shapes = {}
        for _ in range(n_tensors):
            name = string()
            dims = [take("Q") for _ in range(take("I"))]
            pos += 12  # ggml type (u32) and data offset (u64)
            shapes[name] = tuple(reversed(dims))  # ggml's ne order is (cols, rows)
    except (struct.error, ValueError) as e:
        raise EdgeclError(
            f"{path} is not a valid GGUF file ({e}); re-download or re-export it"
        ) from e
    finally:
        buf.close()
    return meta, shapes


def _check_fits(adapter_dir: Path, config: dict, pairs: dict, base: dict) -> None:
    """EdgeclError unless every LoRA pair matches a tensor of the base model in shape."""
    trained_for = f"model {config['base_model']}" if config.get("base_model") else "another model"
    for (layer, module), (a, b) in sorted(pairs.items()):
        target = gguf_name(f"model.layers.{layer}.{module}.weight")
        want = base["shapes"].get(target)
        got = (b.shape[1], a.shape[0])
        if want != got:
            detail = (
                f"layer {layer} but the model has {base['block_count']} layers"
                if want is None
                else f"{target} is {want[0]}x{want[1]} in the model, {got[0]}x{got[1]} here"
            )
            raise EdgeclError(
                f"adapter {adapter_dir} was trained for {trained_for}, not {base['name']} "
                f"({detail}); use the matching base model or retrain the adapter"
            )


def _head_counts(adapter_dir: Path, config: dict, pairs: dict, base: dict | None) -> dict:
    """Head counts for the q/k row permutation, from the base GGUF or the adapter's base model."""
    modules = {module for _, module in pairs}
    if not modules & {"self_attn.q_proj", "self_attn.k_proj"}:
        return {"q": 0, "k": 0}  # no q/k LoRA: nothing to permute
    if base is None:
        base = _base_from_config(config)
    if base is None:
        raise EdgeclError(
            f"cannot tell the attention head counts of the model {adapter_dir} was trained for "
            f"(base_model={config.get('base_model')!r} is not a local path): pass base_gguf"
        )
    q_dim = next((b.shape[1] for (_, m), (_, b) in pairs.items() if m == "self_attn.q_proj"), 0)
    k_dim = next((b.shape[1] for (_, m), (_, b) in pairs.items() if m == "self_attn.k_proj"), 0)
    n_head, n_kv = base["n_head"], base["n_head_kv"]
    if q_dim % (2 * n_head) or k_dim % (2 * n_kv):
        raise EdgeclError(
            f"adapter {adapter_dir} does not fit {base['name']}: q/k widths {q_dim}/{k_dim} "
            f"do not split into {n_head}/{n_kv} heads; use the matching base model"
        )
    return {"q": n_head, "k": n_kv}


def _base_from_config(config: dict) -> dict | None:
    """Head counts recorded in adapter_config, or read from its base_model/model local path."""
    if "num_attention_heads" in config:
        heads = int(config["num_attention_heads"])
        return {
            "name": config.get("base_model") or "the base model",
            "n_head": heads,
            "n_head_kv": int(config.get("num_key_value_heads") or heads),
        }
    for key in ("base_model", "model"):
        value = config.get(key)
        if not isinstance(value, str) or not value:
            continue
        path = Path(value).expanduser()
        if path.is_file():
            return gguf_model_info(path)
        if (path / "config.json").is_file():
            cfg = json.loads((path / "config.json").read_text())
            heads = int(cfg["num_attention_heads"])
            return {
                "name": path.name,
                "n_head": heads,
                "n_head_kv": int(cfg.get("num_key_value_heads") or heads),
            }
    return None


def adapter_gguf_for(adapter_dir: str | Path, base_gguf: str | Path) -> Path:
    """The adapter's GGUF LoRA for llama.cpp, (re)exported when missing or older than the
    adapter weights (training rewrites them every step)."""
    adapter_dir = Path(adapter_dir)
    out = adapter_dir / "adapter.gguf"
    weights = adapter_dir / ADAPTER_FILE
    if not out.is_file() or (weights.is_file() and weights.stat().st_mtime > out.stat().st_mtime):
        export_gguf_lora(adapter_dir, out, base_gguf=base_gguf)
    return out
