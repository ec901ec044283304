"""Training entry point: `python -m reftrain.train CONFIG.toml [--section.key=value ...]`.

Single process on CPU, or `torchrun --nproc_per_node N -m reftrain.train CONFIG.toml` for pp x dp x ep.
The steps, in order: mesh -> model on meta -> pipeline split -> expert shards -> materialise + init
-> FSDP2 -> optimizer -> (resume) -> loop of forward_backward, clip, step, log, checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from reftrain import checkpoint
from reftrain.config import Config, ConfigError, cli, validate
from reftrain.data import Batch, PackedLoader
from reftrain.launch import run_then_exit
from reftrain.loss import TokenWeightedCrossEntropy, count_tokens, moe_blocks, set_aux_loss_scale, token_loss_sum
from reftrain.models import build_model
from reftrain.optim import build_optimizer, clip_grads, lr_at
from reftrain.parallel.expert_parallel import shard_experts
from reftrain.parallel.fsdp import apply_fsdp
from reftrain.parallel.mesh import Mesh, init_distributed, init_mesh
from reftrain.parallel.pipeline import build_schedule, split_model


def device_type(cfg: Config) -> str:
    """The device kind for training.device, "cuda" or "cpu"; a CUDA run needs a GPU for each process of the node."""
    want = cfg.training.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{cfg.source}: training.device = 'cuda' but no GPU is visible; use 'cpu' or 'auto'")
        local_rank, gpus = int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.device_count()
        if local_rank >= gpus:
            raise ConfigError(
                f"{cfg.source}: training.device = {cfg.training.device!r} runs each process on a GPU of its own, but "
                f"local rank {local_rank} has none ({gpus} visible); launch at most {gpus} process(es) per node, "
                "or use training.device = 'cpu'"
            )
    return want


def compute_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    if cfg.training.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, cfg.training.dtype)


@dataclass
class ParallelModel:
    """This rank's piece of the model and how to run a step on it."""

    model: nn.Module
    mesh: Mesh
    device: torch.device
    dtype: torch.dtype
    num_microbatches: int
    loss_fn: TokenWeightedCrossEntropy = field(default_factory=TokenWeightedCrossEntropy)
    schedule: object = None

    @property
    def is_first_stage(self) -> bool:
        return self.mesh.pp_rank == 0

    @property
    def is_last_stage(self) -> bool:
        return self.mesh.pp_rank == self.mesh.pp - 1


def build_parallel_model(cfg: Config, mesh: Mesh, device: torch.device) -> ParallelModel:
    """Builds, splits, shards and initialises the model for this rank (weights from `training.seed`)."""
    hf = cfg.hf_config_dict()
    if mesh.pp > 1 and hf.get("tie_word_embeddings"):
        raise ConfigError(
            f"{cfg.source}: tie_word_embeddings = true cannot be split over parallel.pp = {mesh.pp}; "
            f"set [model.overrides] tie_word_embeddings = false or pp = 1"
        )
    model = build_model(hf, device="meta")
    num_moe_layers = len(moe_blocks(model))
    split_model(model, mesh.pp, mesh.pp_rank)
    shard_experts(model, mesh.ep_mesh)
    set_aux_loss_scale(
        moe_blocks(model), cfg.training.aux_loss_coef, num_moe_layers, cfg.data_ranks * cfg.num_microbatches
    )
    dtype = compute_dtype(cfg, device)
    model.to_empty(device=device)
    model.init_weights(cfg.training.seed)
    if cfg.training.activation_checkpointing:
        from torch.distributed._composable import checkpoint as activation_checkpoint

        for layer in model.model.layers.values():
            activation_checkpoint(layer)
    compile_on = cfg.training.compile and device.type == "cuda"
    if compile_on:
        for layer in model.model.layers.values():
            layer.compile()
    apply_fsdp(model, mesh, param_dtype=dtype if dtype != torch.float32 else None)
    pm = ParallelModel(model=model, mesh=mesh, device=device, dtype=dtype, num_microbatches=cfg.num_microbatches)
    if compile_on:
        pm.loss_fn.token_loss_sum = torch.compile(token_loss_sum)
    if mesh.pp > 1:
        pm.schedule = build_schedule(
            model,
            mesh.pp_rank,
            mesh.pp,
            mesh.pp_group,
            device,
            cfg.num_microbatches,
            pm.loss_fn,
            cfg.parallel.pp_schedule,
        )
    return pm


def autocast(pm: ParallelModel):
    if pm.device.type == "cuda" and pm.dtype != torch.float32:
        return torch.autocast("cuda", dtype=pm.dtype)
    return contextlib.nullcontext()


def forward_backward(pm: ParallelModel, batch: Batch) -> list[torch.Tensor]:
    """Forward and backward of one step's micro-batches; gradients are summed into `.grad`.

    Returns this rank's per-micro-batch losses (sum of token losses / global token count) on the
    last pipeline stage, an empty list elsewhere.
    """
    inputs, labels = batch.inputs.to(pm.device), batch.labels.to(pm.device)
    pm.loss_fn.global_tokens = count_tokens(labels, pm.mesh.dp_ep_group)
    with autocast(pm):
        if pm.schedule is None:
            losses = []
            for i in range(pm.num_microbatches):
                last = i == pm.num_microbatches - 1
                if hasattr(pm.model, "set_requires_gradient_sync"):
                    pm.model.set_requires_gradient_sync(last)
                loss = pm.loss_fn(pm.model(inputs[i]), labels[i])
                loss.backward()
                losses.append(loss.detach())
            return losses
        losses = []
        flat_inputs, flat_labels = inputs.flatten(0, 1), labels.flatten(0, 1)
        if pm.is_first_stage:
            pm.schedule.step(flat_inputs)
        elif pm.is_last_stage:
            pm.schedule.step(target=flat_labels, losses=losses)
        else:
            pm.schedule.step()
        return [loss.detach() for loss in losses]


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def step_metrics(pm: ParallelModel, losses: list[torch.Tensor]) -> tuple[float, float]:
    """(global loss, mean aux loss of the last micro-batch over layers and data ranks), same on every rank."""
    blocks = [b for b in moe_blocks(pm.model) if b.last_aux_loss is not None]
    stats = torch.zeros(3, dtype=torch.float64, device=pm.device)
    if losses:
        stats[0] = torch.stack(losses).double().sum()
    for b in blocks:
        stats[1] += b.last_aux_loss.double()
    stats[2] = len(blocks)
    if dist.get_world_size() > 1:
        dist.all_reduce(stats)
    return stats[0].item(), (stats[1] / stats[2].clamp(min=1)).item()


@dataclass
class Run:
    """Everything a step needs, built once by `setup`."""

    cfg: Config
    pm: ParallelModel
    optimizer: torch.optim.Optimizer
    loader: PackedLoader
    start_step: int

    @property
    def params(self) -> list:
        return [p for p in self.pm.model.parameters() if p.requires_grad]


def setup(cfg: Config) -> Run:
    """Process group, validation, mesh, model, optimizer, data, and resume or HF init when asked."""
    kind = device_type(cfg)
    init_distributed(kind)  # a CUDA rank's GPU is set here, so the device is read after it
    validate(cfg, dist.get_world_size())
    device = torch.device("cuda", torch.cuda.current_device()) if kind == "cuda" else torch.device("cpu")
    torch.manual_seed(cfg.training.seed)
    mesh = init_mesh(cfg.parallel.pp, cfg.parallel.dp, cfg.parallel.ep, kind)
    pm = build_parallel_model(cfg, mesh, device)
    if cfg.checkpoint.init_from_hf:
        from reftrain.hf_checkpoint import load_hf_checkpoint

        load_hf_checkpoint(pm.model, cfg.checkpoint.init_from_hf)
    loader = PackedLoader(cfg, cfg.hf_config_dict()["vocab_size"], mesh.data_rank, cfg.data_ranks)
    optimizer = build_optimizer(pm.model, cfg.training)
    start = 0
    if cfg.checkpoint.resume:
        start = checkpoint.load_latest(cfg.checkpoint.dir, pm.model, optimizer, loader, mesh)
    return Run(cfg=cfg, pm=pm, optimizer=optimizer, loader=loader, start_step=start)


def train_step(run: Run, step: int) -> dict:
    """One optimizer step (0-based `step`); returns its log record (identical on every rank)."""
    cfg, pm = run.cfg, run.pm
    t0 = time.perf_counter()
    lr = lr_at(step, cfg.training)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    losses = forward_backward(pm, run.loader.next_batch())
    grad_norm = clip_grads(run.params, cfg.training.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    loss, aux = step_metrics(pm, losses)
    if pm.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {
        "step": step + 1,
        "loss": loss,
        "aux": aux,
        "grad_norm": grad_norm,
        "lr": lr,
        "tokens_per_s": cfg.data.global_batch_size * cfg.data.seq_len / dt,
        "step_time_s": dt,
        "peak_mem_gb": peak_memory_gb(pm.device),
    }


def train(cfg: Config) -> list[dict]:
    """Runs `cfg` on this process's share of the job; returns the per-step records (every rank)."""
    run = setup(cfg)
    is_logger = dist.get_rank() == 0
    if is_logger:
        print(
            json.dumps(
                {
                    "event": "start",
                    "world_size": dist.get_world_size(),
                    "device": str(run.pm.device),
                    "dtype": str(run.pm.dtype),
                    "start_step": run.start_step,
                    "config": cfg.to_dict(),
                }
            ),
            flush=True,
        )
    records = []
    for step in range(run.start_step, cfg.training.steps):
        record = train_step(run, step)
        records.append(record)
        done = step + 1 == cfg.training.steps
        if is_logger and ((step + 1) % cfg.training.log_interval == 0 or done):
            print(
                f"step {record['step']:5d} | loss {record['loss']:.4f} | aux {record['aux']:.4f} "
                f"| grad_norm {record['grad_norm']:.3f} | lr {record['lr']:.2e} "
                f"| tokens/s {record['tokens_per_s']:.0f} | peak_mem {record['peak_mem_gb']:.2f} GB",
                flush=True,
            )
        if cfg.checkpoint.dir and (done or (cfg.checkpoint.interval and (step + 1) % cfg.checkpoint.interval == 0)):
            checkpoint.save(cfg.checkpoint.dir, step + 1, run.pm.model, run.optimizer, run.loader, run.pm.mesh)
    return records


def main(argv: list[str] | None = None) -> None:
    try:
        cfg = cli(argv)
        train(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_then_exit(main)
