"""The model contract the trainer relies on: meta init, pipeline-stage forward, aux loss, config errors."""

import json

import pytest
import torch
from hf_models import MODEL_TYPES, hf_model, our_model, tiny_config, tokens

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


def router_outputs(model) -> tuple[list, list]:
    """Forward hooks on every MoE router (`...mlp.gate`): each call's (router logits, chosen experts)."""
    records = []
    handles = [
        m.register_forward_hook(lambda mod, args, out: records.append((out[0], out[2])))
        for n, m in model.named_modules()
        if n.endswith("mlp.gate")
    ]
    return records, handles


def switch_aux_loss(logits, index):
    """The per-layer aux loss, computed independently: E * sum_e f_e * P_e, f_e the share of routed
    token copies sent to expert e, P_e its mean router probability."""
    num_experts = logits.shape[-1]
    share = torch.bincount(index.flatten(), minlength=num_experts).double() / index.numel()
    return num_experts * (share * logits.double().softmax(-1).mean(0)).sum()


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_aux_loss_value_and_its_gradient_at_the_scale(model_type):
    """Values, not changes: each layer's recorded aux loss equals the formula on its router's logits,
    and the gradient with scale s equals the gradient without aux plus s * d(sum of aux)/d(params).
    Tolerances (fp32, CPU): the gold measures <= 1.3e-7 relative on loss values and <= 1.1e-6 on
    gradients (relative to the largest entry); 1e-5 and 1e-4 leave ~80x."""
    config = tiny_config(model_type)
    model = initialised(config)
    blocks = [m for m in model.modules() if hasattr(m, "aux_loss_scale")]
    ids = tokens()
    params = dict(model.named_parameters())
    grads = {}
    # Scale 0 last: its router graph is reused below, and AuxLossBackward would add its scale to any
    # backward through a block's output, this one included.
    for scale in (10.0, 0.0):
        model.zero_grad()
        for block in blocks:
            block.aux_loss_scale = scale
        records, handles = router_outputs(model)
        model(ids).sum().backward(retain_graph=True)  # the aux gradient below reuses the router graph
        for h in handles:
            h.remove()
        grads[scale] = {n: p.grad.clone() for n, p in params.items()}
    assert len(records) == len(blocks) > 0
    for block, (logits, index) in zip(blocks, records):
        expected = switch_aux_loss(logits.detach(), index)
        assert block.last_aux_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    aux_sum = sum(switch_aux_loss(logits, index) for logits, index in records)
    aux_grads = torch.autograd.grad(aux_sum, list(params.values()), allow_unused=True)
    moved = 0
    for (name, p), aux_grad in zip(params.items(), aux_grads):
        want = grads[0.0][name] + (0 if aux_grad is None else 10.0 * aux_grad.to(p.dtype))
        scale = max(float(want.abs().max()), 1e-2 * float(grads[0.0][name].abs().max()), 1e-12)
        err = float((grads[10.0][name] - want).abs().max()) / scale
        assert err < 1e-4, f"{name}: gradient with aux scale 10 is off by {err:.2e} (relative)"
        moved += aux_grad is not None and bool(aux_grad.abs().max() > 0)
    assert moved > 0, "the aux loss reaches no parameter"


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_training_loss_with_aux_equals_transformers(model_type, train):
    """Where transformers defines the router aux loss (`output_router_logits`), its training loss
    ce + router_aux_loss_coef * aux and every gradient equal ours on the same weights and batch, in eval
    and train mode (router jitter, where the model has it, draws the same noise from a shared seed).

    One MoE layer: transformers pools the router statistics of all layers before multiplying, reftrain
    computes the loss per layer (so it works inside one pipeline stage); with one layer they coincide,
    up to transformers counting each token's k choices where reftrain takes their share (a factor k).
    Tolerances (fp32, CPU): the gold measures <= 1.3e-7 relative on loss values and <= 1.1e-6 on
    gradients (relative to the largest entry); 1e-5 and 1e-4 leave ~80x.
    """
    coef = 0.5
    tiny = tiny_config(model_type)
    overrides = {"num_hidden_layers": 1, "router_aux_loss_coef": coef, "output_router_logits": True}
    if "first_k_dense_replace" in tiny:
        overrides["first_k_dense_replace"] = 0  # the one layer is the MoE layer
    if "router_jitter_noise" in tiny:
        overrides["router_jitter_noise"] = 0.2  # acts in train mode only
    config = tiny_config(model_type, **overrides)
    hf = hf_model(config).train(train)
    ids = tokens()
    torch.manual_seed(0)
    out = hf(ids, labels=ids)
    if getattr(out, "aux_loss", None) is None:
        pytest.skip(
            f"transformers' {model_type} defines no router aux loss "
            "(test_aux_loss_value_and_its_gradient_at_the_scale covers ours)"
        )
    out.loss.backward()
    ours = our_model(hf, config).train(train)
    blocks = [m for m in ours.modules() if hasattr(m, "aux_loss_scale")]
    assert len(blocks) == 1
    top_k = config["num_experts_per_tok"]
    blocks[0].aux_loss_scale = coef * top_k
    torch.manual_seed(0)
    logits = ours(ids)
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    ce.backward()
    assert float(blocks[0].last_aux_loss) * top_k == pytest.approx(float(out.aux_loss.detach()), rel=1e-5)
    assert float(ce + coef * top_k * blocks[0].last_aux_loss) == pytest.approx(float(out.loss), rel=1e-5)
    hf_grads = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        want = hf_grads[name].grad
        err = float((p.grad - want).abs().max() / want.abs().max())
        assert err < 1e-4, f"{name}: gradient off by {err:.2e} (relative)"


def test_unknown_model_type_names_the_known_ones(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(
        ValueError, match=r"'llama' is not supported; known model types: \['deepseek_v2', 'mixtral', 'qwen3_moe'\]"
    ):
        load_hf_config(tmp_path)
    with pytest.raises(ValueError, match="rope type 'longrope'"):
        build_model(tiny_config("mixtral", rope_scaling={"type": "longrope", "factor": 2.0}))
    with pytest.raises(ValueError, match="hidden_act='gelu'"):
        build_model(tiny_config("qwen3_moe", hidden_act="gelu"))
