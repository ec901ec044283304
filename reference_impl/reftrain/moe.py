"""Routed experts shared by every MoE model: token permutation, expert parallelism, expert GEMMs.

Why one file: the models differ in how they *route* (softmax then top-k, top-k then softmax,
group-limited top-k with scaling), not in how routed tokens reach their experts. Each model's sparse
block computes `(top_k_index, top_k_weights)` itself and calls `GroupedExperts`.

Weight layout is Hugging Face's (transformers >= 5): `gate_up_proj` [E, 2*I, H] and `down_proj`
[E, H, I]. With expert parallelism a rank holds the contiguous slice of experts
`[expert_offset, expert_offset + num_local_experts)`.
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class AllToAll(torch.autograd.Function):
    """Uneven all-to-all whose backward sends gradients home along the reverse splits."""

    @staticmethod
    def forward(ctx, x, output_splits, input_splits, group):
        ctx.group, ctx.output_splits, ctx.input_splits = group, output_splits, input_splits
        out = x.new_empty((sum(output_splits), *x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), output_splits, input_splits, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad_in = grad.new_empty((sum(ctx.input_splits), *grad.shape[1:]))
        dist.all_to_all_single(grad_in, grad.contiguous(), ctx.input_splits, ctx.output_splits, group=ctx.group)
        return grad_in, None, None, None


def _local(w):
    """The local shard of a parameter (FSDP2 and EP keep parameters as DTensors)."""
    return w.to_local() if hasattr(w, "to_local") else w


def expert_counts(flat_index, num_experts: int):
    """Rows routed to each expert. Why not `bincount`: on CUDA it reads the max back to the host."""
    return torch.zeros(num_experts, dtype=torch.int64, device=flat_index.device).index_add_(
        0, flat_index, torch.ones_like(flat_index)
    )


def matmul_dtype(x):
    """The dtype the expert GEMMs run in: autocast's when it is on, else the input's.

    Why: autocast does not cover `torch._grouped_mm`, so with fp32 master weights (one GPU, no FSDP)
    the experts would silently fall back to the per-expert loop in fp32.
    """
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def expert_mlp(x, gate_up_proj, down_proj, counts, act_fn=F.silu):
    """SwiGLU of each expert over rows grouped contiguously by expert (`counts[e]` rows for expert e).

    The fast path is one grouped GEMM per projection (CUDA, bf16); the reference path loops.
    """
    dtype = matmul_dtype(x)
    if x.is_cuda and dtype == torch.bfloat16 and hasattr(torch, "_grouped_mm"):
        return expert_mlp_grouped(x.to(dtype), gate_up_proj.to(dtype), down_proj.to(dtype), counts, act_fn)
    return expert_mlp_reference(x, gate_up_proj, down_proj, counts, act_fn)


def expert_mlp_grouped(x, gate_up_proj, down_proj, counts, act_fn=F.silu):
    """`expert_mlp` as two grouped GEMMs (`torch._grouped_mm`); no host sync, so it compiles whole."""
    offs = torch.cumsum(counts, 0, dtype=torch.int32)
    gate, up = torch._grouped_mm(x, gate_up_proj.transpose(-2, -1), offs=offs).chunk(2, dim=-1)
    return torch._grouped_mm(act_fn(gate) * up, down_proj.transpose(-2, -1), offs=offs)


def expert_mlp_reference(x, gate_up_proj, down_proj, counts, act_fn=F.silu):
    """Plain per-expert loop: the numerical oracle for `expert_mlp`."""
    outs = []
    for e, rows in enumerate(x.split(counts.tolist())):
        gate, up = F.linear(rows, gate_up_proj[e]).chunk(2, dim=-1)
        outs.append(F.linear(act_fn(gate) * up, down_proj[e]))
    return torch.cat(outs)


class GroupedExperts(nn.Module):
    """The routed experts of one MoE layer, stored stacked as Hugging Face stores them."""

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int, act_fn=F.silu):
        super().__init__()
        self.num_experts = num_experts
        self.hidden_dim = hidden_size
        self.intermediate_dim = intermediate_size
        self.act_fn = act_fn
        self.gate_up_proj = nn.Parameter(torch.empty(num_experts, 2 * intermediate_size, hidden_size))
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))
        # Set by reftrain.parallel.expert_parallel.shard_experts; None means all experts are local.
        self.ep_group = None
        self.expert_offset = 0

    @property
    def num_local_experts(self) -> int:
        return _local(self.gate_up_proj).shape[0]

    def forward(self, hidden_states, top_k_index, top_k_weights):
        """hidden_states [T, H], top_k_index / top_k_weights [T, K] -> [T, H]."""
        num_tokens, top_k = top_k_index.shape
        flat_index = top_k_index.reshape(-1)
        order = torch.argsort(flat_index, stable=True)  # token copies grouped by expert
        x = hidden_states.to(matmul_dtype(hidden_states))[order // top_k]
        counts = expert_counts(flat_index, self.num_experts)
        if self.ep_group is None:
            y = expert_mlp(x, _local(self.gate_up_proj), _local(self.down_proj), counts, self.act_fn)
        else:
            y = self._expert_parallel_mlp(x, counts)
        y = y[torch.argsort(order)].view(num_tokens, top_k, -1)
        return (y * top_k_weights.unsqueeze(-1).to(y.dtype)).sum(dim=1)

    def _expert_parallel_mlp(self, x, counts):
        """Dispatch rows to the ranks that own their experts, run them, and combine back."""
        group = self.ep_group
        ep = dist.get_world_size(group)
        n_local = self.num_local_experts
        counts_received = torch.empty_like(counts)
        dist.all_to_all_single(counts_received, counts, group=group)
        input_splits, output_splits = torch.stack((counts, counts_received)).view(2, ep, n_local).sum(2).tolist()
        received = AllToAll.apply(x, output_splits, input_splits, group)
        # Received rows are ordered (source rank, local expert); regroup them by local expert.
        local_expert = torch.arange(n_local, device=counts.device).repeat(ep)
        row_expert = local_expert.repeat_interleave(counts_received, output_size=sum(output_splits))
        local_order = torch.argsort(row_expert, stable=True)
        local_counts = counts_received.view(ep, n_local).sum(0)
        y = expert_mlp(
            received[local_order], _local(self.gate_up_proj), _local(self.down_proj), local_counts, self.act_fn
        )
        y = y[torch.argsort(local_order)]
        return AllToAll.apply(y, input_splits, output_splits, group)

    def reference_forward(self, hidden_states, top_k_index, top_k_weights):
        """Hugging Face's eager loop (no permutation, no EP): what tests compare `forward` against."""
        out = torch.zeros_like(hidden_states)
        gate_up_proj, down_proj = _local(self.gate_up_proj), _local(self.down_proj)
        for e in range(self.num_local_experts):
            token_idx, k_pos = torch.where(top_k_index == e + self.expert_offset)
            if token_idx.numel() == 0:
                continue
            gate, up = F.linear(hidden_states[token_idx], gate_up_proj[e]).chunk(2, dim=-1)
            y = F.linear(self.act_fn(gate) * up, down_proj[e]) * top_k_weights[token_idx, k_pos, None]
            out.index_add_(0, token_idx, y.to(out.dtype))
        return out


def load_balancing_loss(router_logits, top_k_index, num_experts: int):
    """Switch-Transformer auxiliary loss of one layer on the tokens at hand: E * sum_e f_e * P_e.

    f_e is the fraction of routed token copies sent to expert e, P_e the mean router probability.
    Unlike transformers (which pools all layers before multiplying) it is per layer, so it works
    inside one pipeline stage; the trainer averages it over layers.
    """
    probs = torch.softmax(router_logits.float(), dim=-1)
    fraction = expert_counts(top_k_index.reshape(-1), num_experts).float() / top_k_index.numel()
    return num_experts * (fraction * probs.mean(dim=0)).sum()


class AuxLossBackward(torch.autograd.Function):
    """Returns `hidden` unchanged and, on backward, adds `scale * d(aux)`.

    Why: the aux loss then needs no path of its own through pipeline stages; its gradient rides the
    hidden states' backward (the same device Megatron-LM uses).
    """

    @staticmethod
    def forward(ctx, hidden, aux, scale: float):
        ctx.scale = scale
        ctx.save_for_backward(aux)
        return hidden.view_as(hidden)

    @staticmethod
    def backward(ctx, grad):
        (aux,) = ctx.saved_tensors
        return grad, torch.full_like(aux, ctx.scale), None
