"""Hidden grader of routing-trace on TorchTitan: the agent's routing_trace/step_<n>.npz against the trace
this test records from TorchTitan's own trainer (trace_reference.py, under torchrun with the CPU shims of
grader_support), run on its own rebuild of every input (routing_run.py: the flavor, tokenizer, corpus,
seed checkpoint and run config prepare.py wrote).

Why rebuild: the grader needs nothing from the agent's tree but the trace files; edited inputs fail
test_the_given_inputs_are_unchanged instead of moving the reference. The torchtitan modules the trainer
runs are restored from the original checkout (grading.toml).
The checks are the task's shared ones (tasks/operate/routing-trace/checks/routing_checks.py); this
module supplies TorchTitan's trace.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
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


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """{step: {layers, tokens, expert_ids, gate_weights, probs}}: the K entries of a token sorted by gate
    weight, highest first (the router's topk is unsorted)."""
    scratch = tmp_path_factory.mktemp("routing")
    run = scratch / "runs" / "routing"
    run.mkdir(parents=True)
    routing_run.write_inputs(run)
    routing_run.write_checkpoint(run / "checkpoint")
    out = scratch / "trace"
    out.mkdir()
    env = {
        **os.environ,
        "ATEBENCH_TRACE_OUT": str(out),
        "HF_DATASETS_CACHE": str(scratch / "hf-datasets"),
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",  # the reference run is CPU (the gold was made so); a GPU host must not move it
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE), str(scratch), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    command += [str(HERE / "trace_reference.py"), "--job.config_file", "runs/routing/train.toml"]
    proc = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
    output = (proc.stdout + proc.stderr)[-5000:]
    assert proc.returncode == 0, f"the reference run failed (exit {proc.returncode}):\n{output}"
    steps = {}
    for n in range(1, STEPS + 1):
        raw = torch.load(out / f"step_{n}.pt")
        order = raw["gate_weights"].argsort(dim=-1, descending=True, stable=True)
        steps[n] = {
            "layers": raw["layers"].numpy(),
            "tokens": raw["tokens"].numpy(),
            "expert_ids": raw["expert_ids"].gather(-1, order).numpy(),
            "gate_weights": raw["gate_weights"].gather(-1, order).numpy(),
            "probs": torch.softmax(raw["logits"], dim=-1).numpy(),
        }
    return {
        "steps": steps,
        "num_experts": raw["num_experts"],
        "sum_rule": "route_norm = False: not renormalised over the top-k",
        "run": run,
    }


def _checkpoint(folder: Path) -> dict:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    target = folder.parent / f"{folder.name}.pt"
    dcp_to_torch_save(str(folder), str(target))
    state = torch.load(target)
    target.unlink()
    return state


def test_the_given_inputs_are_unchanged(reference, tmp_path):
    given_run, rebuilt_run = ROOT / "runs" / "routing", reference["run"]
    for rel in ("flavor.py", "hf_assets/tokenizer.json", "hf_assets/tokenizer_config.json", "data/train.jsonl"):
        assert (given_run / rel).read_bytes() == (rebuilt_run / rel).read_bytes(), f"runs/routing/{rel} was changed"
    given = tomllib.loads((given_run / "train.toml").read_text())
    assert given == tomllib.loads(routing_run.RUN_CONFIG), "runs/routing/train.toml was changed"
    rebuilt, held = _checkpoint(rebuilt_run / "checkpoint"), _checkpoint(given_run / "checkpoint")
    assert sorted(held) == sorted(rebuilt), "runs/routing/checkpoint holds other tensors than the given checkpoint"
    changed = [key for key in rebuilt if not torch.equal(held[key], rebuilt[key])]
    assert not changed, f"runs/routing/checkpoint was changed: {changed[:3]}"
