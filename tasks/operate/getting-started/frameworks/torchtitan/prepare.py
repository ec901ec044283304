"""Puts the example run of getting-started into the checkout: runs/getting-started/ with run.sh, its
launcher (TorchTitan's own trainer under torchrun on CPU, with the workarounds v0.2.2 needs there), a
CPU-sized qwen3 MoE flavor, a word-level tokenizer, a c4-style corpus and the 5-step config. Nothing else
changes: the sandbox (task.toml python = "bare") is what lacks the packages.

The inputs come from tests/example_run.py, whose text files the hidden test compares with the checkout's.
This file pins example_run.py's and titan_inputs.py's sha256 (bench.prepare_kit.import_pinned says why).

Usage: python prepare.py <checkout>
"""

import sys
from pathlib import Path

from bench.prepare_kit import import_pinned

root = Path(sys.argv[1]).resolve()
here = Path(__file__).resolve().parent
support = here.parents[4] / "frameworks" / "torchtitan" / "grader_support"  # the hidden tests get it as `support`
EXAMPLE_RUN_SHA256 = "e167f62ddf4ddee30df0fed10ce949f4106b3aea4f402849fc7f301b3da52d62"
TITAN_INPUTS_SHA256 = "053fb43cb63c127f514ac4e387f83ff52e1317961d7214123bab8bed9ed5cc5c"
import_pinned(support / "titan_inputs.py", TITAN_INPUTS_SHA256)  # example_run imports it
example_run = import_pinned(here / "tests" / "example_run.py", EXAMPLE_RUN_SHA256)

if not (root / "torchtitan/models/qwen3/__init__.py").is_file():
    sys.exit("prepare: torchtitan/models/qwen3/__init__.py does not exist; the framework changed, update prepare.py")
run = root / "runs" / "getting-started"
run.mkdir(parents=True)
example_run.write_inputs(run)
