"""The checks every add-new-model variant on TorchTitan shares: HF parity of logits and every gradient through
the model's state_dict_adapter, the adapter both ways, one training step at ep=2 and dp=2 equal to one device
(one torchrun per layout, shared by its checks), and TorchTitan's own trainer at ep=2 vs dp=2.

Each variant's test module imports them and defines two fixtures: `case` (its case module: titan_case for
Qwen3-MoE, dsv3_case for DeepSeek-V3, which name the model, its tiny flavor and its runners) and `pair` (the tiny
flavor in TorchTitan and transformers, transformers' random weights loaded through the agent's adapter from the
Hub layout). Everything in fp32 on CPU.
"""

from __future__ import annotations

import pytest
import torch

# The golds: logits within 5e-8 (Qwen3-MoE) and 6.6e-7 (DeepSeek-V3; its logits reach 1.8); the worst
# gradient 7e-7 relative; layouts 6e-7 per parameter; norms 1.6e-7 and clipped gradients 3e-7 (a norm taken
# from the local expert shards only: 4e-4). The mistakes these catch are 6e-5 and larger (DeepSeek-V3's notes).
LOGIT_ATOL = 1e-5
GRAD_REL = 1e-4
LAYOUT_REL = 1e-5
NORM_REL = 1e-5


def test_logits_match_transformers(case, pair):
    args, titan, hf, _ = pair
    tokens, _ = case.batch(args.vocab_size)
    with torch.no_grad():
        ours, theirs = titan(tokens), hf(tokens).logits
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() < LOGIT_ATOL


def test_every_gradient_matches_transformers(case, pair):
    args, titan, hf, hub = pair
    tokens, labels = case.batch(args.vocab_size)
    titan.zero_grad(set_to_none=True)
    hf.zero_grad(set_to_none=True)
    case.ce_sum(titan(tokens), labels).backward()
    case.ce_sum(hf(tokens).logits, labels).backward()
    ours = case.adapter(args).to_hf({n: p.grad for n, p in titan.named_parameters() if p.grad is not None})
    theirs = case.hub_layout({n: p.grad for n, p in hf.named_parameters()}, case.EXPERTS)
    assert set(ours) == set(theirs), (sorted(set(theirs) - set(ours))[:5], sorted(set(ours) - set(theirs))[:5])
    worst = max((case.rel(ours[k], theirs[k]), k) for k in theirs)
    assert worst[0] < GRAD_REL, f"worst relative gradient difference {worst[0]:.2e} at {worst[1]}"


def test_adapter_round_trip_is_exact_and_hub_shaped(case, pair):
    args, titan, _, hub = pair
    state = {k: v.detach() for k, v in titan.state_dict().items()}
    exported = case.adapter(args).to_hf(dict(state))
    assert {k: tuple(v.shape) for k, v in exported.items()} == {k: tuple(v.shape) for k, v in hub.items()}
    back = case.adapter(args).from_hf(dict(exported))
    params = dict(titan.named_parameters())
    assert set(params) <= set(back)
    for name in params:
        assert torch.equal(back[name], state[name]), name


def test_transformers_own_save_and_load_meet_the_adapter(case, pair, tmp_path):
    """Both expert layouts transformers ships, through its own conversion rather than the checks' split
    (case.hub_layout): the model in memory keeps the experts fused (`gate_up_proj`), a checkpoint keeps one tensor
    per expert and projection. The adapter's export, saved as a checkpoint, loads with `from_pretrained` (which
    fuses) with no key missing or left over and gives TorchTitan's logits; transformers' `save_pretrained` (which
    splits) read back through the adapter gives transformers' logits."""
    from safetensors.torch import load_file, save_file

    args, titan, hf, _ = pair
    tokens, _ = case.batch(args.vocab_size)
    exported = case.adapter(args).to_hf({k: v.detach() for k, v in titan.state_dict().items()})
    (tmp_path / "export").mkdir()
    hf.config.save_pretrained(tmp_path / "export")
    tensors = {k: v.detach().clone().contiguous() for k, v in exported.items()}
    save_file(tensors, tmp_path / "export" / "model.safetensors", metadata={"format": "pt"})
    loaded, info = type(hf).from_pretrained(tmp_path / "export", output_loading_info=True, attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], (
        f"transformers' from_pretrained of the adapter's export: {info}"
    )
    loaded = loaded.float()
    case.match_twin(loaded, hf)
    with torch.no_grad():
        assert (loaded(tokens).logits - titan(tokens)).abs().max().item() < LOGIT_ATOL

    hf.save_pretrained(tmp_path / "saved")
    state = load_file(tmp_path / "saved" / "model.safetensors")
    fresh = case.build(args, seed=11)
    missing, unexpected = fresh.load_state_dict(case.adapter(args).from_hf(dict(state)), strict=False)
    params = {name for name, _ in fresh.named_parameters()}
    assert not unexpected and not params & set(missing), (unexpected[:5], sorted(params & set(missing))[:5])
    with torch.no_grad():
        assert (fresh(tokens) - hf(tokens).logits).abs().max().item() < LOGIT_ATOL


# ---- layouts: one torchrun per layout, shared by the checks of that layout --------------------------------


@pytest.fixture(scope="module")
def reference(case):
    return case.one_device()


@pytest.fixture(scope="module")
def ep2(case, reference, tmp_path_factory):
    return case.run_layout("ep2", reference, tmp_path_factory.mktemp("ep2"))


@pytest.fixture(scope="module")
def dp2(case, reference, tmp_path_factory):
    return case.run_layout("dp2", reference, tmp_path_factory.mktemp("dp2"))


def _check_grads(case, result, reference):
    assert abs(result["loss"] - reference["loss"]) <= 1e-5 * abs(reference["loss"])
    diff, name = case.worst(result["grads"], reference["grads"])
    assert diff < LAYOUT_REL, f"worst relative gradient difference {diff:.2e} at {name}"


def _check_clipping(case, result, reference):
    norm = reference["norm"]
    assert all(abs(n - norm) <= NORM_REL * norm for n in result["norms"]), (result["norms"], norm)
    diff, name = case.worst(result["clipped"], reference["clipped"])
    assert diff < NORM_REL, f"worst relative clipped-gradient difference {diff:.2e} at {name}"


def test_ep2_loss_and_every_gradient_equal_one_device(case, ep2, reference):
    _check_grads(case, ep2, reference)


def test_ep2_shards_the_experts_over_ranks(case, ep2):
    assert ep2["expert_rows"] == [case.EXPERTS // 2, case.EXPERTS // 2]


def test_ep2_clip_norm_and_clipped_gradients_equal_one_device(case, ep2, reference):
    _check_clipping(case, ep2, reference)


def test_dp2_loss_and_every_gradient_equal_one_device(case, dp2, reference):
    _check_grads(case, dp2, reference)


def test_dp2_clip_norm_and_clipped_gradients_equal_one_device(case, dp2, reference):
    _check_clipping(case, dp2, reference)


# ---- TorchTitan's own trainer: 3 steps at world 2, ep=2 vs dp=2 from one seed checkpoint -------------------


def test_trainer_runs_with_ep2_and_dp2_log_the_same_losses_and_grad_norms(case, tmp_path):
    import titan_case

    assets, data = titan_case.trainer_inputs(tmp_path)
    args = case.trainer_args(assets, data, str(tmp_path / "dump"))
    case.run_trainer(1, args, ["--checkpoint.create_seed_checkpoint"])
    assert (tmp_path / "dump" / "checkpoint" / "step-0").is_dir(), "no seed checkpoint was written"
    ep2 = case.run_trainer(2, args, ["--checkpoint.load_only", "--parallelism.expert_parallel_degree", "2"])
    dp2 = case.run_trainer(2, args, ["--checkpoint.load_only"])
    assert [step for step, *_ in ep2] == [1, 2, 3]
    assert ep2 == dp2
