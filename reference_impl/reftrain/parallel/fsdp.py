"""FSDP2: expert weights sharded over dp, everything else over dp x ep.

Why SUM reduction (divide factor 1): the loss of every micro-batch is already divided by the step's
global token count, so each rank's gradient is its exact share of the global gradient and the shares
must be added, not averaged. Expert gradients already hold every ep rank's tokens (the all-to-all
backward brought them home), so they are reduced over dp only.
"""

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from reftrain.parallel.expert_parallel import grouped_experts
from reftrain.parallel.mesh import Mesh


def apply_fsdp(model: nn.Module, mesh: Mesh, param_dtype: torch.dtype | None = None) -> None:
    """Shard `model` in place (no-op on a single data rank). `param_dtype` is the compute dtype."""
    if mesh.dp * mesh.ep == 1:
        return
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for layer in model.model.layers.values():
        for experts in grouped_experts(layer):
            fully_shard(experts, mesh=mesh.dp_mesh, mp_policy=policy)
        fully_shard(layer, mesh=mesh.dp_ep_mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh.dp_ep_mesh, mp_policy=policy, reshard_after_forward=False)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # plain SUM: gloo has no PREMUL_SUM
