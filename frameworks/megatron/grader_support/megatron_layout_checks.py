"""Layout checks the fix-gradient-bug tasks on Megatron-LM share (each variant's grading.toml runs this module;
which ids must flip is the variant's): Megatron's own pretrain_gpt.py (`megatron_parallel.pretrain`) on one GPU
against three layouts of two GPUs, all from the same weights and the same global batch:

- dp2: data parallelism;                    ep2: expert parallelism (all-to-all dispatcher), dp = 2;
- tp2: tensor and sequence parallelism, dp = 1.

Every run: fp32, deterministic mode, distributed optimizer, the loss normalised per token
(--calculate-per-token-loss) with each sample's last positions masked out, unevenly (`megatron_parallel.pad_length`),
4 iterations. Checked per layout against the one-GPU run: every parameter's gradient in iteration 1 (after every
reduction, before the optimizer step), the grad norm of iteration 1 on every rank, the lm loss and grad norm of every
iteration on every rank, and that the copies of a gradient held by several ranks agree.

Tolerances: fp32, before any optimizer step a correct layout differs from one GPU by summation order only. Measured
on two H200s (docs/validation/2026-12-01-megatron-2gpu-tasks-h200x2.md), the pristine tree: worst gradient 7.3e-8
(dp2), 2.7e-7 (ep2), 3.8e-7 (tp2) relative; iteration-1 norm 6e-8 to 1.3e-7. The injected bugs and the wrong
patches move the worst gradient by 2e-2 (a wrong token count) to 1, or the norm by 1e-4 (the router under tp2) to 1:
GRAD_REL and NORM_REL sit ~25x above the gold's worst and ~10x below the smallest change. Each check prints what it
measured (Megatron's pytest options show it in grader.log).
"""

from __future__ import annotations

import math
from pathlib import Path

import megatron_parallel as mp
import pytest

ROOT = Path(__file__).resolve().parents[1]  # the graded checkout: this file sits in its grader_tests/
ITERATIONS = 4
GRAD_REL = 1e-5
NORM_REL = 1e-5
CURVE_REL = 1e-4  # every iteration's lm loss and grad norm, after Adam steps (differences may grow a little)
FLAGS = {
    **mp.BASE_FLAGS,
    "train-iters": ITERATIONS,
    "use-distributed-optimizer": True,
    "calculate-per-token-loss": True,
}
pytestmark = mp.TWO_GPUS
LAYOUTS = {
    "dp2": {},
    "ep2": {"expert-model-parallel-size": 2},
    "tp2": {"tensor-model-parallel-size": 2, "sequence-parallel": True},
}


def _pretrain(tmp_path_factory, name: str, world: int, flags: dict) -> mp.Run:
    return mp.pretrain(ROOT, tmp_path_factory.mktemp(name), {**FLAGS, **flags}, world, capture=1, pad=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> mp.Run:
    return _pretrain(tmp_path_factory, "one-gpu", 1, {})


@pytest.fixture(scope="module")
def dp2(tmp_path_factory) -> mp.Run:
    return _pretrain(tmp_path_factory, "dp2", 2, LAYOUTS["dp2"])


@pytest.fixture(scope="module")
def ep2(tmp_path_factory) -> mp.Run:
    return _pretrain(tmp_path_factory, "ep2", 2, LAYOUTS["ep2"])


@pytest.fixture(scope="module")
def tp2(tmp_path_factory) -> mp.Run:
    return _pretrain(tmp_path_factory, "tp2", 2, LAYOUTS["tp2"])


def _ran(run: mp.Run) -> mp.Run:
    assert not run.failure(), run.failure()
    return run


def test_the_one_gpu_reference_trains(reference):
    run = _ran(reference)
    rows = run.metrics.get(0, [])
    assert [row["iteration"] for row in rows] == list(range(1, ITERATIONS + 1)), rows
    assert all(math.isfinite(row["lm loss"]) and math.isfinite(row["grad norm"]) for row in rows), rows
    assert run.grads and not run.replica_mismatches


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_gradient_equals_one_gpu(layout, request, reference):
    run = _ran(request.getfixturevalue(layout))
    worst, where, problems = mp.worst_relative(run.grads, _ran(reference).grads)
    print(f"measured: {layout}: worst relative gradient difference {worst:.2e} at {where} (tolerance {GRAD_REL:g})")
    assert not problems, "\n".join(problems[:20])
    assert worst <= GRAD_REL, f"{where}: relative difference {worst:.2e} from one GPU"


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_grad_norm_on_every_rank_equals_one_gpu(layout, request, reference):
    run = _ran(request.getfixturevalue(layout))
    want = _ran(reference).metrics[0][0]["grad norm"]
    got = {rank: rows[0]["grad norm"] for rank, rows in sorted(run.metrics.items()) if rows}
    print(f"measured: {layout}: iteration-1 grad norm per rank {got}, one GPU {want!r} (tolerance {NORM_REL:g})")
    assert len(got) == 2 and all(abs(norm - want) <= NORM_REL * want for norm in got.values()), (got, want)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_losses_and_grad_norms_follow_one_gpu(layout, request, reference):
    run, want = _ran(request.getfixturevalue(layout)), _ran(reference)
    problems = mp.metric_mismatches(run.metrics, want.metrics, "lm loss", CURVE_REL)
    problems += mp.metric_mismatches(run.metrics, want.metrics, "grad norm", CURVE_REL)
    assert len(run.metrics) == 2 and not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_gradient_replicas_agree(layout, request):
    run = _ran(request.getfixturevalue(layout))
    assert run.grads, "no gradients were recorded"
    assert not run.replica_mismatches, "\n".join(run.replica_mismatches[:20])
