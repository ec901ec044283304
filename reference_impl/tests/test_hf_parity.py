"""Our models against transformers on the same weights: logits and every parameter's gradient.

Both our fast path (SDPA, permuted grouped experts) and our eager `reference_forward` must match.
"""

import pytest
import torch
import torch.nn.functional as F
from hf_models import EXAMPLES, HF_CLASSES, MODEL_TYPES, hf_model, our_model, tiny_config, tokens

from reftrain.models import build_model, load_hf_config


def ce_loss(logits, ids):
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_logits_match_transformers(model_type, reference):
    config = tiny_config(model_type)
    hf = hf_model(config)
    ours = our_model(hf, config)
    ids = tokens()
    with torch.no_grad():
        expected = hf(ids).logits
        actual = ours.reference_forward(ids) if reference else ours(ids)
    assert expected.abs().max() > 1.0, "weights too small for the comparison to mean anything"
    # fp32 on CPU: the gold differs by <= 3.5e-6 (7e-7 relative) on either path; ~10x headroom.
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_gradient_matches_transformers(model_type):
    config = tiny_config(model_type)
    hf = hf_model(config)
    ours = our_model(hf, config)
    ids = tokens()
    ce_loss(hf(ids).logits, ids).backward()
    ce_loss(ours(ids), ids).backward()
    hf_grads = {n: p.grad for n, p in hf.named_parameters()}
    our_grads = {n: p.grad for n, p in ours.named_parameters()}
    assert our_grads.keys() == hf_grads.keys()
    for name, expected in hf_grads.items():
        assert expected is not None and expected.abs().sum() > 0, f"{name}: transformers gradient is empty"
        # fp32 on CPU: the gold differs by <= 7.4e-7 (1.9e-6 of the largest entry); ~30x headroom.
        torch.testing.assert_close(our_grads[name], expected, atol=2e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


FIELD_OVERRIDES = [
    ("qwen3_moe", {"norm_topk_prob": False}),
    ("qwen3_moe", {"rope_theta": 500.0}),
    ("qwen3_moe", {"rms_norm_eps": 0.5}),
    ("qwen3_moe", {"num_experts_per_tok": 3}),
    ("qwen3_moe", {"head_dim": 8}),
    ("qwen3_moe", {"attention_bias": True}),
    ("qwen3_moe", {"mlp_only_layers": [1]}),
    ("qwen3_moe", {"decoder_sparse_step": 2}),
    ("qwen3_moe", {"tie_word_embeddings": True}),
    ("qwen3_moe", {"use_sliding_window": True, "sliding_window": 4}),
    ("mixtral", {"num_experts_per_tok": 1}),
    ("mixtral", {"sliding_window": 5}),
    ("mixtral", {"rope_theta": 300.0}),
    ("mixtral", {"rope_scaling": {"rope_type": "linear", "factor": 3.0}}),
    ("mixtral", {"rms_norm_eps": 0.5}),
    ("mixtral", {"num_key_value_heads": 4}),
    ("deepseek_v2", {"q_lora_rank": 16}),
    ("deepseek_v2", {"topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 1}),
    ("deepseek_v2", {"routed_scaling_factor": 2.5}),
    ("deepseek_v2", {"n_shared_experts": 2}),
    ("deepseek_v2", {"first_k_dense_replace": 2}),
    ("deepseek_v2", {"rope_scaling": None}),
    ("deepseek_v2", {"rope_theta": 77.0}),
    ("deepseek_v2", {"attention_bias": True, "mlp_bias": True}),
    ("deepseek_v2", {"kv_lora_rank": 24, "qk_rope_head_dim": 4, "qk_nope_head_dim": 12, "v_head_dim": 8}),
    ("deepseek_v2", {"rms_norm_eps": 0.5}),
]


@pytest.mark.parametrize("model_type,overrides", FIELD_OVERRIDES, ids=lambda v: str(v))
def test_config_field_is_honoured(model_type, overrides):
    """Parity holds with the field changed, and the change matters (to shapes, or to the logits)."""
    config = tiny_config(model_type, **overrides)
    hf = hf_model(config)
    ours = our_model(hf, config)
    ids = tokens()
    with torch.no_grad():
        expected = hf(ids).logits
        # fp32 on CPU: the gold differs by <= 5.5e-6 over these overrides; the sweep
        # (test_hf_config_sweep.py) covers every field with tolerances measured over all of them.
        torch.testing.assert_close(ours(ids), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.reference_forward(ids), expected, atol=1e-5, rtol=1e-5)
        if overrides.get("tie_word_embeddings"):
            assert ours.lm_head.weight is ours.model.embed_tokens.weight
            return
        base = build_model(tiny_config(model_type), device="cpu")
        try:
            base.load_state_dict(hf.state_dict(), strict=True)
        except RuntimeError:
            return  # the field changed parameter names or shapes: it was read
        assert (base(ids) - expected).abs().max() > 1e-3, f"{overrides} made no difference: is it read?"


@pytest.mark.parametrize("name", ["Qwen3-30B-A3B", "Mixtral-8x7B-v0.1", "DeepSeek-V2-Lite"])
def test_real_configs_build_transformers_shapes_and_rope(name):
    """At real shapes (on the meta device): identical parameter names and shapes, and identical RoPE."""
    hf_config = load_hf_config(EXAMPLES / f"{name}.json")
    config_class, model_class = HF_CLASSES[hf_config["model_type"]]
    kwargs = {k: v for k, v in hf_config.items() if k not in ("model_type", "architectures")}
    with torch.device("meta"):
        hf = model_class(config_class(**kwargs))
    ours = build_model(hf_config, device="meta")
    expected = {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    hf_rope = type(hf.model.rotary_emb)(config_class(**kwargs))
    torch.testing.assert_close(ours.model.rotary_emb.inv_freq, hf_rope.inv_freq, atol=0, rtol=1e-6)
    assert ours.model.rotary_emb.attention_scaling == pytest.approx(hf_rope.attention_scaling)
    attn, hf_attn = ours.model.layers["0"].self_attn, hf.model.layers[0].self_attn
    assert attn.scaling == pytest.approx(hf_attn.scaling)
