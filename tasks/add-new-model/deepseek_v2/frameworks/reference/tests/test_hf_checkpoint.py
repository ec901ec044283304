"""HF safetensors checkpoints: our export, transformers' save_pretrained, Hub per-expert and fused layouts."""

import json

import pytest
import torch
import transformers
from hf_models import MODEL_TYPES, hf_model, our_model, tiny_config, tokens
from safetensors import safe_open
from safetensors.torch import save_file

from reftrain.hf_checkpoint import HUB_EXPERT_NAMES, export_hf_checkpoint, load_hf_checkpoint
from reftrain.models import build_model
from reftrain.parallel.pipeline import stage_layers


def initialised(config, seed=0, dtype=torch.float32):
    model = build_model(config, device="meta", dtype=dtype)
    model.to_empty(device="cpu")
    model.init_weights(seed)
    return model


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def saved_keys(directory):
    keys = set()
    for file in directory.glob("*.safetensors"):
        with safe_open(file, framework="pt") as f:
            keys |= set(f.keys())
    return keys


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_export_import_round_trip_is_bit_exact(model_type, dtype, tmp_path):
    config = tiny_config(model_type)
    original = initialised(config, seed=5, dtype=dtype)
    export_hf_checkpoint(original, tmp_path, config)
    restored = initialised(config, seed=6, dtype=dtype)
    load_hf_checkpoint(restored, tmp_path)
    assert_same_weights(original, restored)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_sharded_export_writes_an_index_and_loads(model_type, tmp_path):
    config = tiny_config(model_type)
    original = initialised(config)
    export_hf_checkpoint(original, tmp_path, config, max_shard_bytes=100_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert not list(tmp_path.glob("*.tmp"))
    restored = initialised(config, seed=1)
    load_hf_checkpoint(restored, tmp_path)
    assert_same_weights(original, restored)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_export_is_hub_layout_and_transformers_loads_it(model_type, tmp_path):
    config = tiny_config(model_type)
    ours = initialised(config, seed=2)
    export_hf_checkpoint(ours, tmp_path, config)
    block, gate, up, down = HUB_EXPERT_NAMES[model_type]
    keys = saved_keys(tmp_path)
    layer = "1"  # sparse in every tiny config
    for e in range(ours.model.layers[layer].mlp.experts.num_experts):
        for proj in (gate, up, down):
            assert f"model.layers.{layer}.{block}.experts.{e}.{proj}.weight" in keys
    assert not any(k.endswith(("gate_up_proj", "experts.down_proj")) for k in keys)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = tokens()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_loads_transformers_save_pretrained(model_type, tmp_path):
    config = tiny_config(model_type)
    hf = hf_model(config)
    hf.save_pretrained(tmp_path)
    ours = initialised(config)
    load_hf_checkpoint(ours, tmp_path)
    assert_same_weights(ours, our_model(hf, config))


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_loads_fused_transformers5_layout(model_type, tmp_path):
    config = tiny_config(model_type)
    hf = hf_model(config)
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, tmp_path / "model.safetensors")
    ours = initialised(config)
    load_hf_checkpoint(ours, tmp_path)
    assert_same_weights(ours, our_model(hf, config))


def test_pipeline_stage_loads_only_its_layers(tmp_path):
    config = tiny_config("qwen3_moe")
    full = initialised(config, seed=3)
    export_hf_checkpoint(full, tmp_path, config)
    stage = initialised(config, seed=4)
    keep = {str(i) for i in stage_layers(config["num_hidden_layers"], 2, 1)}
    for name in [n for n in stage.model.layers if n not in keep]:
        del stage.model.layers[name]
    stage.model.embed_tokens = None
    load_hf_checkpoint(stage, tmp_path)
    expected = full.state_dict()
    for key, value in stage.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_missing_unknown_and_misshapen_tensors_are_named(tmp_path):
    config = tiny_config("mixtral")
    tensors = {k: v.contiguous() for k, v in hf_model(config).state_dict().items()}
    cases = {
        "missing": ({k: v for k, v in tensors.items() if k != "model.norm.weight"}, "model.norm.weight"),
        "unknown": ({**tensors, "model.layers.0.extra.weight": torch.zeros(2)}, "model.layers.0.extra.weight"),
        "misshapen": ({**tensors, "lm_head.weight": torch.zeros(3, 64)}, "lm_head.weight"),
    }
    for case, (state, named) in cases.items():
        directory = tmp_path / case
        directory.mkdir()
        save_file(state, directory / "model.safetensors")
        with pytest.raises(ValueError, match=named.replace(".", r"\.")):
            load_hf_checkpoint(initialised(config), directory)
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        load_hf_checkpoint(initialised(config), tmp_path / "absent")
