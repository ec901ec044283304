"""Distributed checkpoints (torch DCP): model, optimizer, step, data position, RNG.

Why global tensors: every parameter is saved under its Hugging Face name with its full shape, so a
checkpoint written with one pp/dp/ep layout loads into any other. FSDP shards are DTensors and DCP
reshards them itself; an expert shard is only a slice [E/ep, ...], so it is re-expressed as a DTensor
Shard(0) over the ep mesh (global [E, ...]) before saving and copied back after loading.
The learning-rate schedule is a pure function of the step, so the step is its whole state.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict
from torch.distributed.tensor import DTensor, Shard, distribute_tensor

from reftrain.parallel.expert_parallel import is_expert_param
from reftrain.parallel.mesh import Mesh


def step_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step_{step}"


def latest_step(root: str | Path) -> int | None:
    """The newest completed checkpoint step under `root` (DCP writes .metadata last)."""
    steps = [
        int(m.group(1))
        for p in Path(root).glob("step_*")
        if (m := re.fullmatch(r"step_(\d+)", p.name)) and (p / ".metadata").is_file()
    ]
    return max(steps, default=None)


def _expert_to_global(t: torch.Tensor, mesh: Mesh) -> torch.Tensor:
    """A rank's expert slice (maybe FSDP-sharded over dp) -> DTensor [E, ...] sharded over ep."""
    local = t.full_tensor() if isinstance(t, DTensor) else t
    return DTensor.from_local(local, mesh.ep_mesh, [Shard(0)], run_check=False)


def _copy_global_into(target: torch.Tensor, loaded: DTensor) -> None:
    """Copy the loaded ep slice back into the (maybe dp-sharded) local tensor."""
    local = loaded.to_local()
    with torch.no_grad():
        if isinstance(target, DTensor):
            shard = distribute_tensor(local, target.device_mesh, target.placements, src_data_rank=None)
            target.to_local().copy_(shard.to_local())
        else:
            target.copy_(local)


def _globalize(flat: dict[str, torch.Tensor], mesh: Mesh) -> dict[str, torch.Tensor]:
    if mesh.ep == 1:
        return dict(flat)
    return {k: _expert_to_global(v, mesh) if _is_expert_slice(k, v, mesh) else v for k, v in flat.items()}


def _is_expert_slice(key: str, value, mesh: Mesh) -> bool:
    """An expert weight or its Adam moment on an ep > 1 layout (Adam's scalar `step` is not one)."""
    return mesh.ep > 1 and is_expert_param(key) and isinstance(value, torch.Tensor) and value.ndim > 0


def _model_state(model) -> dict[str, torch.Tensor]:
    return dict(model.state_dict())


def _optimizer_state(model, optimizer) -> dict[str, torch.Tensor]:
    """Optimizer state flattened to `{param_fqn}.{exp_avg|exp_avg_sq|step}` (param_groups come from config)."""
    state = get_optimizer_state_dict(model, optimizer)["state"]
    return {f"{fqn}.{k}": v for fqn, per_param in state.items() for k, v in per_param.items()}


def _train_state(loader, step: int) -> dict[str, torch.Tensor]:
    return {"step": torch.tensor(step), "data_position": torch.tensor(loader.position)}


def save(root: str | Path, step: int, model, optimizer, loader, mesh: Mesh) -> Path:
    """Writes `root/step_{step}` collectively (every rank must call it)."""
    path = step_dir(root, step)
    state = {
        "model": _globalize(_model_state(model), mesh),
        "optim": _globalize(_optimizer_state(model, optimizer), mesh),
        "train": _train_state(loader, step),
    }
    dcp.save(state, checkpoint_id=str(path))
    rng = {
        "world_size": dist.get_world_size(),
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }
    torch.save(rng, path / f"rng_rank{dist.get_rank()}.pt")
    dist.barrier()
    return path


def load(path: str | Path, model, optimizer, loader, mesh: Mesh) -> int:
    """Loads a checkpoint written with any layout into this one; returns its step."""
    path = Path(path)
    model_flat = _model_state(model)
    optim_full = get_optimizer_state_dict(model, optimizer)
    optim_flat = {f"{fqn}.{k}": v for fqn, per in optim_full["state"].items() for k, v in per.items()}
    state = {
        "model": _globalize(model_flat, mesh),
        "optim": _globalize(optim_flat, mesh),
        "train": {"step": torch.tensor(0), "data_position": torch.tensor(0)},
    }
    dcp.load(state, checkpoint_id=str(path))
    for flat, loaded in ((model_flat, state["model"]), (optim_flat, state["optim"])):
        for k, v in loaded.items():
            if v is not flat[k]:
                if _is_expert_slice(k, flat[k], mesh):
                    _copy_global_into(flat[k], v)
                elif isinstance(flat[k], torch.Tensor) and flat[k].data_ptr() != v.data_ptr():
                    with torch.no_grad():
                        flat[k].copy_(v)
    model.load_state_dict(model_flat)
    for fqn, per in optim_full["state"].items():
        for k in per:
            per[k] = optim_flat[f"{fqn}.{k}"]
    set_optimizer_state_dict(model, optimizer, optim_full)
    loader.position = int(state["train"]["data_position"])
    rng_file = path / f"rng_rank{dist.get_rank()}.pt"
    if rng_file.is_file():
        rng = torch.load(rng_file, weights_only=False)
        if rng["world_size"] == dist.get_world_size():
            torch.set_rng_state(rng["cpu"])
            if rng["cuda"] is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state(rng["cuda"])
    return int(state["train"]["step"])


def load_latest(root: str | Path, model, optimizer, loader, mesh: Mesh) -> int:
    """Resumes from the newest checkpoint in `root`; returns 0 (fresh start) when there is none."""
    step = latest_step(root)
    if step is None:
        return 0
    return load(step_dir(root, step), model, optimizer, loader, mesh)
