"""The small DeepSeek-V3 the hidden checks share: the agent's `671B` flavor (the real V3: sigmoid routing,
top-k renormalisation, routed scaling, group-limited routing, q LoRA) shrunk to CPU size through the size
fields the instruction names, and its transformers twin.

Why shrink the agent's flavor instead of writing our own args: its routing settings are what the task is
about, so they are kept as the agent wrote them; only sizes change. Generic pieces (CPU shims, batches, the
Hub's per-expert layout) come from the TorchTitan grader support (titan_case.py).
"""

from __future__ import annotations

import dataclasses
import itertools

import titan_case
import torch
from titan_case import batch, ce_sum, hub_layout, rel, worst  # noqa: F401 (re-exported for the checks)
from torchtitan.models.moe import MoEArgs
from torchtitan.protocols.train_spec import get_train_spec

EXPERTS, TOP_K, SHARED, GROUPS, LIMITED = 8, 2, 1, 4, 2
ROUTED_SCALE = 2.5  # DeepSeek-V3's routed_scaling_factor: the twin routes as V3, whatever the flavor says
BATCH, SEQ = titan_case.BATCH, titan_case.SEQ
SIZES = dict(
    vocab_size=256,
    dim=64,
    inter_dim=128,
    moe_inter_dim=32,
    n_layers=3,
    n_dense_layers=1,
    n_heads=4,
    q_lora_rank=32,
    kv_lora_rank=32,
    qk_nope_head_dim=16,
    qk_rope_head_dim=8,
    v_head_dim=16,
    max_seq_len=64,
    attn_type="sdpa",  # the big flavors use FlexAttention with block-causal masks; plain causal here
    attn_mask_type="causal",
)


def spec():
    return get_train_spec("deepseek_v3")


def moe_field(args) -> str:
    """The name of the flavor's one MoEArgs field (the framework's shared MoE settings)."""
    names = [f.name for f in dataclasses.fields(args) if isinstance(getattr(args, f.name), MoEArgs)]
    assert len(names) == 1, f"expected one torchtitan.models.moe.MoEArgs field in the deepseek_v3 args, found {names}"
    return names[0]


def tiny_args(flavor: str = "671B"):
    """grouped_mm off: torch._grouped_mm on CPU is not fp32-exact, the experts' for-loop path is."""
    args = dataclasses.replace(spec().model_args[flavor], **SIZES)
    name = moe_field(args)
    moe = dataclasses.replace(
        getattr(args, name),
        num_experts=EXPERTS,
        num_shared_experts=SHARED,
        top_k=TOP_K,
        num_expert_groups=GROUPS,
        num_limited_groups=LIMITED,
        use_grouped_mm=False,
    )
    return finished(dataclasses.replace(args, **{name: moe}), SIZES["max_seq_len"])


def finished(args, seq_len: int):
    """A copy of the flavor's args completed from a job config, as the trainer does before building any
    model (BaseModelArgs.update_from_config)."""
    from torchtitan.config import JobConfig

    name = moe_field(args)  # update_from_config edits the MoEArgs in place: the flavor's own must stay as is
    args = dataclasses.replace(args, **{name: dataclasses.replace(getattr(args, name))})
    job = JobConfig()
    job.training.seq_len = seq_len
    args.update_from_config(job)
    return args


def build(args, seed: int = 0):
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = spec().model_cls(args)
    model.to_empty(device="cpu")
    with torch.no_grad():
        model.init_weights(buffer_device=torch.device("cpu"))
    return model.float()


def adapter(args):
    return spec().state_dict_adapter(args, None)


def hf_config(args):
    from transformers import DeepseekV3Config

    return DeepseekV3Config(
        vocab_size=args.vocab_size,
        hidden_size=args.dim,
        intermediate_size=args.inter_dim,
        moe_intermediate_size=args.moe_inter_dim,
        num_hidden_layers=args.n_layers,
        first_k_dense_replace=args.n_dense_layers,
        num_attention_heads=args.n_heads,
        num_key_value_heads=args.n_heads,
        q_lora_rank=args.q_lora_rank,
        kv_lora_rank=args.kv_lora_rank,
        qk_nope_head_dim=args.qk_nope_head_dim,
        qk_rope_head_dim=args.qk_rope_head_dim,
        v_head_dim=args.v_head_dim,
        n_routed_experts=EXPERTS,
        n_shared_experts=SHARED,
        num_experts_per_tok=TOP_K,
        n_group=GROUPS,
        topk_group=LIMITED,
        norm_topk_prob=True,
        routed_scaling_factor=ROUTED_SCALE,
        rms_norm_eps=args.norm_eps,
        rope_theta=args.rope_theta,
        max_position_embeddings=args.max_seq_len,
        tie_word_embeddings=False,
        attention_bias=False,
        attn_implementation="eager",
    )


def hf_model(config, seed: int = 1):
    from transformers import DeepseekV3ForCausalLM

    torch.manual_seed(seed)
    model = DeepseekV3ForCausalLM(config).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.05)
            if name.endswith("norm.weight"):
                p.add_(1.0)  # RMSNorm gains near 1, so activations (and the logits) keep their scale
    return model


def eps_conventions(args) -> list[tuple[str, float, float]]:
    """(name, final-norm eps, MLA latent-norm eps) a faithful model may use: transformers' (rms_norm_eps, 1e-6),
    TorchTitan v0.2.2's own (an eps-less final nn.RMSNorm, i.e. finfo(fp32).eps, and norm_eps), or a mix.
    With the small random weights of these checks the epsilons alone move the logits by 4e-4, so the check
    aligns the transformers twin with the convention the agent's model follows instead of failing it."""
    finals = {"rms_norm_eps": args.norm_eps, "finfo(fp32).eps": torch.finfo(torch.float32).eps}
    latents = {"1e-6": 1e-6, "norm_eps": args.norm_eps}
    return [(f"final {f}, latent {lt}", finals[f], latents[lt]) for f, lt in itertools.product(finals, latents)]


def set_eps(hf, final: float, latent: float) -> None:
    hf.model.norm.variance_epsilon = final
    for layer in hf.model.layers:
        for name in ("q_a_layernorm", "kv_a_layernorm"):
            if hasattr(layer.self_attn, name):
                getattr(layer.self_attn, name).variance_epsilon = latent


def match_twin(loaded, twin) -> None:
    """Carries onto a transformers model read from a checkpoint the norm epsilons the checks chose for the twin
    (the convention the agent's model follows; a checkpoint's config holds rms_norm_eps only)."""
    latent = next(
        getattr(layer.self_attn, name).variance_epsilon
        for layer in twin.model.layers
        for name in ("q_a_layernorm", "kv_a_layernorm")
        if hasattr(layer.self_attn, name)
    )
    set_eps(loaded, twin.model.norm.variance_epsilon, latent)


# ---- one device vs a layout on 2 gloo processes (titan_layout.py through dsv3_layout.py) -----------------

MAX_NORM = titan_case.MAX_NORM


def one_device(seed: int = 3) -> dict:
    """The reference step of this tiny flavor (titan_case.step_on_one_device)."""
    return titan_case.step_on_one_device(tiny_args(), build, seed)


def run_layout(layout: str, reference: dict, folder) -> dict:
    return titan_case.run_layout(layout, reference, folder, script="dsv3_layout.py")


# ---- TorchTitan's own trainer (dsv3_train.py) ---------------------------------------------------------------

FLAVOR = "atebench_tiny"


def trainer_args(assets: str, data: str, dump: str, steps: int = 3) -> list[str]:
    args = titan_case.trainer_args(assets, data, dump, steps)
    args[args.index("--model.name") + 1] = "deepseek_v3"
    args[args.index("--model.flavor") + 1] = FLAVOR
    return args


def run_trainer(nproc: int, args: list[str], extra: list[str] = ()) -> list[tuple[int, float, float]]:
    return titan_case.run_trainer(nproc, args, extra, script="dsv3_train.py")
