"""Hidden grader of enable-ep on Megatron-LM: expert parallelism through the all-to-all token dispatcher on 2 GPUs
(NCCL), against the same model without it, from the graded checkout with megatron_parallel.py (frameworks/megatron/
grader_support) beside this file:

- in process (`megatron_parallel.layer_case`): a tiny MoE GPTModel at ep=1 (allgather dispatcher) and at ep=2
  (all-to-all dispatcher), the same weights and each rank's own batch in both: every MoE layer's output, the
  per-token losses, and every gradient (ep=1's expert gradients summed over the ranks, ep=2's from their owner);
- Megatron's pretrain_gpt.py (`megatron_parallel.pretrain`) at dp=2 for 10 iterations, fp32, distributed optimizer,
  deterministic mode: ep=2 (all-to-all) logs the lm loss and grad norm of ep=1 (allgather) on every rank, and the
  gradients of iteration 1 (all-reduced) are ep=1's;
- Megatron's validate_args accepts an ep that divides the experts and refuses one that does not.
Megatron's own (1, 1) dispatcher tests, restored from the original, run beside these (grading.toml).

Tolerances: fp32; the two layouts differ in summation order only (an expert's tokens from both ranks in one matmul
at ep=2, two partial gradients summed at ep=1). Measured on two H200s (docs/validation/
2026-12-01-megatron-2gpu-tasks-h200x2.md), the gold: MoE outputs and losses 6.3e-8, parameters 2.3e-7, pretrain_gpt
losses 6.9e-8 and norms 1.2e-7, its gradients 2.8e-7 relative; the wrong patch (tokens not regrouped by local expert):
1.25, 1.33, 1.6e-3 and 3.3e-2, 1.35. Each check prints what it measured.
"""

from __future__ import annotations

import math
from pathlib import Path

import megatron_parallel as mp
import pytest

ROOT = Path(__file__).resolve().parents[1]
OUT_REL = 1e-5  # MoE outputs and per-token losses, in process
GRAD_REL = 1e-5  # per parameter, before any optimizer step
METRIC_REL = 1e-4  # lm loss and grad norm over 10 Adam steps (differences may grow a little with the steps)
ITERATIONS = 10
FLAGS = {**mp.BASE_FLAGS, "train-iters": ITERATIONS, "use-distributed-optimizer": True}
LAYOUTS = {  # pretrain_gpt.py at world 2 (dp = 2 in both)
    "ep1": {"moe-token-dispatcher-type": "allgather"},
    "ep2": {"moe-token-dispatcher-type": "alltoall", "expert-model-parallel-size": 2},
}


@pytest.fixture(scope="module")
def layer(tmp_path_factory):
    proc, found = mp.layer_case(ROOT, tmp_path_factory.mktemp("layer"))
    return {"log": proc.stdout + proc.stderr, "returncode": proc.returncode, **found}


def _layer(layer, name):
    if name not in layer:
        log = layer["log"]
        start = log.find("Traceback (most recent call last)")
        shown = log[start : start + 6000] if start >= 0 else log[-6000:]
        pytest.fail(f"the in-process {name} case did not finish (exit {layer['returncode']}):\n{shown}")
    return layer[name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {
        name: mp.pretrain(ROOT, tmp_path_factory.mktemp(name), {**FLAGS, **flags}, world=2, capture=1)
        for name, flags in LAYOUTS.items()
    }


def _run(runs, name) -> mp.Run:
    run = runs[name]
    assert not run.failure(), run.failure()
    return run


@mp.TWO_GPUS
def test_the_ep1_reference_runs_in_process(layer):
    ranks = _layer(layer, "ep1")
    assert [r["experts"] for r in ranks] == [list(range(8))] * 2


@mp.TWO_GPUS
def test_ep2_moe_outputs_and_losses_equal_ep1(layer):
    reference, ep2 = _layer(layer, "ep1"), _layer(layer, "ep2")
    worst = 0.0
    for rank in range(2):
        assert len(ep2[rank]["moe_outputs"]) == len(reference[rank]["moe_outputs"]) == 2
        pairs = list(zip(ep2[rank]["moe_outputs"], reference[rank]["moe_outputs"]))
        pairs.append((ep2[rank]["losses"], reference[rank]["losses"]))
        for got, want in pairs:
            assert got.shape == want.shape
            worst = max(worst, mp.relative(got, want))
    print(f"measured: worst relative difference of MoE outputs and losses {worst:.2e} (tolerance {OUT_REL:g})")
    assert worst <= OUT_REL


@mp.TWO_GPUS
def test_ep2_every_gradient_equals_ep1(layer):
    reference, ep2 = _layer(layer, "ep1"), _layer(layer, "ep2")
    for rank in range(2):
        dense = {n: g for n, g in reference[rank]["grads"].items() if not mp.EXPERT.search(n)}
        mine = {n: g for n, g in ep2[rank]["grads"].items() if not mp.EXPERT.search(n)}
        worst, where, problems = mp.worst_relative(mine, dense)
        print(f"measured: rank {rank}, worst relative difference of the other parameters {worst:.2e} at {where}")
        assert not problems and worst <= GRAD_REL, (problems, where, worst)
    experts_ep1 = {
        n: reference[0]["grads"][n] + reference[1]["grads"][n] for n in reference[0]["grads"] if mp.EXPERT.search(n)
    }
    experts_ep2 = {n: g for rank in ep2 for n, g in rank["grads"].items() if mp.EXPERT.search(n)}
    worst, where, problems = mp.worst_relative(experts_ep2, experts_ep1)
    print(
        f"measured: worst relative difference of the expert parameters {worst:.2e} at {where} (tolerance {GRAD_REL:g})"
    )
    assert not problems and worst <= GRAD_REL, (problems, where, worst)


@mp.TWO_GPUS
def test_each_ep2_rank_holds_only_its_contiguous_block_of_experts(layer):
    ranks = _layer(layer, "ep2")
    assert [r["experts"] for r in ranks] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    reference = _layer(layer, "ep1")
    for rank in range(2):
        held = sum(g.numel() for n, g in ranks[rank]["grads"].items() if mp.EXPERT.search(n))
        everything = sum(g.numel() for n, g in reference[rank]["grads"].items() if mp.EXPERT.search(n))
        assert 2 * held == everything, f"rank {rank} holds {held} expert parameters of {everything}"


@mp.TWO_GPUS
def test_pretrain_ep1_reference_trains(runs):
    run = _run(runs, "ep1")
    for rank in range(2):
        rows = run.metrics.get(rank, [])
        assert [row["iteration"] for row in rows] == list(range(1, ITERATIONS + 1))
        assert all(math.isfinite(row["lm loss"]) and math.isfinite(row["grad norm"]) for row in rows), rows
    assert run.grads and not run.replica_mismatches, run.replica_mismatches


@mp.TWO_GPUS
def test_pretrain_ep2_logs_the_losses_and_grad_norms_of_ep1(runs):
    reference, ep2 = _run(runs, "ep1"), _run(runs, "ep2")
    problems = mp.metric_mismatches(ep2.metrics, reference.metrics, "lm loss", METRIC_REL)
    problems += mp.metric_mismatches(ep2.metrics, reference.metrics, "grad norm", METRIC_REL)
    print("measured:", _curve_differences(ep2, reference), f"(tolerance {METRIC_REL:g})")
    assert not problems, "\n".join(problems[:20])


@mp.TWO_GPUS
def test_pretrain_ep2_gradients_equal_ep1(runs):
    reference, ep2 = _run(runs, "ep1"), _run(runs, "ep2")
    assert not ep2.replica_mismatches, "\n".join(ep2.replica_mismatches[:20])
    worst, where, problems = mp.worst_relative(ep2.grads, reference.grads)
    print(f"measured: worst relative gradient difference {worst:.2e} at {where} (tolerance {GRAD_REL:g})")
    assert not problems and worst <= GRAD_REL, (problems[:20], where, worst)


@pytest.mark.parametrize("ep, world", [(2, 2), (4, 4)])
def test_validate_args_accepts_an_ep_that_divides_the_experts(ep, world):
    proc = mp.validate_args(ROOT, world, {**FLAGS, "expert-model-parallel-size": ep})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_validate_args_refuses_an_ep_that_does_not_divide_the_experts():
    flags = {**FLAGS, "expert-model-parallel-size": 3, "global-batch-size": 12}  # 8 experts; dp = 6
    proc = mp.validate_args(ROOT, 6, flags)
    assert proc.returncode != 0 and "Error" in proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def _curve_differences(run: mp.Run, reference: mp.Run) -> str:
    want = {row["iteration"]: row for row in reference.metrics.get(0, [])}
    worst = {"lm loss": 0.0, "grad norm": 0.0}
    for rows in run.metrics.values():
        for row in rows:
            for key in worst:
                base = want.get(row["iteration"], {}).get(key)
                if base and row[key] is not None:
                    worst[key] = max(worst[key], abs(row[key] - base) / abs(base))
    return ", ".join(f"worst relative {key} difference {value:.2e}" for key, value in worst.items())
