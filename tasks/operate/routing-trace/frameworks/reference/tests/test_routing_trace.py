"""Hidden grader of routing-trace: the agent's routing_trace/step_<n>.npz against the trace this test
computes with the framework's own training step, from its own rebuild of the checkpoint.

Why rebuild: the checkpoint is reftrain's deterministic init (seed below), so the grader needs nothing
from the agent's tree but the trace files; an edited checkpoint or run config fails
test_the_given_checkpoint_and_run_config_are_unchanged instead of moving the reference. The framework
modules the step runs are restored from the original checkout (grading.toml), and the bundled
tokenizer is trained afresh into a temporary folder, so no file the agent wrote feeds the reference.
The checks are the task's shared ones (tasks/operate/routing-trace/checks/routing_checks.py); this
module supplies reftrain's trace.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from routing_checks import (  # noqa: F401  the shared checks, collected here with this module's `reference`
    STEPS,
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
CHECKPOINT_SEED = 1234  # prepare.py's
OVERRIDES = {"num_hidden_layers": 3, "mlp_only_layers": [0], "norm_topk_prob": False, "num_experts_per_tok": 2}
RUN = {
    "model": {"config": "checkpoint/config.json"},
    "training": {
        "device": "cpu",  # as runs/routing/train.toml: a CPU run on GPU hosts too
        "steps": STEPS,
        "log_interval": 1,
        "lr": 3e-3,
        "min_lr": 3e-4,
        "warmup_steps": 2,
        "seed": 0,
        "aux_loss_coef": 0.001,
    },
    "data": {"source": "corpus", "seq_len": 64, "global_batch_size": 4, "micro_batch_size": 2},
    "checkpoint": {"init_from_hf": "runs/routing/checkpoint"},
}


def _write_toml(run: dict) -> str:
    lines = []
    for section, values in run.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """{step: {layers, tokens, expert_ids, gate_weights, probs}} from reftrain's own training step."""
    import reftrain.tokenizer
    from reftrain.config import load_config
    from reftrain.hf_checkpoint import export_hf_checkpoint
    from reftrain.models import build_model
    from reftrain.train import setup, train_step

    scratch = tmp_path_factory.mktemp("routing")
    reftrain.tokenizer.CACHE_DIR = scratch / "tokenizer-cache"
    hf = json.loads((ROOT / "examples/models/qwen3_moe_tiny.json").read_text())
    hf.update(OVERRIDES)
    model = build_model(hf, device="cpu")
    model.init_weights(CHECKPOINT_SEED)
    export_hf_checkpoint(model, scratch / "checkpoint", hf)
    run_cfg = {**RUN, "checkpoint": {"init_from_hf": str(scratch / "checkpoint")}}
    (scratch / "train.toml").write_text(_write_toml(run_cfg))
    cfg = load_config(scratch / "train.toml")
    run = setup(cfg)
    pattern = re.compile(r"model\.layers\.(\d+)\.mlp\.gate")
    routers = {
        int(pattern.fullmatch(name).group(1)): module
        for name, module in run.pm.model.named_modules()
        if pattern.fullmatch(name)
    }
    layers = sorted(routers)
    seen = {layer: [] for layer in layers}
    for layer in layers:
        routers[layer].register_forward_hook(lambda m, a, out, layer=layer: seen[layer].append(out))
    batches = []
    next_batch = run.loader.next_batch
    run.loader.next_batch = lambda: batches.append(next_batch()) or batches[-1]
    steps = {}
    for step in range(STEPS):
        for layer in layers:
            seen[layer].clear()
        record = train_step(run, step)

        def stacked(i, layer_outputs=seen):
            return torch.stack([torch.cat([out[i].detach() for out in layer_outputs[layer]]) for layer in layers])

        steps[record["step"]] = {
            "layers": np.array(layers),
            "tokens": batches[-1].inputs.reshape(-1).numpy(),
            "expert_ids": stacked(2).numpy(),
            "gate_weights": stacked(1).float().numpy(),
            "probs": torch.softmax(stacked(0).float(), dim=-1).numpy(),
        }
    return {
        "steps": steps,
        "num_experts": hf["num_experts"],
        "sum_rule": f"norm_topk_prob = {hf['norm_topk_prob']}: not renormalised",
        "hf": hf,
        "checkpoint": scratch / "checkpoint",
    }


def test_the_given_checkpoint_and_run_config_are_unchanged(reference):
    from safetensors.torch import load_file

    rebuilt = load_file(reference["checkpoint"] / "model.safetensors")
    given = load_file(ROOT / "runs/routing/checkpoint/model.safetensors")
    assert sorted(given) == sorted(rebuilt), "runs/routing/checkpoint holds other tensors than the given checkpoint"
    changed = [key for key in rebuilt if not torch.equal(given[key], rebuilt[key])]
    assert not changed, f"runs/routing/checkpoint was changed: {changed[:3]}"
    run = tomllib.loads((ROOT / "runs/routing/train.toml").read_text())
    for section, values in RUN.items():
        for key, value in values.items():
            assert run.get(section, {}).get(key) == value, f"runs/routing/train.toml [{section}] {key} changed"
