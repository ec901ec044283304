"""DeepSeek-V2 (e.g. DeepSeek-V2-Lite), named and shaped like transformers' `modeling_deepseek_v2.py`.

Multi-head latent attention (MLA): keys and values are rebuilt from a small latent (`kv_lora_rank`)
plus one shared rotary key; the KV cache holds that latent. MoE layers add `n_shared_experts` dense
experts to the routed ones; the first `first_k_dense_replace` layers are dense.
"""

from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from reftrain.models.common import (
    RMSNorm,
    RotaryEmbedding,
    apply_rotary_interleaved,
    attention,
    init_weights,
    read_hf_config,
    require,
    yarn_mscale,
)
from reftrain.moe import AuxLossBackward, GroupedExperts, load_balancing_loss

LATENT_NORM_EPS = 1e-6  # transformers and DeepSeek build q_a_layernorm / kv_a_layernorm with the default eps


@dataclass
class DeepseekV2Config:
    """The fields of an HF DeepSeek-V2 config.json this model uses (HF names and defaults)."""

    model_type: ClassVar[str] = "deepseek_v2"
    vocab_size: int = 102400
    hidden_size: int = 4096
    intermediate_size: int = 11008
    moe_intermediate_size: int = 1407
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    n_shared_experts: int | None = 2
    n_routed_experts: int = 64
    routed_scaling_factor: float = 1.0
    kv_lora_rank: int = 512
    q_lora_rank: int | None = 1536
    qk_rope_head_dim: int = 64
    qk_nope_head_dim: int = 128
    v_head_dim: int = 128
    topk_method: str = "greedy"
    n_group: int | None = None
    topk_group: int | None = None
    num_experts_per_tok: int | None = None
    moe_layer_freq: int = 1
    first_k_dense_replace: int = 0
    norm_topk_prob: bool = False
    scoring_func: str = "softmax"
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    rope_parameters: dict = field(default_factory=lambda: {"rope_type": "default", "rope_theta": 10000.0})
    attention_bias: bool = False
    mlp_bias: bool = False
    aux_loss_alpha: float = 0.001
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2

    def __post_init__(self):
        where = "deepseek_v2 config"
        require(self.hidden_act == "silu", f"{where}: hidden_act={self.hidden_act!r} is not supported; use 'silu'")
        require(self.num_experts_per_tok is not None, f"{where}: set num_experts_per_tok (experts per token)")
        require(self.scoring_func == "softmax", f"{where}: scoring_func must be 'softmax' (sigmoid is DeepSeek-V3)")
        require(
            self.topk_method in ("greedy", "group_limited_greedy"),
            f"{where}: topk_method={self.topk_method!r}; use 'greedy' or 'group_limited_greedy'",
        )
        require(
            self.topk_method == "greedy" or (self.n_group and self.topk_group),
            f"{where}: topk_method 'group_limited_greedy' needs n_group and topk_group",
        )
        require(not self.norm_topk_prob, f"{where}: norm_topk_prob=true is not supported (transformers ignores it)")

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @classmethod
    def from_dict(cls, d: dict) -> "DeepseekV2Config":
        return read_hf_config(cls, d, aliases={"n_routed_experts": ("num_experts",)})

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, "architectures": ["DeepseekV2ForCausalLM"], **asdict(self)}

    def is_sparse(self, layer_idx: int) -> bool:
        return layer_idx >= self.first_k_dense_replace and layer_idx % self.moe_layer_freq == 0


class DeepseekV2Attention(nn.Module):
    """MLA: q from a (optionally low-rank) projection; k/v from a compressed latent plus a shared rope key."""

    def __init__(self, config: DeepseekV2Config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.q_lora_rank = config.q_lora_rank
        self.kv_lora_rank = config.kv_lora_rank
        self.qk_rope_head_dim = config.qk_rope_head_dim
        self.qk_nope_head_dim = config.qk_nope_head_dim
        self.v_head_dim = config.v_head_dim
        self.qk_head_dim = config.qk_head_dim
        hidden, bias = config.hidden_size, config.attention_bias
        if self.q_lora_rank is None:
            self.q_proj = nn.Linear(hidden, self.num_heads * self.qk_head_dim, bias=False)
        else:
            self.q_a_proj = nn.Linear(hidden, self.q_lora_rank, bias=bias)
            self.q_a_layernorm = RMSNorm(self.q_lora_rank, eps=LATENT_NORM_EPS)
            self.q_b_proj = nn.Linear(self.q_lora_rank, self.num_heads * self.qk_head_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(hidden, self.kv_lora_rank + self.qk_rope_head_dim, bias=bias)
        self.kv_a_layernorm = RMSNorm(self.kv_lora_rank, eps=LATENT_NORM_EPS)
        self.kv_b_proj = nn.Linear(
            self.kv_lora_rank, self.num_heads * (self.qk_nope_head_dim + self.v_head_dim), bias=False
        )
        self.o_proj = nn.Linear(self.num_heads * self.v_head_dim, hidden, bias=bias)
        self.scaling = self.qk_head_dim**-0.5
        rope = config.rope_parameters
        if rope["rope_type"] != "default" and rope.get("mscale_all_dim"):
            self.scaling *= yarn_mscale(rope["factor"], rope["mscale_all_dim"]) ** 2

    def forward(self, hidden_states, position_embeddings, cache=None, reference=False):
        batch, seq = hidden_states.shape[:-1]
        if self.q_lora_rank is None:
            q = self.q_proj(hidden_states)
        else:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(hidden_states)))
        q = q.view(batch, seq, -1, self.qk_head_dim).transpose(1, 2)
        q_nope, q_pe = q.split([self.qk_nope_head_dim, self.qk_rope_head_dim], dim=-1)
        latent, k_pe = self.kv_a_proj_with_mqa(hidden_states).split([self.kv_lora_rank, self.qk_rope_head_dim], dim=-1)
        latent = self.kv_a_layernorm(latent).view(batch, 1, seq, self.kv_lora_rank)
        k_pe = k_pe.view(batch, 1, seq, self.qk_rope_head_dim)
        cos, sin = position_embeddings
        q_pe, k_pe = apply_rotary_interleaved(q_pe, cos, sin), apply_rotary_interleaved(k_pe, cos, sin)
        if cache is not None:
            latent, k_pe = cache.update(latent, k_pe)
        kv = self.kv_b_proj(latent.squeeze(1)).view(batch, latent.shape[2], -1, self.qk_nope_head_dim + self.v_head_dim)
        k_nope, v = kv.transpose(1, 2).split([self.qk_nope_head_dim, self.v_head_dim], dim=-1)
        k = torch.cat((k_nope, k_pe.expand(-1, self.num_heads, -1, -1)), dim=-1)
        q = torch.cat((q_nope, q_pe), dim=-1)
        return self.o_proj(attention(q, k, v, self.scaling, None, reference))


class DeepseekV2MLP(nn.Module):
    def __init__(self, config: DeepseekV2Config, intermediate_size: int | None = None):
        super().__init__()
        hidden, inter = config.hidden_size, intermediate_size or config.intermediate_size
        self.gate_proj = nn.Linear(hidden, inter, bias=config.mlp_bias)
        self.up_proj = nn.Linear(hidden, inter, bias=config.mlp_bias)
        self.down_proj = nn.Linear(inter, hidden, bias=config.mlp_bias)

    def forward(self, x, reference=False):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DeepseekV2TopkRouter(nn.Module):
    """fp32 softmax, top-k (optionally only within the best `topk_group` of `n_group` groups), scaled."""

    def __init__(self, config: DeepseekV2Config):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.num_experts = config.n_routed_experts
        self.routed_scaling_factor = config.routed_scaling_factor
        self.topk_method = config.topk_method
        self.num_group = config.n_group
        self.topk_group = config.topk_group
        self.weight = nn.Parameter(torch.zeros(config.n_routed_experts, config.hidden_size))

    def forward(self, hidden_states):
        router_logits = F.linear(hidden_states.float(), self.weight.float())
        scores = router_logits.softmax(dim=-1, dtype=torch.float32)
        if self.topk_method == "group_limited_greedy":
            grouped = scores.view(-1, self.num_group, self.num_experts // self.num_group)
            group_idx = torch.topk(grouped.max(dim=-1).values, k=self.topk_group, dim=-1, sorted=False)[1]
            group_mask = torch.zeros_like(grouped[..., 0]).scatter_(1, group_idx, 1)
            scores = (grouped * group_mask.unsqueeze(-1)).view(-1, self.num_experts)
        top_k_weights, top_k_index = torch.topk(scores, k=self.top_k, dim=-1, sorted=False)
        return router_logits, top_k_weights * self.routed_scaling_factor, top_k_index


class DeepseekV2Moe(nn.Module):
    def __init__(self, config: DeepseekV2Config):
        super().__init__()
        self.gate = DeepseekV2TopkRouter(config)
        self.experts = GroupedExperts(config.n_routed_experts, config.hidden_size, config.moe_intermediate_size)
        self.shared_experts = None
        if config.n_shared_experts:
            self.shared_experts = DeepseekV2MLP(config, config.moe_intermediate_size * config.n_shared_experts)
        self.aux_loss_scale: float = 0.0
        self.last_aux_loss = None

    def forward(self, hidden_states, reference=False):
        x = hidden_states.reshape(-1, hidden_states.shape[-1])
        router_logits, top_k_weights, top_k_index = self.gate(x)
        experts = self.experts.reference_forward if reference else self.experts
        out = experts(x, top_k_index, top_k_weights).view_as(hidden_states)
        if self.shared_experts is not None:
            out = out + self.shared_experts(hidden_states)
        aux = load_balancing_loss(router_logits, top_k_index, self.experts.num_experts)
        self.last_aux_loss = aux.detach()
        return AuxLossBackward.apply(out, aux, self.aux_loss_scale)


class DeepseekV2DecoderLayer(nn.Module):
    def __init__(self, config: DeepseekV2Config, layer_idx: int):
        super().__init__()
        self.self_attn = DeepseekV2Attention(config, layer_idx)
        self.mlp = DeepseekV2Moe(config) if config.is_sparse(layer_idx) else DeepseekV2MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, position_embeddings, cache=None, reference=False):
        attn = self.self_attn(self.input_layernorm(hidden_states), position_embeddings, cache, reference)
        hidden_states = hidden_states + attn
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states), reference)

    def reference_forward(self, hidden_states, position_embeddings, cache=None):
        return self.forward(hidden_states, position_embeddings, cache, reference=True)


class DeepseekV2Model(nn.Module):
    def __init__(self, config: DeepseekV2Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleDict(
            {str(i): DeepseekV2DecoderLayer(config, i) for i in range(config.num_hidden_layers)}
        )
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(
            config.qk_rope_head_dim, config.rope_parameters, config.max_position_embeddings
        )

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


class DeepseekV2ForCausalLM(nn.Module):
    def __init__(self, config: DeepseekV2Config):
        super().__init__()
        self.config = config
        self.model = DeepseekV2Model(config)
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
