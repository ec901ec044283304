"""Puts the run heavy-kernels profiles into the checkout: runs/profile/train.toml (pretrain_gpt.py's flags, 3
iterations of a small MoE GPT in bf16 on one GPU) and its launcher, and compiles Megatron's dataset helper (the
launcher then skips Megatron's own compile at run time).

The inputs come from tests/profile_run.py, the code the hidden test rebuilds them with. The prepared-checkout
cache key hashes this file but not tests/ or grader_support/, so DIGESTS pins them (megatron_run.prepare): an
edit there fails here until its digest is updated, which re-prepares.

Usage: python prepare.py <checkout>
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "tests"), str(HERE.parents[4] / "frameworks" / "megatron" / "grader_support")]

import megatron_run  # noqa: E402
import profile_run  # noqa: E402

DIGESTS = {
    "profile_run.py": "25266f1947f0b655b121160783fb9e7047eecdd6a60b31d31ad6dc8c74e9ae9f",
    "megatron_run.py": "6e44ac4bef9b9992389fa286b774a56cc37f7c61725517cd5d8e58a939c0e6d3",
}
megatron_run.prepare(Path(sys.argv[1]).resolve(), profile_run, DIGESTS)
