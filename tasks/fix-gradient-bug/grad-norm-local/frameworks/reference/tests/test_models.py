"""The model contract the trainer relies on: meta init, pipeline-stage forward, aux loss, config errors."""

import json

import pytest
import torch
from hf_models import MODEL_TYPES, tiny_config, tokens

from reftrain.models import build_model, load_hf_config
from reftrain.moe import GroupedExperts
from reftrain.parallel.pipeline import stage_layers


def initialised(config, seed=0):
    model = build_model(config, device="meta")
    model.to_empty(device="cpu")
    model.init_weights(seed)
    return model


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_meta_init_fills_every_parameter_deterministically(model_type):
    config = tiny_config(model_type)
    a, b, c = initialised(config, 7), initialised(config, 7), initialised(config, 8)
    std = config["initializer_range"]
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.isfinite(p).all() and torch.equal(p, q), name
        if "norm" in name:
            assert torch.equal(p, torch.ones_like(p)), name
        else:
            assert abs(p.std().item() - std) < 0.25 * std, f"{name}: std {p.std().item()}"
            assert not torch.equal(p, r), f"{name}: ignores the seed"
    experts = [m for m in a.modules() if isinstance(m, GroupedExperts)]
    assert experts, "no GroupedExperts: the stacked expert weights above were not checked"


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_pipeline_stages_chain_to_the_full_model(model_type):
    """Deleting modules as pipeline parallelism does: stage 0 returns hidden states, stage 1 logits;
    the init of each stage equals the full model's, and chaining them reproduces its logits."""
    config = tiny_config(model_type)
    full = initialised(config, 3)
    stages = [initialised(config, 3) for _ in range(2)]
    for stage, model in enumerate(stages):
        keep = {str(i) for i in stage_layers(config["num_hidden_layers"], 2, stage)}
        for name in [n for n in model.model.layers if n not in keep]:
            del model.model.layers[name]
        if stage == 0:
            model.model.norm, model.lm_head = None, None
        else:
            model.model.embed_tokens = None
        model.init_weights(3)
    ids = tokens()
    with torch.no_grad():
        hidden = stages[0](ids)
        assert hidden.shape == (*ids.shape, config["hidden_size"])
        torch.testing.assert_close(stages[1](hidden), full(ids), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_aux_loss_is_recorded_and_its_gradient_follows_the_scale(model_type):
    config = tiny_config(model_type)
    model = initialised(config)
    blocks = [m for m in model.modules() if hasattr(m, "aux_loss_scale")]
    ids = tokens()
    grads = []
    for scale in (0.0, 10.0):
        model.zero_grad()
        for block in blocks:
            block.aux_loss_scale = scale
        model(ids).sum().backward()
        grads.append(torch.cat([b.gate.weight.grad.flatten() for b in blocks]))
    assert all(b.last_aux_loss is not None and b.last_aux_loss.item() > 0 for b in blocks)
    assert (grads[1] - grads[0]).abs().max() > 1e-4


def test_unknown_model_type_names_the_known_ones(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match=r"'llama' is not supported; known model types: \['deepseek_v2', 'mixtral', 'qwen3_moe'\]"):
        load_hf_config(tmp_path)
    with pytest.raises(ValueError, match="rope type 'longrope'"):
        build_model(tiny_config("mixtral", rope_scaling={"type": "longrope", "factor": 2.0}))
    with pytest.raises(ValueError, match="hidden_act='gelu'"):
        build_model(tiny_config("qwen3_moe", hidden_act="gelu"))
