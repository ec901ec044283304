"""Runs reftrain.bench (through torchrun when --nproc > 1), prints its JSON, then PASS/FAIL.

    python .agents/skills/run-throughput-benchmark/check.py CONFIG [--nproc N] [--baseline FILE]
        [--tolerance 0.05] [--save FILE] [--section.key=value ...]

PASS: the run finished with a finite loss and, with --baseline, tokens_per_s >= (1 - tolerance) * baseline's.
"""

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--peak-tflops", default=None)
    parser.add_argument("--baseline", help="JSON line saved from an earlier run (--save)")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--save", help="write this run's JSON here (to use as a later baseline)")
    args, overrides = parser.parse_known_args()  # the rest are --section.key=value overrides
    launcher = (
        [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", str(args.nproc)]
        if args.nproc > 1
        else [sys.executable]
    )
    cmd = [
        *launcher,
        "-m",
        "reftrain.bench",
        args.config,
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
        *(["--peak-tflops", args.peak_tflops] if args.peak_tflops else []),
        *overrides,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or len(lines) != 1:
        print(proc.stderr[-3000:])
        print("FAIL: the benchmark did not finish with one JSON line")
        return 1
    result = json.loads(lines[0])
    print(json.dumps({k: result[k] for k in ("tokens_per_s", "tflops", "mfu", "peak_mem_gb", "step_time_s")}))
    if args.save:
        Path(args.save).write_text(lines[0] + "\n")
    if not math.isfinite(result["final_loss"]):
        print(f"FAIL: loss is {result['final_loss']}")
        return 1
    if args.baseline:
        base = json.loads(Path(args.baseline).read_text())["tokens_per_s"]
        if result["tokens_per_s"] < (1 - args.tolerance) * base:
            print(f"FAIL: {result['tokens_per_s']:.0f} tokens/s < {1 - args.tolerance:.2f} x baseline {base:.0f}")
            return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
