"""The gold solution's producer: runs runs/profile/train.toml with TorchTitan's own trainer on CPU, steps 1
and 2 as warm-up, profiles step 3's train_step with torch.profiler (CPU) and writes the top 3 operators by
self CPU time to heavy_kernels.csv, as an agent would: a launcher with its own CPU workarounds, no
framework or config edit.

`--wrong` writes the plausible mistake the wrong patch ships: the profile also covers the second (warm-up)
step, so every operator's call count and total time are those of two steps.
Usage, from a prepared checkout's root: python solve.py [--wrong]   (tasks/operate/make_patches.py runs it)
"""

import csv
import os
import sys
import tempfile
from pathlib import Path

if "LOCAL_RANK" not in os.environ:  # re-run under torchrun, which the trainer expects
    os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="hf-datasets-"))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", __file__]
    os.execv(sys.executable, cmd + sys.argv[1:])

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

wrong = "--wrong" in sys.argv[1:]
# The trainer reads its arguments from sys.argv, bound when torchtitan.config.manager is imported.
sys.argv = ["torchtitan.train", "--job.config_file", "runs/profile/train.toml"]

# CPU workarounds: TorchTitan v0.2.2 names "cuda" as its device and asks CUDA for memory stats.
histc = torch.histc


def histc_any(t, *args, **kwargs):  # no int64 kernel on CPU; the router counts integer expert ids
    if t.is_floating_point():
        return histc(t, *args, **kwargs)
    return histc(t.float(), *args, **kwargs).to(t.dtype)


torch.histc = histc_any
from torchtitan.components import metrics  # noqa: E402
from torchtitan.distributed import parallel_dims  # noqa: E402
from torchtitan.distributed import utils as dist_utils  # noqa: E402
from torchtitan.tools import utils  # noqa: E402

for module in (parallel_dims, utils, dist_utils, metrics):
    module.device_type = "cpu"
for module in (utils, dist_utils, metrics):
    module.device_module = torch.cpu
dist_utils.set_pg_timeouts = lambda timeout, parallel_dims: None


class CpuMemory:
    device_name, device_capacity_gib = "cpu", 1.0

    def reset_peak_stats(self):
        pass

    def get_peak_stats(self):
        return metrics.DeviceMemStats(0.0, 0.0, 0.0, 0.0, 0, 0)


metrics.build_device_memory_monitor = CpuMemory

import torchtitan.train as train  # noqa: E402

PROFILED = (2, 3) if wrong else (3,)


class ProfilingTrainer(train.Trainer):
    def train_step(self, data_iterator):
        if self.step not in PROFILED:
            return super().train_step(data_iterator)
        if self.step == PROFILED[0]:
            self.prof = profile(activities=[ProfilerActivity.CPU])
            self.prof.__enter__()
        super().train_step(data_iterator)
        if self.step == PROFILED[-1]:
            self.prof.__exit__(None, None, None)
            ops = sorted(self.prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:3]
            with open("heavy_kernels.csv", "w", newline="") as f:
                out = csv.writer(f)
                out.writerow(["kernel_name", "total_time_ms", "instances", "mean_time_ms"])
                for op in ops:
                    total_ms = op.self_cpu_time_total / 1e3
                    out.writerow([op.key, f"{total_ms:.3f}", op.count, f"{total_ms / op.count:.4f}"])
            print(Path("heavy_kernels.csv").read_text())


train.main(ProfilingTrainer)
