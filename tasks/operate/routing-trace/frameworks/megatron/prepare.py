"""Puts the run routing-trace traces into the checkout: runs/routing/train.toml (pretrain_gpt.py's flags, 4
iterations of a small MoE GPT from a fixed-seed initialisation, one GPU) and its launcher, and compiles
Megatron's dataset helper (the launcher then skips Megatron's own compile at run time).

The inputs come from tests/routing_run.py, the code the hidden test rebuilds them with. Megatron's router
renormalises its top-k (softmax over the top-k logits) and sees tokens sequence-position-major ([s, b]): a
trace must follow what the model does and order the tokens as the instruction says. The prepared-checkout
cache key hashes this file but not tests/ or grader_support/, so DIGESTS pins them (megatron_run.prepare): an
edit there fails here until its digest is updated, which re-prepares.

Usage: python prepare.py <checkout>
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "tests"), str(HERE.parents[4] / "frameworks" / "megatron" / "grader_support")]

import megatron_run  # noqa: E402
import routing_run  # noqa: E402

DIGESTS = {
    "routing_run.py": "db28371209633076aaaae5a0e946e9131a17e52a7ee76da8c8923b44779a4d70",
    "megatron_run.py": "6e44ac4bef9b9992389fa286b774a56cc37f7c61725517cd5d8e58a939c0e6d3",
}
megatron_run.prepare(Path(sys.argv[1]).resolve(), routing_run, DIGESTS)
