"""The example run of getting-started on Megatron-LM, as prepare.py writes it into the checkout:
runs/getting-started/ with run.sh, launch.py (frameworks/megatron/grader_support/megatron_run.py's launcher of
Megatron's own pretrain_gpt.py) and train.toml (the small MoE GPT of the operate tasks, local spec, mock data,
5 iterations on one GPU: Megatron's MoE path needs CUDA).

Why here and in prepare.py both: the hidden test compares the run folder's files with these, so an edited
launcher or config fails test_the_example_run_is_unchanged; prepare.py pins this file's sha256 (the
prepared-checkout cache key hashes prepare.py, not tests/).
"""

from __future__ import annotations

from pathlib import Path

import megatron_run

STEPS = 5
HEADER = """# getting-started: Megatron-LM's pretrain_gpt.py for 5 iterations of a small MoE GPT (local spec, no
# Transformer Engine, mock data) on one GPU. Run it from the checkout's root: bash runs/getting-started/run.sh"""
RUN_CONFIG = megatron_run.run_config(HEADER, f"train-iters = {STEPS}\n")
LAUNCHER = megatron_run.LAUNCH.format(run="runs/getting-started")
RUN_SH = """#!/usr/bin/env bash
# The example run: Megatron-LM's pretrain_gpt.py (train.toml's flags, through launch.py) for 5 iterations on one
# GPU, with the checkout's own environment (.venv). From the checkout's root: bash runs/getting-started/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec .venv/bin/python -m torch.distributed.run --standalone --nproc_per_node 1 runs/getting-started/launch.py "$@"
"""
TEXT_FILES = {"run.sh": RUN_SH, "launch.py": LAUNCHER, "train.toml": RUN_CONFIG}


def write_inputs(run: Path) -> None:
    """run.sh, launch.py and train.toml into `run`."""
    run.mkdir(parents=True, exist_ok=True)
    for name, text in TEXT_FILES.items():
        (run / name).write_text(text)
