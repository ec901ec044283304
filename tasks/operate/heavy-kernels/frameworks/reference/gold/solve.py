"""The gold solution's producer: runs runs/profile/train.toml's first two steps as warm-up, profiles the
third with torch.profiler (CPU), and writes the top 3 operators by self CPU time to heavy_kernels.csv.

`--wrong` writes the plausible mistake the wrong patch ships: the profile also covers the second (warm-up)
step, so every operator's call count and total time are those of two steps.
Usage, from a prepared checkout's root: python solve.py [--wrong]   (tasks/operate/make_patches.py runs it)
"""

import csv
import sys
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path.cwd()))
from reftrain.config import load_config  # noqa: E402
from reftrain.train import setup, train_step  # noqa: E402

wrong = "--wrong" in sys.argv[1:]
cfg = load_config("runs/profile/train.toml")
run = setup(cfg)
warmup = 1 if wrong else 2
for step in range(warmup):
    train_step(run, step)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for step in range(warmup, cfg.training.steps):
        train_step(run, step)
ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:3]
with open("heavy_kernels.csv", "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["kernel_name", "total_time_ms", "instances", "mean_time_ms"])
    for op in ops:
        total_ms = op.self_cpu_time_total / 1e3
        out.writerow([op.key, f"{total_ms:.3f}", op.count, f"{total_ms / op.count:.4f}"])
print(Path("heavy_kernels.csv").read_text())
