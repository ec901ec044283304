"""Qwen3-MoE (e.g. Qwen3-30B-A3B), named and shaped like transformers' `modeling_qwen3_moe.py`.

A transformers state_dict loads into `Qwen3MoeForCausalLM` with `load_state_dict(strict=True)`.
"""

from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reftrain.models.common import (
    RMSNorm,
    RotaryEmbedding,
    apply_rotary_pos_emb,
    attention,
    init_weights,
    read_hf_config,
    require,
)
from reftrain.moe import AuxLossBackward, GroupedExperts, load_balancing_loss


@dataclass
class Qwen3MoeConfig:
    """The fields of an HF Qwen3-MoE config.json this model uses (HF names and defaults)."""

    model_type: ClassVar[str] = "qwen3_moe"
    vocab_size: int = 151936
    hidden_size: int = 2048
    intermediate_size: int = 6144
    num_hidden_layers: int = 24
    num_attention_heads: int = 32
    num_key_value_heads: int = 4
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    rope_parameters: dict = field(default_factory=lambda: {"rope_type": "default", "rope_theta": 10000.0})
    attention_bias: bool = False
    use_sliding_window: bool = False
    sliding_window: int | None = None
    decoder_sparse_step: int = 1
    moe_intermediate_size: int = 768
    num_experts_per_tok: int = 8
    num_experts: int = 128
    norm_topk_prob: bool = False
    router_aux_loss_coef: float = 0.001
    mlp_only_layers: list[int] = field(default_factory=list)
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self):
        self.head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
        self.mlp_only_layers = self.mlp_only_layers or []
        require(self.hidden_act == "silu", f"qwen3_moe: hidden_act={self.hidden_act!r} is not supported; use 'silu'")

    @classmethod
    def from_dict(cls, d: dict) -> "Qwen3MoeConfig":
        return read_hf_config(cls, d, aliases={"num_experts": ("num_local_experts",)})

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, "architectures": ["Qwen3MoeForCausalLM"], **asdict(self)}

    def is_sparse(self, layer_idx: int) -> bool:
        return (
            layer_idx not in self.mlp_only_layers
            and self.num_experts > 0
            and (layer_idx + 1) % self.decoder_sparse_step == 0
        )


class Qwen3MoeAttention(nn.Module):
    def __init__(self, config: Qwen3MoeConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.sliding_window = config.sliding_window if config.use_sliding_window else None
        heads, kv_heads, hidden, bias = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.hidden_size,
            config.attention_bias,
        )
        self.q_proj = nn.Linear(hidden, heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(heads * self.head_dim, hidden, bias=bias)
        self.q_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def forward(self, hidden_states, position_embeddings, cache=None, reference=False):
        heads_shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        q = self.q_norm(self.q_proj(hidden_states).view(heads_shape)).transpose(1, 2)
        k = self.k_norm(self.k_proj(hidden_states).view(heads_shape)).transpose(1, 2)
        v = self.v_proj(hidden_states).view(heads_shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *position_embeddings)
        if cache is not None:
            k, v = cache.update(k, v)
        return self.o_proj(attention(q, k, v, self.scaling, self.sliding_window, reference))


class Qwen3MoeMLP(nn.Module):
    def __init__(self, config: Qwen3MoeConfig, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, config.hidden_size, bias=False)

    def forward(self, x, reference=False):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen3MoeTopKRouter(nn.Module):
    """Softmax over all experts, then top-k (optionally renormalised)."""

    def __init__(self, config: Qwen3MoeConfig):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.norm_topk_prob = config.norm_topk_prob
        self.weight = nn.Parameter(torch.zeros(config.num_experts, config.hidden_size))

    def forward(self, hidden_states):
        router_logits = F.linear(hidden_states, self.weight)
        probs = torch.softmax(router_logits, dim=-1, dtype=torch.float)
        top_k_weights, top_k_index = torch.topk(probs, self.top_k, dim=-1)
        if self.norm_topk_prob:
            top_k_weights = top_k_weights / top_k_weights.sum(dim=-1, keepdim=True)
        return router_logits, top_k_weights.to(router_logits.dtype), top_k_index


class Qwen3MoeSparseMoeBlock(nn.Module):
    def __init__(self, config: Qwen3MoeConfig):
        super().__init__()
        self.gate = Qwen3MoeTopKRouter(config)
        self.experts = GroupedExperts(config.num_experts, config.hidden_size, config.moe_intermediate_size)
        self.aux_loss_scale: float = 0.0
        self.last_aux_loss = None

    def forward(self, hidden_states, reference=False):
        x = hidden_states.reshape(-1, hidden_states.shape[-1])
        router_logits, top_k_weights, top_k_index = self.gate(x)
        experts = self.experts.reference_forward if reference else self.experts
        out = experts(x, top_k_index, top_k_weights).view_as(hidden_states)
        aux = load_balancing_loss(router_logits, top_k_index, self.experts.num_experts)
        self.last_aux_loss = aux.detach()
        return AuxLossBackward.apply(out, aux, self.aux_loss_scale)


class Qwen3MoeDecoderLayer(nn.Module):
    def __init__(self, config: Qwen3MoeConfig, layer_idx: int):
        super().__init__()
        self.self_attn = Qwen3MoeAttention(config, layer_idx)
        if config.is_sparse(layer_idx):
            self.mlp = Qwen3MoeSparseMoeBlock(config)
        else:
            self.mlp = Qwen3MoeMLP(config, config.intermediate_size)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, position_embeddings, cache=None, reference=False):
        attn = self.self_attn(self.input_layernorm(hidden_states), position_embeddings, cache, reference)
        hidden_states = hidden_states + attn
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states), reference)

    def reference_forward(self, hidden_states, position_embeddings, cache=None):
        return self.forward(hidden_states, position_embeddings, cache, reference=True)


class Qwen3MoeModel(nn.Module):
    def __init__(self, config: Qwen3MoeConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleDict({str(i): Qwen3MoeDecoderLayer(config, i) for i in range(config.num_hidden_layers)})
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_parameters, config.max_position_embeddings)

    def forward(self, inputs, caches=None, reference=False):
        """`inputs` are token ids [B, S] on the first pipeline stage, hidden states [B, S, H] after it."""
        hidden_states = self.embed_tokens(inputs) if self.embed_tokens is not None else inputs
        start = next(iter(caches.values())).length if caches else 0
        positions = torch.arange(start, start + hidden_states.shape[1])
        position_embeddings = self.rotary_emb(positions, hidden_states.device)
        for name, layer in self.layers.items():
            cache = caches[name] if caches else None
            run = layer.reference_forward if reference else layer
            hidden_states = run(hidden_states, position_embeddings, cache)
        return self.norm(hidden_states) if self.norm is not None else hidden_states


class Qwen3MoeForCausalLM(nn.Module):
    def __init__(self, config: Qwen3MoeConfig):
        super().__init__()
        self.config = config
        self.model = Qwen3MoeModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, inputs, caches=None, reference=False):
        """Logits on the last pipeline stage (lm_head present), hidden states on the others."""
        hidden_states = self.model(inputs, caches, reference)
        return self.lm_head(hidden_states) if self.lm_head is not None else hidden_states

    def reference_forward(self, input_ids, caches=None):
        return self.forward(input_ids, caches, reference=True)

    def init_weights(self, generator_or_seed=0):
        init_weights(self, generator_or_seed, self.config.initializer_range)
