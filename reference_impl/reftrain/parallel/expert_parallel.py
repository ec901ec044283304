"""Expert parallelism: each ep rank keeps a contiguous slice of every MoE layer's experts.

Why slicing the parameters (not wrapping them): `GroupedExperts` already dispatches tokens to the
owning rank when `ep_group` is set, so sharding is just "keep my rows, remember my offset".
"""

from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from reftrain.moe import GroupedExperts


def grouped_experts(model: nn.Module) -> list[GroupedExperts]:
    return [m for m in model.modules() if isinstance(m, GroupedExperts)]


def shard_experts(model: nn.Module, ep_mesh: DeviceMesh) -> None:
    """Keep experts [rank * E/ep, (rank + 1) * E/ep) of every layer; works on meta or real tensors."""
    ep, rank = ep_mesh.size(), ep_mesh.get_local_rank()
    for experts in grouped_experts(model):
        if experts.num_experts % ep:
            raise ValueError(f"{experts.num_experts} experts cannot be split over ep = {ep}; choose ep dividing it")
        n = experts.num_experts // ep
        offset = rank * n
        for name in ("gate_up_proj", "down_proj"):
            full = getattr(experts, name)
            setattr(experts, name, nn.Parameter(full.detach()[offset : offset + n].clone()))
        experts.expert_offset = offset
        experts.ep_group = ep_mesh.get_group() if ep > 1 else None


def is_expert_param(name: str) -> bool:
    """True for the stacked expert weights (HF names `...mlp.experts.gate_up_proj` / `down_proj`)."""
    return ".experts.gate_up_proj" in name or ".experts.down_proj" in name
