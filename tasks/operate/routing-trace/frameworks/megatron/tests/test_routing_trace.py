"""Hidden grader of routing-trace on Megatron-LM: the agent's routing_trace/step_<n>.npz against the trace this
test records from Megatron's own pretrain_gpt.py (trace_reference.py: hooks on every TopKRouter, under torchrun
on the trial's GPU), run from the graded checkout with its own rebuild of the run (routing_run.py: train.toml
and launch.py as prepare.py wrote them).

Why rebuild: the grader needs nothing from the agent's tree but the trace files; an edited run config fails
test_the_given_inputs_are_unchanged instead of moving the reference. The Megatron modules the run goes through
are restored from the original checkout (grading.toml). The checks after the fixtures are those of the
reference and TorchTitan variants (tasks/operate/README.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import routing_run
import torch

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
TRACE = ROOT / "routing_trace"
STEPS = routing_run.STEPS
# Deterministic mode on one GPU: the gold trace and this one are bit-identical; 1e-5 leaves room for traces
# computed other valid ways (another hook point, fp32 copies), while the mistakes this catches are off by far
# more (the tokens in Megatron's [s, b] order: ids of other tokens; weights not renormalised: sums below 1).
WEIGHT_ATOL = 1e-5
# Expert ids must be the model's except on ties: where the model's full softmax gives the agent's expert
# and the model's expert the same probability to this tolerance (top-k may order or pick either).
TIE_ATOL = 1e-5


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
    return {"steps": steps, "num_experts": raw["num_experts"], "run": run}


@pytest.fixture(scope="module")
def trace(reference):
    """{step: arrays} of the agent's files, after the checks every other test needs (files, keys, shapes)."""
    missing = [f"step_{n}.npz" for n in reference["steps"] if not (TRACE / f"step_{n}.npz").is_file()]
    assert not missing, f"routing_trace/ lacks {missing}"
    loaded = {}
    for n, ref in reference["steps"].items():
        with np.load(TRACE / f"step_{n}.npz") as data:
            loaded[n] = {key: data[key] for key in data.files}
        keys = set(loaded[n])
        assert keys == {"layers", "tokens", "expert_ids", "gate_weights"}, f"step_{n}.npz has keys {sorted(keys)}"
        for key in ("layers", "tokens", "expert_ids", "gate_weights"):
            assert loaded[n][key].shape == ref[key].shape, (
                f"step_{n}.npz: {key} has shape {loaded[n][key].shape}, the model's trace {ref[key].shape}"
            )
    return loaded


def test_one_file_per_step_and_nothing_else():
    assert TRACE.is_dir(), "no routing_trace/ folder in the checkout's root"
    names = sorted(p.name for p in TRACE.iterdir())
    assert names == sorted(f"step_{n}.npz" for n in range(1, STEPS + 1))


def test_keys_shapes_and_dtypes(trace):
    dtypes = {"layers": np.int64, "tokens": np.int64, "expert_ids": np.int64, "gate_weights": np.float32}
    for n, arrays in trace.items():
        for key, dtype in dtypes.items():
            assert arrays[key].dtype == dtype, f"step_{n}.npz: {key} is {arrays[key].dtype}, not {np.dtype(dtype)}"


def test_layers_are_the_layers_with_routed_experts(trace, reference):
    for n, arrays in trace.items():
        np.testing.assert_array_equal(arrays["layers"], reference["steps"][n]["layers"], err_msg=f"step_{n}.npz")


def test_tokens_are_the_steps_global_batch_in_order(trace, reference):
    for n, arrays in trace.items():
        np.testing.assert_array_equal(arrays["tokens"], reference["steps"][n]["tokens"], err_msg=f"step_{n}.npz")


def test_expert_ids_are_distinct_experts_in_range(trace, reference):
    for n, arrays in trace.items():
        ids = arrays["expert_ids"]
        assert ids.min() >= 0 and ids.max() < reference["num_experts"], f"step_{n}.npz: ids outside [0, E)"
        ordered = np.sort(ids, axis=-1)
        assert (ordered[..., 1:] != ordered[..., :-1]).all(), f"step_{n}.npz: a token lists one expert twice"


def test_gate_weights_are_non_negative_and_sum_as_the_model_defines(trace, reference):
    for n, arrays in trace.items():
        weights, ref = arrays["gate_weights"], reference["steps"][n]["gate_weights"]
        assert (weights >= 0).all(), f"step_{n}.npz: negative gate weights"
        np.testing.assert_allclose(
            weights.sum(-1),
            ref.sum(-1),
            rtol=0,
            atol=WEIGHT_ATOL,
            err_msg=f"step_{n}.npz: gate_weights sums differ from the model (Megatron renormalises the top-k)",
        )


def test_expert_ids_are_the_models_except_on_ties(trace, reference):
    for n, arrays in trace.items():
        ref = reference["steps"][n]
        ids, want, probs = arrays["expert_ids"], ref["expert_ids"], ref["probs"]
        p_agent = np.take_along_axis(probs, ids, axis=-1)
        p_model = np.take_along_axis(probs, want, axis=-1)
        wrong = (ids != want) & (np.abs(p_agent - p_model) > TIE_ATOL)
        first = tuple(np.argwhere(wrong)[0]) if wrong.any() else None
        assert first is None, (
            f"step_{n}.npz: {int(wrong.sum())} of {ids.size} expert ids differ from the model's routing "
            f"(first at [layer slot, token, k] {[int(i) for i in first]}: {ids[first]}, the model's {want[first]})"
        )


def test_gate_weights_match_the_model(trace, reference):
    for n, arrays in trace.items():
        ref = reference["steps"][n]
        ids, want, weights = arrays["expert_ids"], ref["expert_ids"], arrays["gate_weights"]
        # A tie may list the same experts in another order: compare each expert's weight, not each slot's.
        order_agent, order_model = np.argsort(ids, axis=-1), np.argsort(want, axis=-1)
        same = (np.sort(ids, -1) == np.sort(want, -1)).all(-1, keepdims=True)
        got = np.where(same, np.take_along_axis(weights, order_agent, -1), weights)
        ref_w = np.where(same, np.take_along_axis(ref["gate_weights"], order_model, -1), ref["gate_weights"])
        np.testing.assert_allclose(got, ref_w, rtol=0, atol=WEIGHT_ATOL, err_msg=f"step_{n}.npz: gate_weights")


def test_the_given_inputs_are_unchanged(reference):
    given_run, rebuilt_run = ROOT / "runs" / "routing", reference["run"]
    for rel in ("train.toml", "launch.py"):
        assert (given_run / rel).read_bytes() == (rebuilt_run / rel).read_bytes(), f"runs/routing/{rel} was changed"
