"""One forward/backward step of the tiny Qwen3-MoE (titan_case.py) under tensor parallelism, through the model's
own parallelize_fn, on CUDA GPUs with NCCL; or the same step on one GPU (layout "one"). fp32, the experts'
for-loop path, no loss parallelism, no FSDP, no clipping: every comparison is exact up to summation order.
Every tensor-parallel rank sees the whole batch (data-parallel degree 1).

Layouts: one (1 process), tp2 (tp=2, ep=1: the routed experts are tensor parallel), tp2ep2 (tp=2, ep=2, etp=1:
the experts are spread over the TP ranks, which split the routed tokens between them).
Rank 0 writes out.pt: the loss seen by each rank, every parameter's full gradient, and each rank's local
gradient of every router gate weight in the weight's own placement (Replicate: every rank must hold the same;
a Partial gradient is reduced first, as the optimizer's DTensor ops would).
Usage (torchrun): titan_tp_layout.py one|tp2|tp2ep2 <folder with in.pt>

Loss convention is TorchTitan's: cross-entropy sum over the global token count.
"""

import sys
from pathlib import Path

import titan_case as case
import torch
import torch.distributed as dist
from torchtitan.config import JobConfig
from torchtitan.distributed import ParallelDims

LAYOUTS = {"one": dict(tp=1, ep=1), "tp2": dict(tp=2, ep=1), "tp2ep2": dict(tp=2, ep=2)}
GATE = "router.gate.weight"


def full(tensor):
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def local(tensor):
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def as_placed(grad, param):
    """The gradient in its parameter's placement (what the optimizer applies to this rank's copy): a Partial
    gradient of a replicated parameter is reduced here, a gradient already marked Replicate is left as it is."""
    if hasattr(grad, "redistribute") and tuple(grad.placements) != tuple(param.placements):
        return grad.redistribute(param.device_mesh, param.placements)
    return grad


def job_config(tp: int, ep: int) -> JobConfig:
    job = JobConfig()
    job.training.seq_len = case.SEQ
    job.training.mixed_precision_param = "float32"
    job.training.mixed_precision_reduce = "float32"
    job.activation_checkpoint.mode = "none"
    job.parallelism.tensor_parallel_degree = tp
    job.parallelism.expert_parallel_degree = ep
    job.parallelism.expert_tensor_parallel_degree = 1
    # the logits come back whole (Replicate) so the loss is the same plain cross-entropy as on one device
    job.parallelism.disable_loss_parallel = True
    return job


def setup(layout: str):
    """The process group, this rank's device, and the tiny model (weights from in.pt) parallelized for `layout`."""
    sizes = LAYOUTS[layout]
    device = case.init_distributed(cuda=torch.cuda.is_available())
    world = dist.get_world_size()
    expected = sizes["tp"]
    assert world == expected, f"layout {layout} runs on {expected} process(es), torchrun started {world}"
    model = case.build(case.tiny_args(), seed=3)
    return sizes, device, world, model


def main(layout: str, folder: Path) -> None:
    sizes, device, world, model = setup(layout)
    data = torch.load(folder / "in.pt")
    model.load_state_dict(data["state"])
    model.to(device)
    if layout != "one":
        dims = ParallelDims(
            dp_replicate=1, dp_shard=1, cp=1, tp=sizes["tp"], pp=1, ep=sizes["ep"], etp=1, world_size=world
        )
        model = case.spec().parallelize_fn(model, dims, job_config(sizes["tp"], sizes["ep"]))

    tokens, labels = data["tokens"].to(device), data["labels"].to(device)
    loss = case.ce_sum(model(tokens), labels) / labels.numel()
    loss.backward()

    grads = {name: full(p.grad).detach().cpu().clone() for name, p in model.named_parameters() if p.grad is not None}
    gates = {
        name: local(as_placed(p.grad, p)).detach().cpu().clone()
        for name, p in model.named_parameters()
        if name.endswith(GATE) and p.grad is not None
    }
    losses, gates_per_rank = [None] * world, [None] * world
    dist.all_gather_object(losses, loss.item())
    dist.all_gather_object(gates_per_rank, gates)
    if dist.get_rank() == 0:
        torch.save(
            {
                "layout": layout,
                "device": str(device),
                "losses": losses,
                "grads": grads,
                "gate_grads_per_rank": gates_per_rank,
                "no_grad": sorted(n for n, p in model.named_parameters() if p.grad is None),
            },
            folder / "out.pt",
        )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
