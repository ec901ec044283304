"""Distributed correctness ladder for one or all models; prints one PASS/FAIL line per rung and overall.

python .agents/skills/validate-correctness/check.py [MODEL_TYPE ...] [--worlds 1,2,4] [--gpu]
"""

import argparse
import sys

import torch

from reftrain.models import MODELS
from reftrain.testing import cases_for, ladder_rungs, run_distributed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", default=sorted(MODELS), help=f"default: all of {sorted(MODELS)}")
    parser.add_argument("--worlds", default="1,2,4", help="process counts to run (CPU: any; GPU: <= GPUs)")
    parser.add_argument("--gpu", action="store_true", help="NCCL + bf16 with the GPU tolerances")
    args = parser.parse_args()
    extra = dict(device="cuda", dtype="bfloat16", loss_rtol=2e-2, loss_atol=2e-2, grad_tol=5e-2) if args.gpu else {}
    ok = True
    for model in args.models:
        for world in map(int, args.worlds.split(",")):
            if args.gpu and torch.cuda.device_count() < world:
                print(f"SKIP {model} world{world}: {torch.cuda.device_count()} GPUs visible")
                continue
            cases = cases_for(model, world, **extra)
            try:
                results = run_distributed(ladder_rungs, world, cases, device_type="cuda" if args.gpu else "cpu")
                worst = max(r["worst_grad_distance"] for per_rank in results for r in per_rank)
                print(f"PASS {model} world{world} {[c.name for c in cases]} worst grad distance {worst:.2e}")
            except AssertionError as e:
                ok = False
                print(f"FAIL {model} world{world}\n{e}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
