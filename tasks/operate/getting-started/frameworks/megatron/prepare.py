"""Puts the example run of getting-started into a Megatron-LM checkout: runs/getting-started/ with run.sh, its
launcher (Megatron's own pretrain_gpt.py) and train.toml (5 iterations of a small MoE GPT on one GPU), and builds
Megatron's dataset helper into the checkout, so the run skips Megatron's own `make` (which would need pybind11 in
the agent's environment). Nothing else changes: the sandbox (task.toml python = "bare") is what lacks the packages.

The inputs come from tests/example_run.py, whose files the hidden test compares with the checkout's. This file
pins example_run.py's and megatron_run.py's sha256 (bench.prepare_kit.import_pinned says why).

Usage: python prepare.py <checkout>
"""

import sys
from pathlib import Path

from bench.prepare_kit import import_pinned

root = Path(sys.argv[1]).resolve()
here = Path(__file__).resolve().parent
support = here.parents[4] / "frameworks" / "megatron" / "grader_support"  # the hidden tests get it as `support`
MEGATRON_RUN_SHA256 = "6e44ac4bef9b9992389fa286b774a56cc37f7c61725517cd5d8e58a939c0e6d3"
EXAMPLE_RUN_SHA256 = "2c1b36dc30e77964b5611766e829834adfec81a637e52f25b71c8c429cf4e4dd"
megatron_run = import_pinned(support / "megatron_run.py", MEGATRON_RUN_SHA256)  # example_run imports it
example_run = import_pinned(here / "tests" / "example_run.py", EXAMPLE_RUN_SHA256)

for anchor in megatron_run.ANCHORS:
    if not (root / anchor).is_file():
        sys.exit(f"prepare: {anchor} does not exist; the framework changed, update prepare.py")
example_run.write_inputs(root / "runs" / "getting-started")
megatron_run.build_dataset_helper(root)
