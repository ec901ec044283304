"""The run heavy-kernels profiles on TorchTitan, as prepare.py writes it into the checkout: the model flavor
module, a word-level tokenizer, a c4-style corpus and the run config (no checkpoint: the trainer
initialises the model from the config's seed).

Why here and in prepare.py both: the hidden test rebuilds every input from this copy, so nothing the
agent wrote feeds the reference profile, and test_the_given_inputs_are_unchanged compares the two.
"""

from __future__ import annotations

from pathlib import Path

FLAVOR = "debugmodel_moe_profile"
STEPS = 3
FLAVOR_MODULE = '''"""TorchTitan's qwen3 `debugmodel_moe` shrunk to CPU size, registered as the qwen3 flavor
`debugmodel_moe_profile`; runs/profile/train.toml imports this module ([experimental] custom_import).
Only sizes change, plus the experts' for-loop path (use_grouped_mm = False; the grouped GEMM needs CUDA
kernels)."""

import dataclasses

from torchtitan.models.qwen3 import qwen3_args

_base = qwen3_args["debugmodel_moe"]
qwen3_args["debugmodel_moe_profile"] = dataclasses.replace(
    _base,
    vocab_size=256,
    dim=128,
    n_layers=2,
    n_heads=8,
    n_kv_heads=4,
    head_dim=16,
    hidden_dim=256,
    moe_inter_dim=64,
    max_seq_len=1024,
    moe_args=dataclasses.replace(_base.moe_args, num_experts=8, top_k=2, use_grouped_mm=False),
)
'''
RUN_CONFIG = """# The run to profile: 3 steps of TorchTitan's trainer; steps 1 and 2 are warm-up, step 3 is profiled.
#   torchrun --standalone --nproc-per-node=1 -m torchtitan.train --job.config_file runs/profile/train.toml
# (from the checkout's root, with the checkout on PYTHONPATH). This machine has no GPU, and TorchTitan
# v0.2.2's trainer assumes CUDA in a few places (its device type, the memory monitor, process-group
# timeouts, torch.histc on integer expert ids); running it on CPU is part of the job: work around those
# in your own launcher or script, not in this config.

[job]
dump_folder = "runs/profile/outputs"
description = "heavy kernels: 3 steps, profile step 3"

[experimental]
custom_import = "runs.profile.flavor"

[model]
name = "qwen3"
flavor = "debugmodel_moe_profile"
hf_assets_path = "runs/profile/hf_assets"

[training]
dataset = "c4_test"
dataset_path = "runs/profile/data"
local_batch_size = 2
global_batch_size = 4
seq_len = 1024
steps = 3
mixed_precision_param = "float32"

[lr_scheduler]
warmup_steps = 1

[activation_checkpoint]
mode = "none"

[metrics]
log_freq = 1
disable_color_printing = true

[debug]
seed = 0
"""


def write_inputs(run: Path) -> None:
    """hf_assets/ (the tokenizer), data/train.jsonl, flavor.py and train.toml into `run` (runs/profile)."""
    import titan_inputs

    titan_inputs.write_tokenizer(run / "hf_assets")
    titan_inputs.write_corpus(run / "data" / "train.jsonl", 256)
    (run / "flavor.py").write_text(FLAVOR_MODULE)
    (run / "train.toml").write_text(RUN_CONFIG)
