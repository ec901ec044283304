"""Hidden checks for add-new-model / qwen3_moe on TorchTitan: HF parity of logits and every gradient,
the state-dict adapter both ways, the promised flavors' shapes, and ep=2 / dp=2 training equal to one
device (gloo; shared helpers and CPU shims: frameworks/torchtitan/grader_support/, placed beside this file).
Everything in fp32 on CPU; a GPU trial adds the ladder's rungs on NCCL (grader_support/titan_gpu_checks.py).

The checks every add-new-model variant shares are grader_support/titan_model_checks.py's; this module
supplies the model (`case`, `pair`) and its own checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import titan_case
import torch
from titan_gpu_checks import test_layouts_on_nccl_equal_one_gpu  # noqa: F401  the GPU rungs (gpu_fail_to_pass)
from titan_model_checks import (  # noqa: F401  the shared checks, collected here with this module's `case` and `pair`
    LOGIT_ATOL,
    dp2,
    ep2,
    reference,
    test_adapter_round_trip_is_exact_and_hub_shaped,
    test_dp2_clip_norm_and_clipped_gradients_equal_one_device,
    test_dp2_loss_and_every_gradient_equal_one_device,
    test_ep2_clip_norm_and_clipped_gradients_equal_one_device,
    test_ep2_loss_and_every_gradient_equal_one_device,
    test_ep2_shards_the_experts_over_ranks,
    test_every_gradient_matches_transformers,
    test_logits_match_transformers,
    test_trainer_runs_with_ep2_and_dp2_log_the_same_losses_and_grad_norms,
    test_transformers_own_save_and_load_meet_the_adapter,
)

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def case():
    return titan_case


@pytest.fixture(scope="module")
def pair():
    """The tiny flavor in TorchTitan and transformers, with transformers' random weights loaded through
    the agent's adapter from the Hub layout."""
    args = titan_case.tiny_args()
    titan = titan_case.build(args)
    config = titan_case.hf_config(args, titan_case.expert_hidden(args, titan))
    hf = titan_case.hf_model(config)
    hub = titan_case.hub_layout({k: v.detach().clone() for k, v in hf.state_dict().items()}, titan_case.EXPERTS)
    loaded = titan_case.adapter(args).from_hf(dict(hub))
    missing, unexpected = titan.load_state_dict(loaded, strict=False)
    params = {name for name, _ in titan.named_parameters()}
    assert not unexpected, f"from_hf gave keys the model does not have: {unexpected[:5]}"
    assert not params & set(missing), f"from_hf left parameters unset: {sorted(params & set(missing))[:5]}"
    return args, titan, hf, hub


def test_full_size_flavor_has_the_shapes_of_qwen3_30b_a3b():
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    config = Qwen3MoeConfig(
        **{
            k: v
            for k, v in json.loads((HERE / "Qwen3-30B-A3B.json").read_text()).items()
            if k not in ("architectures", "model_type", "torch_dtype", "transformers_version")
        }
    )
    args = titan_case.spec().model_args["30B-A3B"]
    with torch.device("meta"):
        titan = titan_case.spec().model_cls(args)
        hf = Qwen3MoeForCausalLM(config)
    ours = {k: tuple(v.shape) for k, v in titan_case.adapter(args).to_hf(dict(titan.state_dict())).items()}
    theirs = {k: tuple(v.shape) for k, v in titan_case.hub_layout(dict(hf.state_dict()), config.num_experts).items()}
    assert ours == theirs


@pytest.mark.parametrize(
    "flavor, layers, experts, top_k", [("debugmodel_moe", 8, 64, 8), ("30B-A3B", 48, 128, 8), ("235B-A22B", 94, 128, 8)]
)
def test_flavors_have_the_promised_sizes(flavor, layers, experts, top_k):
    args = titan_case.spec().model_args[flavor]
    moe = getattr(args, titan_case.moe_field(args))
    assert (args.n_layers, moe.num_experts, moe.top_k) == (layers, experts, top_k)


# ---- the dense qwen3 the checkout already had must still work ------------------------------------------


def test_dense_qwen3_still_matches_transformers():
    import dataclasses

    from transformers import Qwen3Config, Qwen3ForCausalLM

    args = dataclasses.replace(titan_case.spec().model_args["debugmodel"], **titan_case.SIZES)
    titan = titan_case.build(args)
    config = Qwen3Config(
        vocab_size=args.vocab_size,
        hidden_size=args.dim,
        intermediate_size=args.hidden_dim,
        num_hidden_layers=args.n_layers,
        num_attention_heads=args.n_heads,
        num_key_value_heads=args.n_kv_heads,
        head_dim=args.head_dim,
        rms_norm_eps=args.norm_eps,
        rope_theta=args.rope_theta,
        max_position_embeddings=args.max_seq_len,
        tie_word_embeddings=args.enable_weight_tying,
        attention_bias=False,
        attn_implementation="eager",
    )
    torch.manual_seed(5)
    hf = Qwen3ForCausalLM(config).float()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.05)
    titan.load_state_dict(titan_case.adapter(args).from_hf(dict(hf.state_dict())), strict=False)
    tokens, _ = titan_case.batch(args.vocab_size)
    with torch.no_grad():
        assert (titan(tokens) - hf(tokens).logits).abs().max().item() < LOGIT_ATOL
    exported = titan_case.adapter(args).to_hf({k: v.detach() for k, v in titan.state_dict().items()})
    assert set(exported) <= set(hf.state_dict())
