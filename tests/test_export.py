"""export_gguf_lora: llama.cpp's GGUF LoRA conventions, and clear errors for unusable adapters.

.venv/bin/python -m pytest tests/test_export.py -q
"""

from __future__ import annotations

import json

import edgecl.backends.blas

edgecl.backends.blas.preload_openblas()

import gguf  # noqa: E402
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from edgecl.errors import EdgeclError  # noqa: E402
from edgecl.models.export import (  # noqa: E402
    check_gguf_lora,
    export_gguf_lora,
    gguf_model_info,
    read_gguf_header,
)
from edgecl.models.gguf import permute_rows  # noqa: E402
from tiny_model import TINY_CONFIG, make_tiny_adapter, make_tiny_gguf, make_tiny_mlx  # noqa: E402

OTHER_CONFIG = dict(TINY_CONFIG, hidden_size=32, intermediate_size=96)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    mlx_dir = make_tiny_mlx(root / "mlx")
    return mlx_dir, make_tiny_gguf(mlx_dir, root / "tiny.gguf")


def gguf_tensors(path) -> dict[str, np.ndarray]:
    reader = gguf.GGUFReader(str(path))
    return {
        t.name: np.array(t.data).reshape(tuple(reversed(t.shape.tolist()))) for t in reader.tensors
    }


def test_export_follows_llama_cpp_lora_conventions(tiny, tmp_path):
    _, model = tiny
    adapter = make_tiny_adapter(tmp_path / "ad", rank=4, scale=2.0)
    out = export_gguf_lora(adapter, base_gguf=model)
    assert out == adapter / "adapter.gguf"
    meta, shapes = read_gguf_header(out)
    assert meta["general.architecture"] == "llama"
    assert meta["general.type"] == "adapter"
    assert meta["adapter.type"] == "lora"
    assert meta["adapter.lora.alpha"] == pytest.approx(8.0)  # scale * rank
    assert len(shapes) == 2 * 7 * TINY_CONFIG["num_hidden_layers"]
    assert shapes["blk.1.attn_q.weight.lora_a"] == (4, 64)  # (rank, in)
    assert shapes["blk.1.attn_q.weight.lora_b"] == (64, 4)  # (out, rank)
    assert shapes["blk.0.attn_k.weight.lora_b"] == (32, 4)
    assert shapes["blk.0.ffn_down.weight.lora_a"] == (4, 128)

    src = mx.load(str(adapter / "adapters.safetensors"))
    got = gguf_tensors(out)
    layer = "model.layers.1."
    a_q, b_q = (np.array(src[layer + f"self_attn.q_proj.lora_{h}"]) for h in "ab")
    b_k = np.array(src[layer + "self_attn.k_proj.lora_b"])
    b_v = np.array(src[layer + "self_attn.v_proj.lora_b"])
    np.testing.assert_array_equal(got["blk.1.attn_q.weight.lora_a"], a_q.T)
    np.testing.assert_array_equal(got["blk.1.attn_q.weight.lora_b"], permute_rows(b_q.T, 4))
    np.testing.assert_array_equal(got["blk.1.attn_k.weight.lora_b"], permute_rows(b_k.T, 2))
    np.testing.assert_array_equal(got["blk.1.attn_v.weight.lora_b"], b_v.T)  # v: not permuted
    assert not np.array_equal(permute_rows(b_q.T, 4), b_q.T)  # the permutation is not a no-op
    max_b = max(float(np.abs(np.array(v)).max()) for k, v in src.items() if k.endswith("lora_b"))
    assert check_gguf_lora(out, model) == max_b


def test_export_reads_head_counts_from_local_base_model(tiny, tmp_path):
    mlx_dir, model = tiny
    adapter = make_tiny_adapter(tmp_path / "ad")
    config_file = adapter / "adapter_config.json"
    config = json.loads(config_file.read_text())
    with pytest.raises(EdgeclError, match="pass base_gguf"):
        export_gguf_lora(adapter)  # base_model "tiny-llama" is no local path
    config["base_model"] = str(mlx_dir)
    config_file.write_text(json.dumps(config))
    a = export_gguf_lora(adapter, tmp_path / "a.gguf")
    b = export_gguf_lora(adapter, tmp_path / "b.gguf", base_gguf=model)
    assert a.read_bytes() == b.read_bytes()
    config.update(base_model="tiny", num_attention_heads=4, num_key_value_heads=2)
    config_file.write_text(json.dumps(config))  # head counts recorded in the adapter itself
    c = export_gguf_lora(adapter, tmp_path / "c.gguf")
    assert gguf_tensors(c)["blk.0.attn_k.weight.lora_b"].tobytes() == (
        gguf_tensors(b)["blk.0.attn_k.weight.lora_b"].tobytes()
    )


def test_export_without_qk_needs_no_base(tmp_path):
    adapter = make_tiny_adapter(tmp_path / "ad", keys=("self_attn.v_proj", "mlp.up_proj"))
    out = export_gguf_lora(adapter, tmp_path / "x" / "lora.gguf")
    assert sorted(read_gguf_header(out)[1])[:2] == [
        "blk.0.attn_v.weight.lora_a",
        "blk.0.attn_v.weight.lora_b",
    ]


def test_export_rejects_adapter_for_another_model(tiny, tmp_path):
    _, model = tiny
    adapter = make_tiny_adapter(tmp_path / "ad", config=OTHER_CONFIG)
    with pytest.raises(
        EdgeclError,
        match=r"was trained for model tiny-llama, not mlx \(blk.0.ffn_down.weight is 64x128 "
        r"in the model, 32x96 here",
    ):
        export_gguf_lora(adapter, base_gguf=model)
    assert not (adapter / "adapter.gguf").exists()


def test_export_rejects_adapter_with_more_layers(tiny, tmp_path):
    _, model = tiny
    deeper = dict(TINY_CONFIG, num_hidden_layers=3)
    adapter = make_tiny_adapter(tmp_path / "ad", config=deeper, keys=("mlp.down_proj",))
    with pytest.raises(EdgeclError, match="layer 2 but the model has 2 layers"):
        export_gguf_lora(adapter, base_gguf=model)


def test_export_rejects_missing_files(tmp_path):
    with pytest.raises(EdgeclError, match="not an adapter directory"):
        export_gguf_lora(tmp_path)


def test_export_rejects_unknown_tensor(tmp_path):
    adapter = make_tiny_adapter(tmp_path / "ad", keys=("mlp.up_proj",))
    weights = mx.load(str(adapter / "adapters.safetensors"))
    weights["model.layers.0.mlp.up_proj.weight"] = mx.zeros((128, 64))
    mx.save_safetensors(str(adapter / "adapters.safetensors"), weights)
    with pytest.raises(EdgeclError, match="unexpected tensor 'model.layers.0.mlp.up_proj.weight'"):
        export_gguf_lora(adapter)


def test_export_rejects_rank_mismatch(tmp_path):
    adapter = make_tiny_adapter(tmp_path / "ad", rank=4, keys=("mlp.up_proj",))
    config_file = adapter / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["lora_parameters"]["rank"] = 8
    config_file.write_text(json.dumps(config))
    with pytest.raises(EdgeclError, match="do not have rank 8"):
        export_gguf_lora(adapter)


def test_export_rejects_inconsistent_dims(tmp_path):
    adapter = make_tiny_adapter(tmp_path / "ad", keys=("mlp.up_proj", "mlp.down_proj"))
    weights = mx.load(str(adapter / "adapters.safetensors"))
    weights["model.layers.1.mlp.down_proj.lora_a"] = mx.zeros((100, 4))
    mx.save_safetensors(str(adapter / "adapters.safetensors"), weights)
    with pytest.raises(EdgeclError, match="implies ffn=100 but other tensors say 128"):
        export_gguf_lora(adapter)


def test_export_rejects_unpaired_tensor(tmp_path):
    adapter = make_tiny_adapter(tmp_path / "ad", keys=("mlp.up_proj",))
    weights = mx.load(str(adapter / "adapters.safetensors"))
    del weights["model.layers.0.mlp.up_proj.lora_b"]
    mx.save_safetensors(str(adapter / "adapters.safetensors"), weights)
    with pytest.raises(EdgeclError, match="lora_a without its partner"):
        export_gguf_lora(adapter)


def test_model_info_rejects_non_gguf_and_adapters(tiny, tmp_path):
    _, model = tiny
    info = gguf_model_info(model)
    assert (info["block_count"], info["n_head"], info["n_head_kv"]) == (2, 4, 2)
    assert info["shapes"]["blk.0.attn_k.weight"] == (32, 64)
    (tmp_path / "junk.gguf").write_bytes(b"not a model at all")
    with pytest.raises(EdgeclError, match="is not a GGUF file"):
        gguf_model_info(tmp_path / "junk.gguf")
    with pytest.raises(EdgeclError, match="no such file"):
        gguf_model_info(tmp_path / "missing.gguf")
    (tmp_path / "cut.gguf").write_bytes(model.read_bytes()[:5000])
    with pytest.raises(EdgeclError, match="not a valid GGUF file"):
        gguf_model_info(tmp_path / "cut.gguf")
    adapter = export_gguf_lora(make_tiny_adapter(tmp_path / "ad"), base_gguf=model)
    with pytest.raises(EdgeclError, match="GGUF adapter, not a model"):
        gguf_model_info(adapter)
    with pytest.raises(EdgeclError, match="is not a GGUF LoRA adapter"):
        check_gguf_lora(model, model)
