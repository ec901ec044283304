"""Puts the run routing-trace traces into the checkout: runs/routing/ with a small Qwen3-MoE seed checkpoint,
its flavor module, a word-level tokenizer, a c4-style corpus and the run config.

The inputs come from tests/routing_run.py, the same code the hidden test rebuilds them with (the checkpoint
is TorchTitan's own init_weights after a fixed seed), so the grader needs nothing from the agent's tree but
the trace. The router does not renormalise its top-k (route_norm = False): a trace must follow what the
model does, not what MoE routers usually do. The prepared-checkout cache key hashes this file but not
tests/, so this file pins routing_run.py's sha256 (below): an edit there fails here until the digest is
updated, which re-prepares.

Usage: python prepare.py <checkout>
"""

import hashlib
import sys
from pathlib import Path

root = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(root))  # the checkout's own torchtitan makes the checkpoint, not an installed one
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
# titan_inputs (the tokenizer and corpus), which the hidden tests get as grading.toml support
sys.path.insert(0, str(Path(__file__).resolve().parents[5] / "frameworks" / "torchtitan" / "grader_support"))

import routing_run  # noqa: E402
import titan_inputs  # noqa: E402

ROUTING_RUN_SHA256 = "7fd51270596e1323a4c5f319f56a137b99c6fc88f49b6d11acc5040cbe28cc24"
if hashlib.sha256(Path(routing_run.__file__).read_bytes()).hexdigest() != ROUTING_RUN_SHA256:
    sys.exit("prepare: tests/routing_run.py changed; set ROUTING_RUN_SHA256 in this prepare.py to its new sha256")
TITAN_INPUTS_SHA256 = "053fb43cb63c127f514ac4e387f83ff52e1317961d7214123bab8bed9ed5cc5c"
if hashlib.sha256(Path(titan_inputs.__file__).read_bytes()).hexdigest() != TITAN_INPUTS_SHA256:
    sys.exit(
        "prepare: grader_support/titan_inputs.py changed; set TITAN_INPUTS_SHA256 in this prepare.py to its sha256"
    )

run = root / "runs" / "routing"
run.mkdir(parents=True)
routing_run.write_inputs(run)
routing_run.write_checkpoint(run / "checkpoint")
