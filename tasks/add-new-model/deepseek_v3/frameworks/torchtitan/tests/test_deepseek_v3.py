"""Hidden checks for add-new-model / deepseek_v3 on TorchTitan: HF parity of logits and every gradient,
the state-dict adapter both ways, the promised flavors' shapes, ep=2 / dp=2 training equal to one device,
and TorchTitan's own trainer at ep=2 vs dp=2. Helpers: dsv3_case.py here, on top of the TorchTitan grader
support (CPU shims, layout and trainer runners) placed beside this file. Everything in fp32 on CPU.

The checks every add-new-model variant shares are grader_support/titan_model_checks.py's; this module
supplies the model (`case`, `pair`) and its own checks. The tolerances' figures for DeepSeek-V3: the gold
6.6e-7 (logits), 6.9e-7 (worst of 89 gradients); a norm-epsilon convention other than the model's: 6e-5 to
6e-4; attention scaled by the non-rotary head size: 0.28; 671B's routing without top-k renormalisation: 0.50.
"""

from __future__ import annotations

import json
from pathlib import Path

import dsv3_case
import pytest
import torch
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
    return dsv3_case


@pytest.fixture(scope="module")
def pair():
    """The tiny V3 in TorchTitan and transformers, with transformers' random weights loaded through the
    agent's adapter from the Hub layout, the twin's norm epsilons set to the convention the model follows."""
    args = dsv3_case.tiny_args()
    titan = dsv3_case.build(args)
    hf = dsv3_case.hf_model(dsv3_case.hf_config(args))
    hub = dsv3_case.hub_layout({k: v.detach().clone() for k, v in hf.state_dict().items()}, dsv3_case.EXPERTS)
    loaded = dsv3_case.adapter(args).from_hf(dict(hub))
    missing, unexpected = titan.load_state_dict(loaded, strict=False)
    params = {name for name, _ in titan.named_parameters()}
    assert not unexpected, f"from_hf gave keys the model does not have: {unexpected[:5]}"
    assert not params & set(missing), f"from_hf left parameters unset: {sorted(params & set(missing))[:5]}"
    tokens, _ = dsv3_case.batch(args.vocab_size)
    with torch.no_grad():
        ours = titan(tokens)
        diffs = []
        for name, final, latent in dsv3_case.eps_conventions(args):
            dsv3_case.set_eps(hf, final, latent)
            diffs.append(((ours - hf(tokens).logits).abs().max().item(), name, final, latent))
    _, _, final, latent = min(diffs)
    dsv3_case.set_eps(hf, final, latent)
    return args, titan, hf, hub


def test_full_size_flavor_has_the_shapes_of_deepseek_v3():
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    skip = ("architectures", "model_type", "torch_dtype", "transformers_version", "quantization_config", "auto_map")
    raw = json.loads((HERE / "DeepSeek-V3.json").read_text())
    config = DeepseekV3Config(**{k: v for k, v in raw.items() if k not in skip})
    args = dsv3_case.finished(dsv3_case.spec().model_args["671B"], 4096)
    with torch.device("meta"):
        titan = dsv3_case.spec().model_cls(args)
        hf = DeepseekV3ForCausalLM(config)
    ours = {k: tuple(v.shape) for k, v in dsv3_case.adapter(args).to_hf(dict(titan.state_dict())).items()}
    theirs = {
        k: tuple(v.shape) for k, v in dsv3_case.hub_layout(dict(hf.state_dict()), config.n_routed_experts).items()
    }
    assert ours == theirs


@pytest.mark.parametrize(
    "flavor, layers, experts, top_k", [("debugmodel", 6, 8, 3), ("16B", 27, 64, 6), ("671B", 61, 256, 8)]
)
def test_flavors_have_the_promised_sizes(flavor, layers, experts, top_k):
    args = dsv3_case.spec().model_args[flavor]
    moe = getattr(args, dsv3_case.moe_field(args))
    assert (args.n_layers, moe.num_experts, moe.top_k) == (layers, experts, top_k)


def test_full_size_flavor_routes_in_8_groups_keeping_4():
    """The parity checks shrink the groups with the experts; the flavor's own must be DeepSeek-V3's."""
    moe = getattr(dsv3_case.spec().model_args["671B"], dsv3_case.moe_field(dsv3_case.spec().model_args["671B"]))
    assert (moe.num_expert_groups, moe.num_limited_groups) == (8, 4)


# ---- the models the checkout already had must still work -----------------------------------------------


def test_qwen3_moe_still_matches_transformers():
    import titan_case

    args = titan_case.tiny_args()
    titan = titan_case.build(args)
    hf = titan_case.hf_model(titan_case.hf_config(args, titan_case.expert_hidden(args, titan)))
    hub = titan_case.hub_layout(dict(hf.state_dict()), titan_case.EXPERTS)
    titan.load_state_dict(titan_case.adapter(args).from_hf(hub), strict=False)
    tokens, _ = titan_case.batch(args.vocab_size)
    with torch.no_grad():
        assert (titan(tokens) - hf(tokens).logits).abs().max().item() < LOGIT_ATOL
