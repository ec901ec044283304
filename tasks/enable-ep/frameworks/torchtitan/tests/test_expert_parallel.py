"""Hidden checks for enable-ep on TorchTitan: the tiny Qwen3-MoE (frameworks/torchtitan/grader_support/,
placed beside this file) at ep=2 and dp=2 on 2 gloo processes against one device (the shared layout checks:
loss, every gradient, the clipped norm on every rank, clipped gradients), each rank's block of experts, the
ep mesh at world 4 and a non-dividing ep rejected, and TorchTitan's own trainer for 3 steps at ep=2 vs dp=2
from one seed checkpoint, whose ep=2 checkpoint then loads into one process (DCP resharding ep2 -> ep1).
On a GPU trial, the ladder's rungs on NCCL (grader_support/titan_gpu_checks.py): one GPU, ep=2 and dp=2 on two, ep=4
and ep=2 x efsdp=2 on four, each against one GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import titan_case as case
import torch
from titan_gpu_checks import *  # noqa: F401,F403 - the GPU rungs (grading.toml gpu_fail_to_pass)
from titan_layout_checks import *  # noqa: F401,F403 - pytest collects the imported checks and fixtures here

HERE = Path(__file__).resolve().parent
WEIGHT_REL = 1e-5  # ep2 vs dp2 after 3 trainer steps, per tensor


def test_each_rank_holds_only_its_contiguous_block_of_the_experts(ep2, reference):
    name = ep2["expert_w1_name"]
    assert name is not None, "layer 0 has no routed-expert weight w1"
    full = reference["state"][name]
    block = case.EXPERTS // 2
    shards = ep2["expert_w1_per_rank"]
    assert [s.shape[0] for s in shards] == [block, block], f"rows per rank {[s.shape[0] for s in shards]}"
    for rank, shard in enumerate(shards):
        assert torch.equal(shard, full[rank * block : (rank + 1) * block]), f"rank {rank} holds other experts"


MESHES = """
import titan_cpu
titan_cpu.install()
import torch.distributed as dist
from torch.testing._internal.distributed.fake_pg import FakeStore
from torchtitan.distributed import ParallelDims

dist.init_process_group("fake", rank=0, world_size=4, store=FakeStore())
for ep in (2, 4, 3):
    try:
        dims = ParallelDims(dp_replicate=1, dp_shard=4, cp=1, tp=1, pp=1, ep=ep, etp=1, world_size=4)
        dims.build_mesh()
        print(f"ep={ep}: mesh ep size {dims.get_mesh('ep').size()}")
    except Exception as error:  # the check is that it is refused; the message is printed for the log
        print(f"ep={ep}: rejected: {type(error).__name__}: {error}")
"""


@pytest.fixture(scope="module")
def meshes() -> dict[int, str]:
    """ParallelDims at world 4 (fake process group, one process) for ep = 2, 4 and 3: one line each."""
    proc = subprocess.run(
        [sys.executable, "-c", MESHES],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": f"{Path.cwd()}:{HERE}"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ep=")]
    return {int(line.split(":")[0][3:]): line for line in lines}


@pytest.mark.parametrize("ep", [2, 4])
def test_an_ep_dividing_the_ranks_builds_its_mesh(ep, meshes):
    assert meshes[ep] == f"ep={ep}: mesh ep size {ep}", meshes[ep]


def test_an_ep_that_divides_neither_the_experts_nor_the_ranks_is_rejected(meshes):
    assert "rejected" in meshes[3], meshes[3]


# ---- TorchTitan's own trainer: 3 steps at world 2 from one seed checkpoint, ep=2 vs dp=2 -----------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Per layout: the logged (step, loss, grad norm) rows and the folder of its final checkpoint."""
    root = tmp_path_factory.mktemp("trainer")
    assets, data = case.trainer_inputs(root)
    case.run_trainer(1, case.trainer_args(assets, data, str(root / "seed")), ["--checkpoint.create_seed_checkpoint"])
    seed = root / "seed" / "checkpoint" / "step-0"
    assert seed.is_dir(), "no seed checkpoint was written"
    runs = {"seed": seed}
    for layout, extra in (("dp2", []), ("ep2", ["--parallelism.expert_parallel_degree", "2"])):
        shutil.copytree(seed, root / layout / "checkpoint" / "step-0")
        logged = case.run_trainer(2, case.trainer_args(assets, data, str(root / layout)), extra)
        runs[layout] = (logged, root / layout / "checkpoint" / "step-3")
    return runs


def test_trainer_with_ep2_logs_the_losses_and_grad_norms_of_dp2(trained):
    ep2, dp2 = trained["ep2"][0], trained["dp2"][0]
    assert [step for step, *_ in dp2] == [1, 2, 3], dp2
    assert ep2 == dp2


def load_on_one_process(folder: Path) -> dict:
    """A checkpoint folder read into the plain tiny model's state dict (DCP, no process group)."""
    import torch.distributed.checkpoint as dcp

    assert folder.is_dir(), f"no checkpoint at {folder}"
    state = case.build(case.tiny_args()).state_dict()
    dcp.load(state, checkpoint_id=str(folder))
    return {k: v.detach().clone() for k, v in state.items()}


def test_the_ep2_checkpoint_loads_into_one_process_with_the_dp2_weights(trained):
    ep2, dp2, seed = (
        load_on_one_process(trained["ep2"][1]),
        load_on_one_process(trained["dp2"][1]),
        load_on_one_process(trained["seed"]),
    )
    assert any(not torch.equal(ep2[k], seed[k]) for k in seed), "the ep2 checkpoint holds the seed weights"
    diff, name = case.worst(ep2, dp2)
    assert diff < WEIGHT_REL, f"ep2 and dp2 weights after 3 steps differ by {diff:.2e} (relative) at {name}"
