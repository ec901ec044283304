"""Puts the run heavy-kernels profiles into the checkout: runs/profile/ with a CPU-sized qwen3 MoE flavor
module, a word-level tokenizer, a c4-style corpus and the 3-step run config.

The inputs come from tests/profile_run.py, the same code the hidden test rebuilds them with. The shape is
chosen so the top 3 operators of a step stand apart on one thread (see the hidden test's figures). The
prepared-checkout cache key hashes this file but not tests/, so this file pins profile_run.py's sha256
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

import profile_run  # noqa: E402
import titan_inputs  # noqa: E402

PROFILE_RUN_SHA256 = "bd7e284f4e26a952f6a606be808f331f02c5ef080aef63fa2fcc5d44650132ac"
if hashlib.sha256(Path(profile_run.__file__).read_bytes()).hexdigest() != PROFILE_RUN_SHA256:
    sys.exit("prepare: tests/profile_run.py changed; set PROFILE_RUN_SHA256 in this prepare.py to its new sha256")
TITAN_INPUTS_SHA256 = "053fb43cb63c127f514ac4e387f83ff52e1317961d7214123bab8bed9ed5cc5c"
if hashlib.sha256(Path(titan_inputs.__file__).read_bytes()).hexdigest() != TITAN_INPUTS_SHA256:
    sys.exit(
        "prepare: grader_support/titan_inputs.py changed; set TITAN_INPUTS_SHA256 in this prepare.py to its sha256"
    )

if not (root / "torchtitan/models/qwen3/__init__.py").is_file():
    sys.exit("prepare: torchtitan/models/qwen3/__init__.py does not exist; the framework changed, update prepare.py")
run = root / "runs" / "profile"
run.mkdir(parents=True)
profile_run.write_inputs(run)
