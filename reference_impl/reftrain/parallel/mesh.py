"""The (pp, dp, ep) device mesh, outermost to innermost.

Why ep innermost: expert all-to-all is the chattiest collective, so ep ranks are neighbours (same
node on a GPU cluster). ep ranks also process different data, so the data-parallel group of dense
weights is dp x ep flattened ("dp_ep").
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh


@dataclass
class Mesh:
    """The device mesh and the groups the trainer uses, with this rank's coordinates."""

    mesh: DeviceMesh
    dp_ep_mesh: DeviceMesh
    """dp x ep flattened: the data ranks, over which dense weights are sharded."""
    pp: int
    dp: int
    ep: int

    @property
    def pp_rank(self) -> int:
        return self.mesh.get_local_rank("pp")

    @property
    def dp_rank(self) -> int:
        return self.mesh.get_local_rank("dp")

    @property
    def ep_rank(self) -> int:
        return self.mesh.get_local_rank("ep")

    @property
    def data_rank(self) -> int:
        """Index among the dp * ep ranks that split the batch."""
        return self.dp_rank * self.ep + self.ep_rank

    @property
    def pp_group(self):
        return self.mesh.get_group("pp")

    @property
    def ep_group(self):
        return self.mesh.get_group("ep")

    @property
    def dp_mesh(self) -> DeviceMesh:
        return self.mesh["dp"]

    @property
    def ep_mesh(self) -> DeviceMesh:
        return self.mesh["ep"]

    @property
    def dp_ep_group(self):
        return self.dp_ep_mesh.get_group()


def init_distributed(device_type: str) -> None:
    """Joins the torchrun job from its env vars, or starts a 1-process group when run plainly."""
    if dist.is_initialized():
        return
    backend = "nccl" if device_type == "cuda" else "gloo"
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        if device_type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)


def init_mesh(pp: int, dp: int, ep: int, device_type: str) -> Mesh:
    """Builds the mesh; raises if pp * dp * ep differs from the number of processes."""
    init_distributed(device_type)
    world = dist.get_world_size()
    if pp * dp * ep != world:
        raise ValueError(
            f"mesh pp*dp*ep = {pp}*{dp}*{ep} = {pp * dp * ep} does not match the {world} launched "
            f"processes; launch {pp * dp * ep} processes or change parallel.pp/dp/ep"
        )
    mesh = init_device_mesh(device_type, (pp, dp, ep), mesh_dim_names=("pp", "dp", "ep"))
    return Mesh(mesh=mesh, dp_ep_mesh=mesh["dp", "ep"]._flatten("dp_ep"), pp=pp, dp=dp, ep=ep)
