"""The run routing-trace traces on TorchTitan, as prepare.py writes it into the checkout: the model flavor
module, a word-level tokenizer, a c4-style corpus, the seed checkpoint and the run config.

Why here and in prepare.py both: the hidden test rebuilds every input from this copy, so nothing the
agent wrote feeds the reference, and test_the_given_inputs_are_unchanged compares the two; a drift between
this file and prepare.py fails validation there. Keep the two in step.
"""

from __future__ import annotations

from pathlib import Path

FLAVOR = "debugmodel_moe_cpu"
CHECKPOINT_SEED = 1234
STEPS = 4
FLAVOR_MODULE = '''"""TorchTitan's qwen3 `debugmodel_moe` shrunk to CPU size, registered as the qwen3 flavor
`debugmodel_moe_cpu`; runs/routing/train.toml imports this module ([experimental] custom_import).
Only sizes change, plus: the router does not renormalise its top-k (route_norm = False), and the experts
use their for-loop path (use_grouped_mm = False; the grouped GEMM needs CUDA kernels)."""

import dataclasses

from torchtitan.models.qwen3 import qwen3_args

_base = qwen3_args["debugmodel_moe"]
qwen3_args["debugmodel_moe_cpu"] = dataclasses.replace(
    _base,
    vocab_size=256,
    dim=64,
    n_layers=3,
    n_heads=4,
    n_kv_heads=2,
    head_dim=16,
    hidden_dim=96,
    moe_inter_dim=64,
    max_seq_len=32,
    moe_args=dataclasses.replace(_base.moe_args, num_experts=8, top_k=2, route_norm=False, use_grouped_mm=False),
)
'''
RUN_CONFIG = """# The run whose routing is traced: 4 steps of TorchTitan's trainer from the checkpoint beside this file.
#   torchrun --standalone --nproc-per-node=1 -m torchtitan.train --job.config_file runs/routing/train.toml
# (from the checkout's root, with the checkout on PYTHONPATH). This machine has no GPU, and TorchTitan
# v0.2.2's trainer assumes CUDA in a few places (its device type, the memory monitor, process-group
# timeouts, torch.histc on integer expert ids); running it on CPU is part of the job: work around those
# in your own launcher or script, not in this config.

[job]
dump_folder = "runs/routing/outputs"
description = "routing trace: 4 steps from runs/routing/checkpoint"

[experimental]
custom_import = "runs.routing.flavor"

[model]
name = "qwen3"
flavor = "debugmodel_moe_cpu"
hf_assets_path = "runs/routing/hf_assets"

[training]
dataset = "c4_test"
dataset_path = "runs/routing/data"
local_batch_size = 2
global_batch_size = 4
seq_len = 32
steps = 4
mixed_precision_param = "float32"

[optimizer]
lr = 3e-3

[lr_scheduler]
warmup_steps = 2

[activation_checkpoint]
mode = "none"

[metrics]
log_freq = 1
disable_color_printing = true

[debug]
seed = 0
deterministic = true

[checkpoint]
enable = true
load_only = true
initial_load_path = "runs/routing/checkpoint"
"""


def write_inputs(run: Path) -> None:
    """hf_assets/ (the tokenizer), data/train.jsonl, flavor.py and train.toml into `run` (runs/routing)."""
    import titan_inputs

    titan_inputs.write_tokenizer(run / "hf_assets")
    titan_inputs.write_corpus(run / "data" / "train.jsonl", 64)
    (run / "flavor.py").write_text(FLAVOR_MODULE)
    (run / "train.toml").write_text(RUN_CONFIG)


def flavor_args():
    """The flavor's model args, by running the module text (registers the flavor in this process)."""
    from torchtitan.models.qwen3 import qwen3_args

    exec(compile(FLAVOR_MODULE, "flavor.py", "exec"), {})
    return qwen3_args[FLAVOR]


def write_checkpoint(folder: Path) -> None:
    """The seed checkpoint: the flavor built on meta and initialised by TorchTitan's own init_weights
    after torch.manual_seed(CHECKPOINT_SEED), saved with torch.distributed.checkpoint (the trainer's
    format; keys as the trainer's model-only load expects them)."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torchtitan.protocols.train_spec import get_train_spec

    args = flavor_args()
    torch.manual_seed(CHECKPOINT_SEED)
    with torch.device("meta"):
        model = get_train_spec("qwen3").model_cls(args)
    model.to_empty(device="cpu")
    with torch.no_grad():
        model.init_weights(buffer_device=torch.device("cpu"))
    dcp.save({k: v.detach().clone() for k, v in model.state_dict().items()}, checkpoint_id=str(folder))
