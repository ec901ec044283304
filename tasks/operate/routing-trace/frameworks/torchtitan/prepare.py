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

import routing_run  # noqa: E402

ROUTING_RUN_SHA256 = "b4d9148ea249ac150fec3fcd13acbc6f0f2ccc8af91eeb80fd9d94c3c1029a51"
if hashlib.sha256(Path(routing_run.__file__).read_bytes()).hexdigest() != ROUTING_RUN_SHA256:
    sys.exit("prepare: tests/routing_run.py changed; set ROUTING_RUN_SHA256 in this prepare.py to its new sha256")

run = root / "runs" / "routing"
run.mkdir(parents=True)
routing_run.write_inputs(run)
routing_run.write_checkpoint(run / "checkpoint")
