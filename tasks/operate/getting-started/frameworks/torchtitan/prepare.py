"""Puts the example run of getting-started into the checkout: runs/getting-started/ with run.sh, its
launcher (TorchTitan's own trainer under torchrun on CPU, with the workarounds v0.2.2 needs there), a
CPU-sized qwen3 MoE flavor, a word-level tokenizer, a c4-style corpus and the 5-step config. Nothing else
changes: the sandbox (task.toml python = "bare") is what lacks the packages.

The inputs come from tests/example_run.py, whose text files the hidden test compares with the checkout's.
The prepared-checkout cache key hashes this file but not tests/, so this file pins example_run.py's sha256
(below): an edit there fails here until the digest is updated, which re-prepares.

Usage: python prepare.py <checkout>
"""

import hashlib
import sys
from pathlib import Path

root = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
# titan_inputs (the tokenizer and corpus), which the hidden tests get as grading.toml support
sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "frameworks" / "torchtitan" / "grader_support"))

import example_run  # noqa: E402
import titan_inputs  # noqa: E402

EXAMPLE_RUN_SHA256 = "e167f62ddf4ddee30df0fed10ce949f4106b3aea4f402849fc7f301b3da52d62"
if hashlib.sha256(Path(example_run.__file__).read_bytes()).hexdigest() != EXAMPLE_RUN_SHA256:
    sys.exit("prepare: tests/example_run.py changed; set EXAMPLE_RUN_SHA256 in this prepare.py to its new sha256")
TITAN_INPUTS_SHA256 = "053fb43cb63c127f514ac4e387f83ff52e1317961d7214123bab8bed9ed5cc5c"
if hashlib.sha256(Path(titan_inputs.__file__).read_bytes()).hexdigest() != TITAN_INPUTS_SHA256:
    sys.exit(
        "prepare: grader_support/titan_inputs.py changed; set TITAN_INPUTS_SHA256 in this prepare.py to its sha256"
    )

if not (root / "torchtitan/models/qwen3/__init__.py").is_file():
    sys.exit("prepare: torchtitan/models/qwen3/__init__.py does not exist; the framework changed, update prepare.py")
run = root / "runs" / "getting-started"
run.mkdir(parents=True)
example_run.write_inputs(run)
