"""Hidden grader of routing-trace on Megatron-LM: the agent's routing_trace/step_<n>.npz against the trace this
test records from Megatron's own pretrain_gpt.py (trace_reference.py: hooks on every TopKRouter, under torchrun
on the trial's GPU), run from the graded checkout with its own rebuild of the run (routing_run.py: train.toml
and launch.py as prepare.py wrote them).

Why rebuild: the grader needs nothing from the agent's tree but the trace files; an edited run config fails
test_the_given_inputs_are_unchanged instead of moving the reference. The Megatron modules the run goes through
are restored from the original checkout (grading.toml). The checks are the task's shared ones
(tasks/operate/routing-trace/checks/routing_checks.py); this module supplies Megatron's trace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import routing_run
import torch
from routing_checks import (  # noqa: F401  the shared checks, collected here with this module's `reference`
    test_expert_ids_are_distinct_experts_in_range,
    test_expert_ids_are_the_models_except_on_ties,
    test_gate_weights_are_non_negative_and_sum_as_the_model_defines,
    test_gate_weights_match_the_model,
    test_keys_shapes_and_dtypes,
    test_layers_are_the_layers_with_routed_experts,
    test_one_file_per_step_and_nothing_else,
    test_tokens_are_the_steps_global_batch_in_order,
    trace,
)

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
STEPS = routing_run.STEPS


def _failure(log: str) -> str:
    """What of a failed run's log to show: from the first traceback on (torchrun's own summary follows it)."""
    start = log.find("Traceback (most recent call last)")
    return log[start : start + 8000] if start >= 0 else log[-8000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """{step: {layers, tokens, expert_ids, gate_weights, probs}}: the K entries of a token by gate weight, highest
    first (torch.topk over the router's probabilities)."""
    scratch = tmp_path_factory.mktemp("routing")
    run = scratch / "runs" / "routing"
    routing_run.write_inputs(run)
    out = scratch / "trace"
    out.mkdir()
    env = {
        **os.environ,
        "ATEBENCH_TRACE_OUT": str(out),
        "CUDA_DEVICE_MAX_CONNECTIONS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    command += [str(HERE / "trace_reference.py"), str(run / "launch.py")]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = _failure(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"the reference run failed (exit {proc.returncode}):\n{output}"
    steps = {}
    for n in range(1, STEPS + 1):
        raw = torch.load(out / f"step_{n}.pt")
        steps[n] = {
            "layers": raw["layers"].numpy(),
            "tokens": raw["tokens"].numpy(),
            "expert_ids": raw["expert_ids"].numpy(),
            "gate_weights": raw["gate_weights"].numpy(),
            "probs": torch.softmax(raw["logits"], dim=-1).numpy(),
        }
    return {
        "steps": steps,
        "num_experts": raw["num_experts"],
        "sum_rule": "Megatron renormalises over the top-k: 1 per token",
        "run": run,
    }


def test_the_given_inputs_are_unchanged(reference):
    given_run, rebuilt_run = ROOT / "runs" / "routing", reference["run"]
    for rel in ("train.toml", "launch.py"):
        assert (given_run / rel).read_bytes() == (rebuilt_run / rel).read_bytes(), f"runs/routing/{rel} was changed"
