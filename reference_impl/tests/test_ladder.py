"""Distributed correctness ladder: every model x (pp, dp, ep) layout vs the eager single-device reference.

One model: `pytest tests/test_ladder.py -k mixtral`. Logic and tolerances: reftrain/testing.py.
"""

import os

import pytest
import torch

from reftrain.models import MODELS
from reftrain.testing import LadderCase, cases_for, each_case, grad_distance, ladder_rungs, run_distributed

GPU_TOLERANCES = dict(dtype="bfloat16", loss_rtol=2e-2, loss_atol=2e-2, grad_tol=5e-2)
"""bf16 autocast + bf16 FSDP compute vs an fp32 reference: about 3 significant digits per op."""


@pytest.mark.timeout(240)
@pytest.mark.parametrize("world_size", [1, 2, 4], ids=lambda w: f"world{w}")
@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_ladder_cpu(model_type, world_size):
    cases = cases_for(model_type, world_size)
    results = run_distributed(ladder_rungs, world_size, cases)
    checked = {r["case"] for per_rank in results for r in per_rank}
    assert checked == {c.name for c in cases}
    assert all(r["params_checked"] > 0 for per_rank in results for r in per_rank)


@pytest.mark.gpu
@pytest.mark.timeout(300)
@pytest.mark.parametrize("world_size", [1, 2, 4], ids=lambda w: f"world{w}")
@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_ladder_gpu(model_type, world_size):
    if torch.cuda.device_count() < world_size:
        pytest.skip(f"needs {world_size} GPUs, {torch.cuda.device_count()} visible")
    cases = cases_for(model_type, world_size, device="cuda", **GPU_TOLERANCES)
    results = run_distributed(ladder_rungs, world_size, cases, device_type="cuda")
    assert {r["case"] for per_rank in results for r in per_rank} == {c.name for c in cases}


def test_grad_distance_detects_scaled_and_unrelated_gradients():
    g = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    assert grad_distance(g, g) < 1e-12
    assert grad_distance(g, 0.5 * g) > 1e-2  # an averaged-instead-of-summed gradient fails
    assert grad_distance(g, torch.randn(1000)) > 0.5


def test_cpu_ladder_tolerances_are_sized_to_fp32():
    """fp32 rounding noise passes the CPU ladder; a gradient 0.1% off (a wrong scale, a missed token's
    share) and a loss 1e-4 off fail (see LadderCase for the measured errors)."""
    case = LadderCase("qwen3_moe")
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(1000, generator=gen, dtype=torch.float64)
    assert grad_distance(g, g * (1 + 1e-6 * torch.randn(1000, generator=gen, dtype=torch.float64))) < case.grad_tol
    assert grad_distance(g, g * (1 + 1e-3)) > case.grad_tol
    loss = torch.tensor([6.25], dtype=torch.float64)
    assert torch.allclose(loss * (1 + 1e-7), loss, rtol=case.loss_rtol, atol=case.loss_atol)
    assert not torch.allclose(loss * (1 + 1e-4), loss, rtol=case.loss_rtol, atol=case.loss_atol)


def _fails_on_rank_0(case: LadderCase) -> dict:
    if torch.distributed.get_rank() == 0:
        raise AssertionError("planted mismatch")
    return {"case": case.name}


@pytest.mark.timeout(120)
def test_a_failing_rank_leaves_its_peers_finishing_cleanly():
    """A rank whose cases failed meets the others at the closing barrier: on NCCL, leaving instead hung them
    forever (4 H200s, 2026-11-30); on gloo it turns their good result into a connection error."""
    with pytest.raises(AssertionError) as failed:
        run_distributed(each_case, 2, _fails_on_rank_0, [LadderCase(sorted(MODELS)[0], dp=2)])
    message = str(failed.value)
    assert "rank 0" in message and "planted mismatch" in message
    assert "rank 1" not in message, message


def _devices_seen() -> tuple:
    return os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.is_available()


@pytest.mark.timeout(120)
def test_a_cpu_run_sees_no_gpu_even_on_a_gpu_host():
    """A CPU run's ranks see no GPU: on a 1-GPU host, `device = "auto"` had put both ranks of a gloo run on GPU 0,
    where gloo's point-to-point ops refuse CUDA tensors (the ep2-to-pp2 reshard test failed there, 2026-12-01)."""
    assert run_distributed(_devices_seen, 2) == [("", False), ("", False)]
