"""Parity with transformers over a generated sweep of config values, not just the tiny config.

Why: a model that matches transformers on the tiny config can still ignore, or misread, every field the
tiny config leaves at one value (a routing method, an attention window, a rope scaling, a bias, a
padding id), and combinations of them. Each case of the sweep builds transformers' model and ours on
the same random weights and compares: routing (router logits, chosen experts, their weights), each MoE
layer's aux loss by value, logits (fast and eager paths), every parameter's gradient in train mode with
a shared random seed (router jitter draws the same noise), and greedy decoding with and without the KV
cache (tokens, and every step's logits against transformers' `generate`). Cases with a key removed from
the tiny config check the model's defaults against transformers' (DROP).

The field list comes from the transformers config class: a field transformers adds fails
`test_every_config_field_is_swept_or_excluded` until it gets a value in FIELD_VALUES or a reason in
EXCLUDED. Cases are generated deterministically from SEED; ids name the overrides.
"""

import dataclasses
import random

import pytest
import torch
import torch.nn.functional as F
from hf_models import HF_CLASSES, MODEL_TYPES, hf_model, tiny_config

from reftrain.generate import KVCache, greedy_generate
from reftrain.models import build_model

SEED = 12

FIELD_VALUES = {
    # Shapes. Values fit every tiny config (hidden 64, 4 heads, 2-4 kv heads, 4-8 experts).
    "vocab_size": [300],
    "hidden_size": [48],
    "intermediate_size": [80],
    "num_hidden_layers": [1, 4],
    "num_attention_heads": [8],
    "num_key_value_heads": [1, 4],
    "head_dim": [8, 24],
    "moe_intermediate_size": [24],
    "num_local_experts": [6],
    "num_experts": [6],
    "n_routed_experts": [4],
    "n_shared_experts": [2],
    "kv_lora_rank": [24],
    "q_lora_rank": [16],
    "qk_nope_head_dim": [12],
    "qk_rope_head_dim": [4],
    "v_head_dim": [8],
    # Numerics and routing.
    "rms_norm_eps": [0.5],
    "num_experts_per_tok": [1, 3],
    "routed_scaling_factor": [2.5],
    "norm_topk_prob": [True, False],
    "topk_method": ["group_limited_greedy"],  # needs n_group / topk_group: see PAIRS
    "n_group": [2],
    "topk_group": [2],
    "first_k_dense_replace": [0, 2],
    "decoder_sparse_step": [2],
    "mlp_only_layers": [[1]],
    "attention_bias": [True],
    "mlp_bias": [True],
    "pretraining_tp": [2],
    "tie_word_embeddings": [True],
    "pad_token_id": [5],  # token 5 occurs in every batch: its embedding row gets no gradient
    "sliding_window": [5],
    "use_sliding_window": [True],
    "max_position_embeddings": [64],
    "rope_parameters": [{"rope_type": "linear", "factor": 3.0, "rope_theta": 300.0}],
    "hidden_act": ["gelu"],
    "output_router_logits": [True],
    # Train mode only: both draw from the same seeded generator (see `compare`).
    "router_jitter_noise": [0.3],
    # Eval mode only (see EVAL_ONLY).
    "attention_dropout": [0.25],
}

EXCLUDED = {
    # transformers' PretrainedConfig fields shared by every model.
    "architectures": "names the class; the test picks classes by model_type",
    "chunk_size_feed_forward": "not read by these models' modeling code",
    "dtype": "the tests build both models in fp32",
    "id2label": "sequence-classification heads only",
    "label2id": "sequence-classification heads only",
    "is_encoder_decoder": "decoder-only models",
    "output_hidden_states": "an output flag; the hidden states are checked through the logits",
    "problem_type": "sequence-classification heads only",
    "return_dict": "an output flag",
    "transformers_version": "metadata",
    "use_cache": "a generate() switch; each case decodes both with and without the cache",
    "bos_token_id": "read by tokenizers and generate(), not by the model",
    "eos_token_id": "read by generate(); test_generate.py::test_eos_stops_and_pads_like_transformers checks it",
    "initializer_range": "init only: test_initializer_range_sets_the_init_std checks it",
    "router_aux_loss_coef": "a training-loss weight; reftrain's trainer takes it from training.aux_loss_coef "
    "(test_models.py checks the weighted aux gradient by value)",
}

EVAL_ONLY = {"attention_dropout": "reftrain trains without attention dropout; eval-mode parity must still hold"}

REFUSABLE = {
    "hidden_act": "reftrain implements SwiGLU with silu only",
    "norm_topk_prob": "DeepSeek-V2 in transformers ignores it; reftrain may refuse True instead",
}
"""Fields a model may refuse with a ValueError naming the field instead of matching transformers."""

PAIRS = [
    # Routing methods x their group sizes (experts per group x groups kept x experts per token).
    {"topk_method": "greedy", "n_group": 4, "topk_group": 1},
    {"topk_method": "group_limited_greedy", "n_group": 2, "topk_group": 1},
    {"topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 1},
    {"topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2, "num_experts_per_tok": 3},
    {"topk_method": "group_limited_greedy", "n_group": 8, "topk_group": 3, "num_experts_per_tok": 3},
    {"topk_method": "group_limited_greedy", "n_group": 2, "topk_group": 1, "routed_scaling_factor": 16.0},
    # Attention windows x sequences beyond them (cases decode up to DECODE_LEN positions).
    {"sliding_window": 2},  # not 1: transformers' own cached decoding disagrees with its uncached one there
    {"sliding_window": 3, "num_key_value_heads": 1},
    {"sliding_window": 8, "head_dim": 8},
    {"use_sliding_window": True, "sliding_window": 3},
    {"use_sliding_window": True, "sliding_window": 6, "num_key_value_heads": 4},
    # Rope scaling x positions beyond the original length (original 8, decoding to DECODE_LEN). head_dim
    # is explicit because transformers' yarn reads it from the config (None fails there).
    {
        "rope_parameters": {
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 8,
            "rope_theta": 100.0,
        },
        "max_position_embeddings": 32,
        "head_dim": 16,
    },
    {
        "rope_parameters": {
            "rope_type": "yarn",
            "factor": 2.0,
            "original_max_position_embeddings": 8,
            "rope_theta": 50.0,
            "beta_fast": 8,
            "beta_slow": 2,
            "mscale": 1.0,
            "mscale_all_dim": 0.5,
        },
        "max_position_embeddings": 16,
        "head_dim": 16,
    },
    {"rope_parameters": {"rope_type": "linear", "factor": 0.25, "rope_theta": 20.0}},
    {"rope_parameters": {"rope_type": "default", "rope_theta": 7.0}},
    {"rope_theta": 40.0, "rope_scaling": {"type": "linear", "factor": 2.5}},
    {"rope_parameters": None},  # no rope keys at all: the model's default theta
    {"rope_parameters": {"rope_type": "linear", "factor": 2.0}},  # a scaling without theta: the default theta
    # Other fields that act together.
    {"tie_word_embeddings": True, "pad_token_id": 5},
    {"q_lora_rank": 16, "attention_bias": True},
    {"kv_lora_rank": 8, "qk_rope_head_dim": 2, "qk_nope_head_dim": 6, "v_head_dim": 20},
    {"first_k_dense_replace": 2, "num_hidden_layers": 4, "mlp_bias": True},
    {"decoder_sparse_step": 2, "mlp_only_layers": [0]},
    {"num_experts_per_tok": 1, "norm_topk_prob": False},
    {"num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 8},
    {"num_attention_heads": 8, "num_key_value_heads": 8},
]

DROP = "<absent>"
"""An override value that removes the key from the tiny config: the model must fall back to transformers'
default, which the tiny config (setting every key) never exercises."""

DEFAULTED = [
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "sliding_window",
    "router_jitter_noise",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
    "norm_topk_prob",
    "routed_scaling_factor",
    "topk_method",
    "n_group",
    "topk_group",
    "first_k_dense_replace",
    "n_shared_experts",
    "decoder_sparse_step",
    "mlp_only_layers",
    "use_sliding_window",
    "num_experts_per_tok",
    "hidden_act",
    "max_position_embeddings",
]
"""Keys whose transformers default suits a tiny model (no size field with a default of thousands)."""

RANDOM_CASES = 12
"""Seeded random combinations of 3-4 single-field values per model, on top of singles and pairs."""

DECODE_PROMPT, DECODE_NEW = 6, 10
DECODE_LEN = DECODE_PROMPT + DECODE_NEW

# Tolerances, relative to the largest magnitude of the transformers tensor compared (max |a-b| / max |b|).
# The gold (reftrain's own models) measured over the whole sweep, CPU fp32: logits <= 1.4e-6, gradients
# <= 3.8e-6 (every parameter), decoding-step logits <= 3.0e-6, router logits and weights <= 1.3e-6, aux
# losses <= 1.6e-7. Each tolerance is ~100x that: room for another summation order, not for a wrong formula.
LOGITS_RTOL = 1e-4
DECODE_RTOL = 3e-4
GRAD_RTOL = 3e-4
ROUTING_RTOL = 1e-4
AUX_RTOL = 2e-5


def hf_fields(model_type: str) -> list[str]:
    return [f.name for f in dataclasses.fields(HF_CLASSES[model_type][0])]


def hf_default(model_type: str, name: str):
    field = {f.name: f for f in dataclasses.fields(HF_CLASSES[model_type][0])}[name]
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def make_config(model_type: str, overrides: dict) -> dict:
    """The tiny config with `overrides`; a `rope_parameters` override replaces the legacy rope keys."""
    config = tiny_config(model_type)
    if "rope_parameters" in overrides:
        config.pop("rope_scaling", None)
        config.pop("rope_theta", None)
    config = {**config, **overrides}
    return {k: v for k, v in config.items() if v != DROP}


def applies(model_type: str, overrides: dict) -> bool:
    """Every overridden field exists for the model (legacy rope keys always do) and the config is consistent."""
    names = set(hf_fields(model_type)) | {"rope_theta", "rope_scaling"}
    if not set(overrides) <= names:
        return False
    config = make_config(model_type, overrides)
    if config.get("topk_method") == "group_limited_greedy":
        experts, groups = config["n_routed_experts"], config.get("n_group") or 0
        if (
            not groups
            or experts % groups
            or config["num_experts_per_tok"] > (config.get("topk_group") or 0) * experts // groups
        ):
            return False
    if config["num_attention_heads"] % config.get("num_key_value_heads", config["num_attention_heads"]):
        return False
    if "kv_lora_rank" in config:  # MLA: transformers needs one kv head per head
        return config.get("num_key_value_heads", config["num_attention_heads"]) == config["num_attention_heads"]
    return True


def differs(model_type: str, name: str, value) -> bool:
    """`value` is not what the tiny config uses (its own value, else transformers' default): the case
    exercises behaviour the tiny config leaves unchecked."""
    return value != tiny_config(model_type).get(name, hf_default(model_type, name))


def single_cases(model_type: str) -> list[dict]:
    cases = []
    for name in hf_fields(model_type):
        for value in FIELD_VALUES.get(name, []):
            overrides = {name: value}
            if differs(model_type, name, value) and applies(model_type, overrides):
                cases.append(overrides)
    return cases


def random_cases(model_type: str) -> list[dict]:
    rng = random.Random(f"{SEED}-{model_type}")
    pool = [c for c in single_cases(model_type) if not set(c) & (set(REFUSABLE) | set(EVAL_ONLY))]
    cases = []
    while len(cases) < RANDOM_CASES:
        overrides = {}
        for case in rng.sample(pool, rng.choice([3, 4])):
            overrides.update(case)
        if applies(model_type, overrides) and overrides not in cases:
            cases.append(overrides)
    return cases


def absent_cases(model_type: str) -> list[dict]:
    """One case per DEFAULTED key the tiny config sets, with the key removed."""
    tiny = tiny_config(model_type)
    cases = [{name: DROP} for name in DEFAULTED if name in tiny]
    return [c for c in cases if applies(model_type, c)]


def sweep(model_type: str) -> list[dict]:
    pairs = [p for p in PAIRS if applies(model_type, p)]
    return single_cases(model_type) + pairs + absent_cases(model_type) + random_cases(model_type)


CASES = [pytest.param(m, o, id=f"{m}-{o}") for m in MODEL_TYPES for o in sweep(m)]


def rel_err(actual: torch.Tensor, expected: torch.Tensor, floor: float = 1e-30) -> float:
    """max |actual - expected| / max |expected| (at least `floor`)."""
    return float((actual.double() - expected.double()).abs().max() / expected.double().abs().max().clamp_min(floor))


def batch(config: dict, seq: int = 12, seed: int = 1) -> torch.Tensor:
    ids = torch.randint(0, config["vocab_size"], (2, seq), generator=torch.Generator().manual_seed(seed))
    if config.get("pad_token_id") is not None:
        ids[:, 3] = config["pad_token_id"]
    return ids


def record_routing(model) -> tuple[list, list]:
    """Forward hooks on every MoE router (`...mlp.gate`): each call's (logits, dense [T, E] weights, chosen
    experts), and the hook handles."""
    records = []

    def hook(module, args, output):
        logits, weights, index = output
        dense = torch.zeros(logits.shape, dtype=torch.float64).scatter(1, index, weights.double())
        records.append((logits.detach().double(), dense.detach(), index.detach()))

    handles = [m.register_forward_hook(hook) for n, m in model.named_modules() if n.endswith("mlp.gate")]
    return records, handles


def switch_aux_loss(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """reftrain's per-layer aux loss from a router's logits and chosen experts, computed independently:
    E * sum_e f_e * P_e, f_e the share of routed token copies sent to expert e, P_e its mean probability."""
    num_experts = logits.shape[-1]
    share = torch.bincount(index.flatten(), minlength=num_experts).double() / index.numel()
    return num_experts * (share * logits.softmax(-1).mean(0)).sum()


def ce(logits, ids):
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


def decode_steps(model, prompt: torch.Tensor, new: int, cached: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Greedy decoding, returning tokens and each step's last-position logits; without the cache every
    step recomputes the whole sequence."""
    caches = {name: KVCache() for name in model.model.layers} if cached else None
    tokens, steps = prompt, []
    with torch.no_grad():
        logits = model(prompt, caches=caches)
        for step in range(new):
            if step:
                logits = model(tokens[:, -1:] if cached else tokens, caches=caches)
            steps.append(logits[:, -1])
            tokens = torch.cat((tokens, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    return tokens, steps


def compare(model_type: str, overrides: dict) -> dict:
    """Runs every check of one case; returns the measured relative errors (asserting the exact ones)."""
    config = make_config(model_type, overrides)
    hf = hf_model(config)
    try:
        ours = build_model(config, device="cpu")
    except ValueError as e:
        # Refusable: the REFUSABLE fields, and a removed key transformers has no usable default for (None).
        refused = [
            name
            for name, value in overrides.items()
            if name in str(e) and (name in REFUSABLE or value == DROP and hf_default(model_type, name) is None)
        ]
        assert refused, f"{overrides}: refused with {e!r}; only {sorted(REFUSABLE)} may be refused, by name"
        return {}
    ours.load_state_dict(hf.state_dict(), strict=True)
    ours.eval()
    ids = batch(config)
    errors = {}

    # Eval mode: logits of both paths, routing and aux loss per MoE layer.
    hf_routing, handles = record_routing(hf)
    our_routing, our_handles = record_routing(ours)
    with torch.no_grad():
        expected = hf(ids).logits
        fast = ours(ids)
    for h in handles + our_handles:
        h.remove()
    assert expected.abs().max() > 1.0, "weights too small for the comparison to mean anything"
    with torch.no_grad():
        errors["logits"] = max(rel_err(fast, expected), rel_err(ours.reference_forward(ids), expected))
    assert len(our_routing) == len(hf_routing), (
        f"{len(our_routing)} MoE routers ran, transformers ran {len(hf_routing)}"
    )
    blocks = [m for m in ours.modules() if hasattr(m, "aux_loss_scale")]
    assert len(blocks) == len(hf_routing)
    errors["routing"] = errors["aux"] = 0.0
    for layer, ((hf_logits, hf_dense, hf_index), (logits, dense, _), block) in enumerate(
        zip(hf_routing, our_routing, blocks)
    ):
        errors["routing"] = max(errors["routing"], rel_err(logits, hf_logits), rel_err(dense, hf_dense))
        assert torch.equal(dense != 0, hf_dense != 0), f"MoE layer {layer}: different experts chosen"
        errors["aux"] = max(errors["aux"], rel_err(block.last_aux_loss, switch_aux_loss(hf_logits, hf_index)))

    # Train mode, same seed: every parameter's gradient (jitter noise draws from the shared generator).
    train = not set(overrides) & set(EVAL_ONLY)
    hf.train(train), ours.train(train)
    torch.manual_seed(SEED)
    hf_logits = hf(ids).logits
    torch.manual_seed(SEED)
    our_logits = ours(ids)
    errors["train_logits"] = rel_err(our_logits.detach(), hf_logits.detach())
    ce(hf_logits, ids).backward()
    ce(our_logits, ids).backward()
    hf.eval(), ours.eval()
    hf_grads = {n: p.grad for n, p in hf.named_parameters()}
    our_grads = {n: p.grad for n, p in ours.named_parameters()}
    assert our_grads.keys() == hf_grads.keys()
    errors["grads"] = 0.0
    # A gradient that is zero analytically (the router of top-1 renormalised routing) is rounding noise
    # in both models: errors are relative to at least 1% of the model's largest gradient.
    floor = 0.01 * max(float(g.abs().max()) for g in hf_grads.values() if g is not None)
    for name, want in hf_grads.items():
        if want is None:  # a parameter transformers' forward does not use
            assert our_grads[name] is None or not our_grads[name].any(), f"{name}: transformers gives no gradient"
            continue
        got = torch.zeros_like(want) if our_grads[name] is None else our_grads[name]
        errors["grads"] = max(errors["grads"], rel_err(got, want, floor))
        if (
            config.get("pad_token_id") is not None
            and name.endswith("embed_tokens.weight")
            and not config.get("tie_word_embeddings")
        ):  # tied, the lm_head side gives the padding row a gradient
            assert not our_grads[name][config["pad_token_id"]].any(), "the padding embedding row got a gradient"

    # Greedy decoding past every window and original rope length: tokens and each step's logits.
    prompt = batch(config, seq=DECODE_PROMPT, seed=3)
    out = hf.generate(
        prompt,
        max_new_tokens=DECODE_NEW,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
        output_logits=True,
        return_dict_in_generate=True,
    )
    cached_tokens, cached_steps = decode_steps(ours, prompt, DECODE_NEW, cached=True)
    full_tokens, full_steps = decode_steps(ours, prompt, DECODE_NEW, cached=False)
    assert torch.equal(cached_tokens, out.sequences), "greedy tokens with the KV cache differ from transformers'"
    assert torch.equal(full_tokens, out.sequences), "greedy tokens without the KV cache differ from transformers'"
    assert torch.equal(greedy_generate(ours, prompt, DECODE_NEW), out.sequences)
    errors["decode"] = max(
        rel_err(step, want) for steps in (cached_steps, full_steps) for step, want in zip(steps, out.logits)
    )
    return errors


@pytest.mark.parametrize("model_type,overrides", CASES)
def test_parity_with_transformers_over_the_config_sweep(model_type, overrides):
    errors = compare(model_type, overrides)
    limits = {
        "logits": LOGITS_RTOL,
        "train_logits": LOGITS_RTOL,
        "decode": DECODE_RTOL,
        "grads": GRAD_RTOL,
        "routing": ROUTING_RTOL,
        "aux": AUX_RTOL,
    }
    too_far = {k: f"{v:.2e} > {limits[k]:.0e}" for k, v in errors.items() if not v <= limits[k]}
    assert not too_far, f"{overrides}: relative error beyond fp32 tolerance: {too_far}"


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_config_field_is_swept_or_excluded(model_type):
    """Each field of transformers' config class gets a value new to the tiny config somewhere in the
    sweep, or is excluded with a reason: a field transformers adds cannot go unchecked silently."""
    covered = {
        name
        for case in sweep(model_type)
        for name, value in case.items()
        if name in hf_fields(model_type) and value != DROP and differs(model_type, name, value)
    }
    missing = [n for n in hf_fields(model_type) if n not in covered and n not in EXCLUDED]
    assert not missing, (
        f"{model_type}: config fields no sweep case changes: {missing}; add values to "
        "FIELD_VALUES or PAIRS, or a reason to EXCLUDED"
    )


def test_sweep_is_deterministic_and_reaches_beyond_windows_and_rope_lengths():
    assert [sweep(m) for m in MODEL_TYPES] == [sweep(m) for m in MODEL_TYPES]
    windows = [c["sliding_window"] for m in MODEL_TYPES for c in sweep(m) if isinstance(c.get("sliding_window"), int)]
    assert windows and max(windows) < DECODE_LEN
    originals = [
        c["rope_parameters"]["original_max_position_embeddings"]
        for m in MODEL_TYPES
        for c in sweep(m)
        if "original_max_position_embeddings" in (c.get("rope_parameters") or {})
    ]
    assert originals and max(originals) < DECODE_LEN


UNRUNNABLE = [{"topk_method": "noaux_tc"}]
"""Values transformers' model of the same type cannot run: the model must refuse them by name, not fall
back silently (an unknown routing method routed greedily, say)."""


@pytest.mark.parametrize("overrides", UNRUNNABLE, ids=str)
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_values_transformers_cannot_run_are_refused_by_name(model_type, overrides):
    if not applies(model_type, overrides):
        pytest.skip(f"{model_type} has no field {sorted(overrides)}")
    with pytest.raises(ValueError, match="|".join(overrides)):
        build_model(make_config(model_type, overrides), device="cpu")


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_initializer_range_sets_the_init_std(model_type):
    model = build_model(tiny_config(model_type, initializer_range=0.05), device="meta")
    model.to_empty(device="cpu")
    model.init_weights(0)
    weights = [p for n, p in model.named_parameters() if "norm" not in n and not n.endswith("bias")]
    assert all(abs(p.std().item() - 0.05) < 0.25 * 0.05 for p in weights)


NEEDED_WHEN_NONE = ["num_experts_per_tok"]
"""Fields a runnable model needs that some transformers config classes leave None by default (the model
refuses None by name); the test takes them from the tiny config."""


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_a_field_left_out_of_config_json_takes_transformers_default(model_type):
    """A config.json may leave any field out; the model must then read transformers' default, not a default
    of its own (a wrong expert count, window or epsilon that only shows on configs written by hand).
    Fields transformers leaves None are derived from others (head_dim = hidden / heads): the sweep's
    parity cases check the derivation; here they are skipped."""
    hf = HF_CLASSES[model_type][0]()
    needed = {n: tiny_config(model_type)[n] for n in NEEDED_WHEN_NONE if getattr(hf, n, 0) is None}
    ours = build_model({"model_type": model_type, **needed}, device="meta").config
    compared, wrong = 0, {}
    for field in dataclasses.fields(ours):
        if not hasattr(hf, field.name) or getattr(hf, field.name) is None or field.name in needed:
            continue
        compared += 1
        if getattr(ours, field.name) != getattr(hf, field.name):
            wrong[field.name] = f"{getattr(ours, field.name)!r}, transformers {getattr(hf, field.name)!r}"
    assert compared >= 10, f"{model_type}: only {compared} fields compared; is .config the model's config?"
    assert not wrong, f"{model_type}: defaults that differ from transformers': {wrong}"
