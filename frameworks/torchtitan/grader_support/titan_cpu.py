"""Test-side shims that let TorchTitan v0.2.2's MoE models and FSDP2/EP run on CPU with gloo.

They patch torch and TorchTitan in this process only and never touch the checkout: the agent's tree stays
the GPU code it would ship. Each shim names the CUDA-only spot it stands in for.
"""

from __future__ import annotations

import functools
import inspect

import torch

_installed = False


def install() -> None:
    """Idempotent; call before building a model or a device mesh."""
    global _installed
    if _installed:
        return
    _installed = True

    # 1. torch.histc has no int64 kernel on CPU; the router and the token reorderer count tokens per
    #    expert with it on integer expert ids.
    histc = torch.histc

    @functools.wraps(histc)
    def histc_any(input, *args, **kwargs):
        if input.device.type == "cpu" and not input.is_floating_point():
            return histc(input.float(), *args, **kwargs).to(input.dtype)  # CUDA keeps the input's dtype
        return histc(input, *args, **kwargs)

    torch.histc = histc_any

    # 2. The grouped-GEMM padding launches a Triton kernel; the same module ships a CPU version.
    from torchtitan.models.moe import kernels

    triton_fill = kernels.fill_indices_wrapper

    @functools.wraps(triton_fill)
    def fill_indices(
        tokens_per_expert_group,
        start_index_values,
        write_offsets,
        experts_per_rank,
        num_ranks,
        max_len,
        *args,
        **kwargs,
    ):
        if tokens_per_expert_group.device.type == "cpu":
            return kernels.fill_indices_cpu(
                tokens_per_expert_group, start_index_values, write_offsets, experts_per_rank, num_ranks, max_len
            )
        return triton_fill(
            tokens_per_expert_group,
            start_index_values,
            write_offsets,
            experts_per_rank,
            num_ranks,
            max_len,
            *args,
            **kwargs,
        )

    kernels.fill_indices_wrapper = fill_indices

    # 3. Without an accelerator TorchTitan still names "cuda" as its device, and meshes would ask for it.
    from torchtitan.distributed import parallel_dims
    from torchtitan.tools import utils

    if not torch.cuda.is_available():
        parallel_dims.device_type = "cpu"
        utils.device_type, utils.device_module = "cpu", torch.cpu

    # 4. Gloo has no PREMUL_SUM/AVG reductions: FSDP2 must reduce with SUM there. Exact for TorchTitan,
    #    which disables FSDP's gradient division (divide factor 1).
    from torch.distributed.fsdp._fully_shard import _fsdp_collectives as collectives

    divide_factors = collectives._get_gradient_divide_factors

    signature = inspect.signature(divide_factors)

    @functools.wraps(divide_factors)
    def sum_on_gloo(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        group = bound.arguments.get("reduce_scatter_group") or bound.arguments.get("all_reduce_group")
        if group is not None and torch.distributed.get_backend(group) == "gloo":
            bound.arguments["force_sum_reduction_for_comms"] = True
        return divide_factors(*bound.args, **bound.kwargs)

    collectives._get_gradient_divide_factors = sum_on_gloo

    # 5. Tensor parallelism shards attention by heads; DTensor has no sharding strategy for the CPU flash
    #    attention (`_scaled_dot_product_flash_attention_for_cpu`), so on CPU the attention of DTensor q, k, v
    #    runs on this rank's heads (each head is independent) and the output is marked with q's placements, as
    #    the CUDA kernels' strategies do. Plain tensors (no TP) take the original path.
    from torch.distributed.tensor import DTensor
    from torchtitan.models import attention

    sdpa_forward = attention.ScaledDotProductAttentionWrapper.forward

    @functools.wraps(sdpa_forward)
    def sdpa_on_local_heads(self, q, k, v, *args, **kwargs):
        if isinstance(q, DTensor) and q.device.type == "cpu":
            out = sdpa_forward(self, q.to_local(), k.to_local(), v.to_local(), *args, **kwargs)
            return DTensor.from_local(out, q.device_mesh, q.placements, run_check=False)
        return sdpa_forward(self, q, k, v, *args, **kwargs)

    attention.ScaledDotProductAttentionWrapper.forward = sdpa_on_local_heads
