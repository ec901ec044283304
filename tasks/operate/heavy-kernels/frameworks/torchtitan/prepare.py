"""Puts the run heavy-kernels profiles into the checkout: runs/profile/ with a CPU-sized qwen3 MoE flavor
module, a word-level tokenizer, a c4-style corpus and the 3-step run config.

The inputs come from tests/profile_run.py, the same code the hidden test rebuilds them with. The shape is
chosen so the top 3 operators of a step stand apart on one thread (see the hidden test's figures). This
file pins profile_run.py's and titan_inputs.py's sha256 (bench.prepare_kit.import_pinned says why).

Usage: python prepare.py <checkout>
"""

import sys
from pathlib import Path

from bench.prepare_kit import import_pinned

root = Path(sys.argv[1]).resolve()
here = Path(__file__).resolve().parent
support = here.parents[4] / "frameworks" / "torchtitan" / "grader_support"  # the hidden tests get it as `support`
PROFILE_RUN_SHA256 = "bd7e284f4e26a952f6a606be808f331f02c5ef080aef63fa2fcc5d44650132ac"
TITAN_INPUTS_SHA256 = "053fb43cb63c127f514ac4e387f83ff52e1317961d7214123bab8bed9ed5cc5c"
import_pinned(support / "titan_inputs.py", TITAN_INPUTS_SHA256)  # profile_run imports it
profile_run = import_pinned(here / "tests" / "profile_run.py", PROFILE_RUN_SHA256)

if not (root / "torchtitan/models/qwen3/__init__.py").is_file():
    sys.exit("prepare: torchtitan/models/qwen3/__init__.py does not exist; the framework changed, update prepare.py")
run = root / "runs" / "profile"
run.mkdir(parents=True)
profile_run.write_inputs(run)
