"""Pieces the model files share: HF config reading, RMSNorm, rotary embeddings, attention, init.

Why shared: these are identical across Qwen3-MoE, Mixtral and DeepSeek-V2 in Hugging Face too; what
differs per model (attention projections, routing) stays in the model's own file.
"""

import math
import zlib
from dataclasses import fields

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED_ROPE_TYPES = ("default", "linear", "yarn")


def read_hf_config(cls, d: dict, aliases: dict[str, tuple[str, ...]] | None = None, default_theta: float = 10000.0):
    """Build the dataclass `cls` from an HF config.json dict: every field by its HF name (or an alias).

    Keys the model does not use (torch_dtype, use_cache, ...) are ignored. RoPE is normalised to
    transformers-5 `rope_parameters` whether the file has that or the older rope_theta/rope_scaling.
    """
    aliases = aliases or {}
    values = {}
    for f in fields(cls):
        for key in (f.name, *aliases.get(f.name, ())):
            if key in d:
                values[f.name] = d[key]
                break
    values["rope_parameters"] = rope_parameters_from_hf(d, default_theta)
    return cls(**values)


def rope_parameters_from_hf(d: dict, default_theta: float) -> dict:
    params = dict(d.get("rope_parameters") or d.get("rope_scaling") or {})
    params.setdefault("rope_type", params.pop("type", "default"))
    params.setdefault("rope_theta", d.get("rope_theta") or default_theta)
    if params["rope_type"] not in SUPPORTED_ROPE_TYPES:
        raise ValueError(
            f"rope type {params['rope_type']!r} in the model config is not supported; "
            f"use one of {SUPPORTED_ROPE_TYPES} or add it to reftrain/models/common.py:rope_inv_freq"
        )
    if params["rope_type"] == "yarn":
        params.setdefault("original_max_position_embeddings", d.get("max_position_embeddings"))
    return params


def require(condition: bool, message: str):
    """One clear error for a config value the model cannot honour."""
    if not condition:
        raise ValueError(message)


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32, scaled in the input dtype, exactly as transformers does."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        dtype = hidden_states.dtype
        x = hidden_states.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


def rope_inv_freq(dim: int, params: dict, max_position_embeddings: int) -> tuple[torch.Tensor, float]:
    """Inverse frequencies (CPU fp32) and cos/sin scale for a `rope_parameters` dict (default, linear, yarn)."""
    base = float(params["rope_theta"])
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim
    inv_freq = 1.0 / (base**exponents)
    if params["rope_type"] == "linear":
        return inv_freq / params["factor"], 1.0
    if params["rope_type"] == "default":
        return inv_freq, 1.0
    factor = params.get("factor") or max_position_embeddings / params["original_max_position_embeddings"]
    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = params.get("mscale"), params.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = yarn_mscale(factor)
    original = params["original_max_position_embeddings"]

    def correction_dim(rotations):
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(params.get("beta_fast") or 32), correction_dim(params.get("beta_slow") or 1)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32, device="cpu") - low) / (high - low), 0, 1)
    extrapolation = 1 - ramp
    inv_freq = (inv_freq / factor) * (1 - extrapolation) + inv_freq * extrapolation
    return inv_freq, float(attention_factor)


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


class RotaryEmbedding(nn.Module):
    """cos/sin tables for positions; `inv_freq` is a plain CPU tensor, not a buffer.

    Why not a buffer: models are built on the meta device and materialised with `to_empty`, which
    would leave a buffer uninitialised; a plain attribute survives and is moved per call.
    """

    def __init__(self, dim: int, rope_parameters: dict, max_position_embeddings: int):
        super().__init__()
        self.inv_freq, self.attention_scaling = rope_inv_freq(dim, rope_parameters, max_position_embeddings)

    def forward(self, positions, device):
        freqs = positions.to(device).float()[:, None] * self.inv_freq.to(device)
        return freqs.cos() * self.attention_scaling, freqs.sin() * self.attention_scaling


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    """Half-split RoPE (Llama, Qwen, Mixtral): cos/sin are [S, D/2], q/k are [B, heads, S, D]."""
    cos, sin = torch.cat((cos, cos), -1).to(q.dtype), torch.cat((sin, sin), -1).to(q.dtype)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def apply_rotary_interleaved(x, cos, sin):
    """Interleaved-pair RoPE (DeepSeek), in fp32 like transformers' complex product, without complex dtypes."""
    pairs = x.float().unflatten(-1, (-1, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    return out.flatten(-2).type_as(x)


def attention_mask(q_len: int, k_len: int, sliding_window: int | None, device):
    """Boolean [q_len, k_len] mask (True = attend); queries are the last q_len positions of the keys."""
    q_pos = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    k_pos = torch.arange(k_len, device=device)[None, :]
    allowed = k_pos <= q_pos
    if sliding_window is not None:
        allowed = allowed & (q_pos - k_pos < sliding_window)
    return allowed


def attention(q, k, v, scaling: float, sliding_window: int | None = None, reference: bool = False):
    """Causal attention. q [B, Hq, Sq, D], k [B, Hk, Sk, D], v [B, Hk, Sk, Dv] -> [B, Sq, Hq*Dv].

    The fast path is SDPA; `reference=True` is the explicit softmax(QK^T) oracle tests compare against.
    """
    q_len, k_len = q.shape[-2], k.shape[-2]
    plain_causal = q_len == k_len and sliding_window is None
    mask = None if plain_causal else attention_mask(q_len, k_len, sliding_window, q.device)
    if reference:
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * scaling
        scores = scores.masked_fill(~attention_mask(q_len, k_len, sliding_window, q.device), float("-inf"))
        out = torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), v)
    else:
        # MLA's v heads are narrower than its q/k heads. cuDNN attention, SDPA's choice on Hopper, takes that
        # as is; flash attention, its choice before Hopper, needs equal dims, else SDPA falls back to the
        # 4x slower memory-efficient kernel. There, zero columns appended to v give zero output columns,
        # dropped again (timings: benchmarks/NOTES.md).
        v_dim = v.shape[-1]
        if q.is_cuda and v_dim < q.shape[-1] and torch.cuda.get_device_capability(q.device) < (9, 0):
            v = F.pad(v, (0, q.shape[-1] - v_dim))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=plain_causal, scale=scaling, enable_gqa=q.shape[1] != k.shape[1]
        )[..., :v_dim]
    return out.transpose(1, 2).flatten(2)


def init_weights(model: nn.Module, generator_or_seed, std: float):
    """Deterministic init of every parameter: norms 1, biases 0, the rest normal(0, std).

    Each parameter draws from its own generator seeded by (seed, its name), so a pipeline stage that
    deleted other modules, or an expert-parallel rank holding a slice of experts, gets exactly the
    values the full single-device model gets.
    """
    from reftrain.moe import GroupedExperts

    seed = generator_or_seed
    if isinstance(generator_or_seed, torch.Generator):
        seed = int(torch.randint(2**62, (1,), generator=generator_or_seed))
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            name = canonical_name(f"{module_name}.{param_name}" if module_name else param_name)
            shape = tuple(param.shape)
            if isinstance(module, GroupedExperts) and shape[0] < module.num_experts:
                shape = (module.num_experts, *shape[1:])
            with torch.no_grad():
                if isinstance(module, RMSNorm):
                    value = torch.ones(shape, dtype=param.dtype, device=param.device)
                elif param_name == "bias":
                    value = torch.zeros(shape, dtype=param.dtype, device=param.device)
                else:
                    gen = torch.Generator(device=param.device).manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
                    value = torch.empty(shape, dtype=param.dtype, device=param.device).normal_(0.0, std, generator=gen)
                if shape[0] != param.shape[0]:
                    value = value[module.expert_offset : module.expert_offset + param.shape[0]]
                assign_full(param, value)


def canonical_name(name: str) -> str:
    """A parameter's name with wrapper prefixes (activation checkpointing, torch.compile) removed."""
    for wrapper in ("_checkpoint_wrapped_module.", "_orig_mod.", "_fsdp_wrapped_module."):
        name = name.replace(wrapper, "")
    return name


def assign_full(param, value):
    """Copy a full (global) value into a parameter, which may be a DTensor holding only its shard."""
    with torch.no_grad():
        if hasattr(param, "device_mesh"):
            from torch.distributed.tensor import distribute_tensor

            shard = distribute_tensor(value.to(param.device), param.device_mesh, param.placements, src_data_rank=None)
            param.to_local().copy_(shard.to_local())
        else:
            param.copy_(value)
