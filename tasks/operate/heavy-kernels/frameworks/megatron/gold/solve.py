"""The gold solution's producer: runs runs/profile/train.toml through its launcher (Megatron's pretrain_gpt.py,
3 iterations on the GPU), profiles iteration 3 with torch.profiler (CPU and CUDA activities, the GPU
synchronised before and after, so the whole step's kernels are in) and writes the top 3 CUDA kernels by GPU
time to heavy_kernels.csv, as an agent would: train_step wrapped from a script, no framework or config edit.

`--wrong` writes the plausible mistake the wrong patch ships: the profile also covers iteration 2 (a warm-up
iteration), so every count is doubled.
Usage, from a prepared checkout's root: python solve.py [--wrong]   (tasks/operate/make_patches.py runs it)
"""

import csv
import os
import runpy
import sys
from pathlib import Path

if "LOCAL_RANK" not in os.environ:  # re-run under torchrun, which pretrain_gpt.py expects
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", __file__]
    os.execv(sys.executable, cmd + sys.argv[1:])

import megatron.training.training as training  # noqa: E402
import torch  # noqa: E402
from torch.autograd import DeviceType  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

PROFILED = (2, 3) if "--wrong" in sys.argv[1:] else (3,)
profiler = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])


def train_step(*args, **kwargs):
    n = kwargs["iteration"] + 1  # the iteration the log prints
    if n == PROFILED[0]:
        torch.cuda.synchronize()
        profiler.start()
    result = step_once(*args, **kwargs)
    if n == PROFILED[-1]:
        torch.cuda.synchronize()
        profiler.stop()
        # the CUDA activity's kernels, copies and sets, less the ranges of record_function annotations
        # (Optimizer.step#AdamW.step) on the GPU timeline, which are no kernels
        kernels = [
            e
            for e in profiler.key_averages()
            if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
        ]
        top = sorted(kernels, key=lambda e: e.self_device_time_total, reverse=True)[:3]
        with open("heavy_kernels.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["kernel_name", "total_time_ms", "instances", "mean_time_ms"])
            for e in top:
                total = e.self_device_time_total / 1e3
                writer.writerow([e.key, f"{total:.4f}", e.count, f"{total / e.count:.6f}"])
    return result


step_once, training.train_step = training.train_step, train_step
sys.argv = ["runs/profile/launch.py"]
runpy.run_path("runs/profile/launch.py", run_name="__main__")
