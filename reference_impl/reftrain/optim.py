"""AdamW, warmup + cosine learning rate, and gradient clipping by the norm over every rank.

Why a hand-written clip: `clip_grad_norm_` sees only this rank's parameters; with pipeline stages and
expert shards the true norm is the sum of squares over all ranks. Every gradient element lives on
exactly one rank (FSDP shards over dp/dp*ep, experts over ep, layers over pp), so one all-reduce of
local squared norms counts each element once.
"""

import math

import torch
import torch.distributed as dist

from reftrain.config import TrainingConfig


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def build_optimizer(model, cfg: TrainingConfig) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    on_gpu = bool(params) and params[0].is_cuda
    # fused on GPU: one pass over parameter, gradient and both moments instead of one per operation
    # (an AdamW step over billions of fp32 parameters is memory-bound).
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=1e-8, foreach=False, fused=on_gpu)


def lr_at(step: int, cfg: TrainingConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then cosine to min_lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps - 1)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer, cfg: TrainingConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step, cfg) / cfg.lr)


def global_grad_norm(params) -> torch.Tensor:
    """L2 norm of all gradients over all ranks (each rank passes the parameters it holds)."""
    grads = [_local(p.grad).detach() for p in params if p.grad is not None]
    device = grads[0].device if grads else torch.device("cpu")
    sq = torch.zeros((), dtype=torch.float64, device=device)
    if grads:
        # One pass over each gradient (fp32 accumulation inside a tensor, fp64 across tensors), not a
        # float64 copy of every gradient.
        sq += torch.stack(torch._foreach_norm(grads, 2)).double().pow(2).sum()
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(sq)
    return sq.sqrt()


def clip_grads(params, max_norm: float) -> float:
    """Scales every gradient so the global norm is at most `max_norm`; returns the pre-clip norm."""
    params = list(params)
    norm = global_grad_norm(params)
    if max_norm > 0:
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        for p in params:
            if p.grad is not None:
                _local(p.grad).mul_(coef.to(_local(p.grad).dtype))
    return norm.item()
