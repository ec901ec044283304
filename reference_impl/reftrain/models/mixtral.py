"""Mixtral (e.g. Mixtral-8x7B), named and shaped like transformers' `modeling_mixtral.py`.

A transformers state_dict loads into `MixtralForCausalLM` with `load_state_dict(strict=True)`. Hub
checkpoints name the MoE block `block_sparse_moe` and experts `w1/w3/w2`; reftrain.hf_checkpoint
translates that layout.
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
class MixtralConfig:
    """The fields of an HF Mixtral config.json this model uses (HF names and defaults)."""

    model_type: ClassVar[str] = "mixtral"
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 14336
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = 8
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 4096 * 32
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    rope_parameters: dict = field(default_factory=lambda: {"rope_type": "default", "rope_theta": 1e6})
    sliding_window: int | None = None
    num_experts_per_tok: int = 2
    num_local_experts: int = 8
    router_aux_loss_coef: float = 0.001
    router_jitter_noise: float = 0.0
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2

    def __post_init__(self):
        self.head_dim = self.head_dim or self.hidden_size // self.num_attention_heads
        self.num_key_value_heads = self.num_key_value_heads or self.num_attention_heads
        require(self.hidden_act == "silu", f"mixtral: hidden_act={self.hidden_act!r} is not supported; use 'silu'")

    @classmethod
    def from_dict(cls, d: dict) -> "MixtralConfig":
        return read_hf_config(cls, d, aliases={"num_local_experts": ("num_experts",)}, default_theta=1e6)

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, "architectures": ["MixtralForCausalLM"], **asdict(self)}


class MixtralAttention(nn.Module):
    def __init__(self, config: MixtralConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.sliding_window = config.sliding_window
        heads, kv_heads, hidden = config.num_attention_heads, config.num_key_value_heads, config.hidden_size
        self.q_proj = nn.Linear(hidden, heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(heads * self.head_dim, hidden, bias=False)

    def forward(self, hidden_states, position_embeddings, cache=None, reference=False):
        heads_shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        q = self.q_proj(hidden_states).view(heads_shape).transpose(1, 2)
        k = self.k_proj(hidden_states).view(heads_shape).transpose(1, 2)
        v = self.v_proj(hidden_states).view(heads_shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *position_embeddings)
        if cache is not None:
            k, v = cache.update(k, v)
        return self.o_proj(attention(q, k, v, self.scaling, self.sliding_window, reference))


class MixtralTopKRouter(nn.Module):
    """Softmax over all experts, top-k, always renormalised over the chosen k."""

    def __init__(self, config: MixtralConfig):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.weight = nn.Parameter(torch.empty(config.num_local_experts, config.hidden_size))

    def forward(self, hidden_states):
        router_logits = F.linear(hidden_states, self.weight)
        probs = torch.softmax(router_logits.float(), dim=-1)
        top_k_weights, top_k_index = torch.topk(probs, self.top_k, dim=-1)
        return router_logits, top_k_weights / top_k_weights.sum(dim=-1, keepdim=True), top_k_index


class MixtralSparseMoeBlock(nn.Module):
    def __init__(self, config: MixtralConfig):
        super().__init__()
        self.jitter_noise = config.router_jitter_noise
        self.gate = MixtralTopKRouter(config)
        self.experts = GroupedExperts(config.num_local_experts, config.hidden_size, config.intermediate_size)
        self.aux_loss_scale: float = 0.0
        self.last_aux_loss = None

    def forward(self, hidden_states, reference=False):
        if self.training and self.jitter_noise > 0:
            noise = torch.empty_like(hidden_states).uniform_(1.0 - self.jitter_noise, 1.0 + self.jitter_noise)
            hidden_states = hidden_states * noise
        x = hidden_states.reshape(-1, hidden_states.shape[-1])
        router_logits, top_k_weights, top_k_index = self.gate(x)
        experts = self.experts.reference_forward if reference else self.experts
        out = experts(x, top_k_index, top_k_weights).view_as(hidden_states)
        aux = load_balancing_loss(router_logits, top_k_index, self.experts.num_experts)
        self.last_aux_loss = aux.detach()
        return AuxLossBackward.apply(out, aux, self.aux_loss_scale)


class MixtralDecoderLayer(nn.Module):
    def __init__(self, config: MixtralConfig, layer_idx: int):
        super().__init__()
        self.self_attn = MixtralAttention(config, layer_idx)
        self.mlp = MixtralSparseMoeBlock(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, position_embeddings, cache=None, reference=False):
        attn = self.self_attn(self.input_layernorm(hidden_states), position_embeddings, cache, reference)
        hidden_states = hidden_states + attn
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states), reference)

    def reference_forward(self, hidden_states, position_embeddings, cache=None):
        return self.forward(hidden_states, position_embeddings, cache, reference=True)


class MixtralModel(nn.Module):
    def __init__(self, config: MixtralConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleDict({str(i): MixtralDecoderLayer(config, i) for i in range(config.num_hidden_layers)})
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


class MixtralForCausalLM(nn.Module):
    def __init__(self, config: MixtralConfig):
        super().__init__()
        self.config = config
        self.model = MixtralModel(config)
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
