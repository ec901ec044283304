"""Puts the run routing-trace traces into the checkout: runs/routing/ with a small Qwen3-MoE seed checkpoint,
its flavor module, a word-level tokenizer, a c4-style corpus and the run config.

The inputs come from tests/routing_run.py, the same code the hidden test rebuilds them with (the checkpoint
is TorchTitan's own init_weights after a fixed seed), so the grader needs nothing from the agent's tree but
the trace. The router does not renormalise its top-k (route_norm = False): a trace must follow what the
model does, not what MoE routers usually do. This file pins routing_run.py's and titan_inputs.py's sha256
(bench.prepare_kit.import_pinned says why).

Usage: python prepare.py <checkout>
"""

import sys
from pathlib import Path

from bench.prepare_kit import import_pinned

root = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(root))  # the checkout's own torchtitan makes the checkpoint, not an installed one
here = Path(__file__).resolve().parent
support = here.parents[4] / "frameworks" / "torchtitan" / "grader_support"  # the hidden tests get it as `support`
ROUTING_RUN_SHA256 = "7fd51270596e1323a4c5f319f56a137b99c6fc88f49b6d11acc5040cbe28cc24"
TITAN_INPUTS_SHA256 = "053fb43cb63c127f514ac4e387f83ff52e1317961d7214123bab8bed9ed5cc5c"
import_pinned(support / "titan_inputs.py", TITAN_INPUTS_SHA256)  # routing_run imports it
routing_run = import_pinned(here / "tests" / "routing_run.py", ROUTING_RUN_SHA256)

run = root / "runs" / "routing"
run.mkdir(parents=True)
routing_run.write_inputs(run)
routing_run.write_checkpoint(run / "checkpoint")
