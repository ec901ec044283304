"""The example run of getting-started on TorchTitan, as prepare.py writes it into the checkout:
runs/getting-started/ with run.sh, launch.py (TorchTitan's own trainer under torchrun, with the CPU
workarounds v0.2.2 needs and the CPU-sized qwen3 MoE flavor it registers), a word-level tokenizer, a
c4-style corpus and the 5-step config (no checkpoint: the trainer initialises the model from the seed).

Why here and in prepare.py both: the hidden test compares the text files of the checkout's run folder with
these, so an edited launcher or config fails test_the_example_run_is_unchanged; prepare.py pins this file's
sha256 (the prepared-checkout cache key hashes prepare.py, not tests/).
"""

from __future__ import annotations

from pathlib import Path

FLAVOR = "debugmodel_moe_start"
STEPS = 5
LAUNCHER = '''"""Runs runs/getting-started/train.toml with TorchTitan's own trainer on CPU: one process under torchrun.

TorchTitan v0.2.2's trainer assumes CUDA in a few places; the workarounds below patch this process only,
never the checkout: its device type and memory monitor, process-group timeouts, torch.histc on integer
expert ids. It also registers the config's model flavor: TorchTitan's qwen3 `debugmodel_moe` shrunk to
CPU size, with the experts' for-loop path (the grouped GEMM needs CUDA kernels).
Usage, from the checkout's root: .venv/bin/python runs/getting-started/launch.py   (run.sh does this)
"""

import dataclasses
import os
import sys
import tempfile
from pathlib import Path

if "LOCAL_RANK" not in os.environ:  # re-run under torchrun, which the trainer expects
    os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="hf-datasets-"))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path.cwd()), os.environ.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", __file__]
    os.execv(sys.executable, cmd + sys.argv[1:])

import torch  # noqa: E402

# The trainer reads its arguments from sys.argv, bound when torchtitan.config.manager is imported.
sys.argv = ["torchtitan.train", "--job.config_file", "runs/getting-started/train.toml"]
histc = torch.histc


def histc_any(t, *args, **kwargs):  # no int64 kernel on CPU; the router counts integer expert ids
    if t.is_floating_point():
        return histc(t, *args, **kwargs)
    return histc(t.float(), *args, **kwargs).to(t.dtype)


torch.histc = histc_any
from torchtitan.components import metrics  # noqa: E402
from torchtitan.distributed import parallel_dims  # noqa: E402
from torchtitan.distributed import utils as dist_utils  # noqa: E402
from torchtitan.models.qwen3 import qwen3_args  # noqa: E402
from torchtitan.tools import utils  # noqa: E402

for module in (parallel_dims, utils, dist_utils, metrics):
    module.device_type = "cpu"
for module in (utils, dist_utils, metrics):
    module.device_module = torch.cpu
dist_utils.set_pg_timeouts = lambda timeout, parallel_dims: None


class CpuMemory:
    device_name, device_capacity_gib = "cpu", 1.0

    def reset_peak_stats(self):
        pass

    def get_peak_stats(self):
        return metrics.DeviceMemStats(0.0, 0.0, 0.0, 0.0, 0, 0)


metrics.build_device_memory_monitor = CpuMemory
_base = qwen3_args["debugmodel_moe"]
qwen3_args["debugmodel_moe_start"] = dataclasses.replace(
    _base,
    vocab_size=256,
    dim=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    head_dim=16,
    hidden_dim=96,
    moe_inter_dim=64,
    max_seq_len=128,
    moe_args=dataclasses.replace(_base.moe_args, num_experts=8, top_k=2, use_grouped_mm=False),
)

import torchtitan.train as train  # noqa: E402

train.main(train.Trainer)
'''
RUN_CONFIG = """# The example run of getting-started: 5 steps of TorchTitan's trainer on CPU, a loss logged at each.
#   bash runs/getting-started/run.sh      (from the checkout's root, after `bash setup_env.sh`)

[job]
dump_folder = "runs/getting-started/outputs"
description = "getting started: 5 steps of a CPU-sized qwen3 MoE"

[model]
name = "qwen3"
flavor = "debugmodel_moe_start"
hf_assets_path = "runs/getting-started/hf_assets"

[training]
dataset = "c4_test"
dataset_path = "runs/getting-started/data"
local_batch_size = 4
seq_len = 128
steps = 5
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
"""
RUN_SH = """#!/usr/bin/env bash
# The example run of getting-started: TorchTitan's trainer on runs/getting-started/train.toml, on CPU, for
# 5 steps with the loss logged at each (launch.py says what it works around). From the checkout's root,
# after `bash setup_env.sh`:
#   bash runs/getting-started/run.sh
set -euo pipefail
exec .venv/bin/python runs/getting-started/launch.py
"""
TEXT_FILES = {"run.sh": RUN_SH, "launch.py": LAUNCHER, "train.toml": RUN_CONFIG}


def write_inputs(run: Path) -> None:
    """run.sh, launch.py, train.toml, hf_assets/ (the tokenizer) and data/train.jsonl into `run`."""
    import titan_inputs

    titan_inputs.write_tokenizer(run / "hf_assets")
    titan_inputs.write_corpus(run / "data" / "train.jsonl", 256)
    for name, text in TEXT_FILES.items():
        (run / name).write_text(text)
