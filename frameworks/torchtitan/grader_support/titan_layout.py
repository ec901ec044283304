"""One training step of the tiny Qwen3-MoE (titan_case.py) under a TorchTitan layout, through the model's own
parallelize_fn and TorchTitan's clip_grad_norm_; rank 0 writes the loss, full gradients before and after clipping,
per-rank clip norms, and each rank's local rows of the first MoE layer's routed-expert weight w1 (their count and
values).
With a 4th argument "step", it then takes one step of TorchTitan's MoE load-balancing optimizer
(build_optimizers_with_moe_load_balancing) and writes each rank's expert biases too.
Usage (torchrun with LAYOUTS[layout][0] processes): titan_layout.py <layout> <folder with in.pt> <max_norm> [step]

Where it runs: on CPU with gloo (the CPU shims of titan_cpu.py on) unless ATEBENCH_TITAN_DEVICE=cuda: then each
rank takes cuda:<local rank> and NCCL, and the shims stay inert (each acts on CPU tensors or gloo groups only).
ATEBENCH_TITAN_GROUPED_MM=1 runs the experts through torch._grouped_mm (bf16, the GPU path TorchTitan trains
with) instead of the fp32 for-loop. TF32 is off: fp32 runs compare up to summation order.

Loss convention is TorchTitan's: local cross-entropy sum over the global token count, FSDP division off.
"""

import os
import sys
from pathlib import Path

import titan_case
import titan_case as case  # the model's case module: a task's own runner swaps it (dsv3_layout.py)
import torch
import torch.distributed as dist
from torchtitan.config import JobConfig
from torchtitan.distributed import ParallelDims
from torchtitan.distributed import utils as dist_utils

LAYOUTS = {  # name: (world size, expert-parallel degree); the rest of the world shards the data (FSDP)
    "one": (1, 1),
    "dp2": (2, 1),
    "ep2": (2, 2),
    "dp4": (4, 1),
    "ep4": (4, 4),
    "ep2-efsdp2": (4, 2),  # experts split over 2 ranks and FSDP-sharded over the other 2
}


def full(tensor):
    tensor = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
    return tensor.cpu() if hasattr(tensor, "cpu") else tensor


def main(layout: str, folder: Path, max_norm: float, step: bool) -> None:
    device = titan_case.init_distributed(cuda=os.environ.get("ATEBENCH_TITAN_DEVICE", "cpu") == "cuda")
    rank, world = dist.get_rank(), dist.get_world_size()
    want_world, ep = LAYOUTS[layout]
    assert world == want_world, f"layout {layout} runs on {want_world} processes, torchrun started {world}"
    data = torch.load(folder / "in.pt")
    grouped = os.environ.get("ATEBENCH_TITAN_GROUPED_MM") == "1"
    args = case.tiny_args(grouped_mm=True) if grouped else case.tiny_args()
    model = case.build(args, seed=3)
    model.load_state_dict(data["state"])
    model = model.to(device)
    dims = ParallelDims(dp_replicate=1, dp_shard=-1, cp=1, tp=1, pp=1, ep=ep, etp=1, world_size=world)
    job = JobConfig()
    job.training.seq_len = case.SEQ
    job.training.mixed_precision_param = "float32"
    job.training.mixed_precision_reduce = "float32"
    job.activation_checkpoint.mode = "none"
    job.parallelism.expert_parallel_degree = ep
    model = case.spec().parallelize_fn(model, dims, job)

    tokens, labels = data["tokens"].to(device), data["labels"].to(device)
    rows = tokens.shape[0] // world
    mine = slice(rank * rows, (rank + 1) * rows)
    loss = case.ce_sum(model(tokens[mine]), labels[mine]) / labels.numel()
    loss.backward()
    grads = {name: full(p.grad).detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    norm = dist_utils.clip_grad_norm_(
        [p for p in model.parameters()], max_norm, foreach=True, pp_mesh=None, ep_enabled=dims.ep_enabled
    )
    clipped = {name: full(p.grad).detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    # the first MoE layer (layer 0 in qwen3; deepseek_v3 starts with dense layers)
    expert_names = [n for n, _ in model.named_parameters() if n.endswith("experts.w1")][:1]
    experts = [dict(model.named_parameters())[n] for n in expert_names]
    local_rows = experts[0].to_local().shape[0] if experts and hasattr(experts[0], "to_local") else -1
    local_w1 = experts[0].to_local().detach().cpu().clone() if experts and hasattr(experts[0], "to_local") else None

    biases = {}
    if step:
        from torchtitan.components.optimizer import build_optimizers_with_moe_load_balancing

        optimizers = build_optimizers_with_moe_load_balancing([model], job.optimizer, dims)
        optimizers.step()
        biases = {n: full(b).detach().clone() for n, b in model.named_buffers() if n.endswith("expert_bias")}

    total = loss.detach().clone()
    dist.all_reduce(total)
    norms, expert_rows = [None] * world, [None] * world
    dist.all_gather_object(norms, full(norm).item())
    dist.all_gather_object(expert_rows, local_rows)
    bias_per_rank, w1_per_rank = [None] * world, [None] * world
    dist.all_gather_object(bias_per_rank, biases)
    dist.all_gather_object(w1_per_rank, local_w1)
    if rank == 0:
        torch.save(
            {
                "loss": total.item(),
                "grads": grads,
                "clipped": clipped,
                "norms": norms,
                "expert_rows": expert_rows,
                "expert_w1_name": expert_names[0] if expert_names else None,
                "expert_w1_per_rank": w1_per_rank,
                "expert_bias": bias_per_rank,
            },
            folder / "out.pt",
        )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4:] == ["step"])
