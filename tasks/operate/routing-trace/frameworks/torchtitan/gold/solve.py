"""The gold solution's producer: runs the 4-step job of runs/routing/train.toml with TorchTitan's own
trainer on CPU and writes the routing trace to routing_trace/step_<n>.npz, as an agent would: a launcher
with its own CPU workarounds and forward hooks on the routers, no framework or config edit.

`--wrong` writes the plausible mistake the wrong patch ships: gate weights renormalised over the top-k,
as most MoE routers do (and debugmodel_moe's route_norm = True), though this flavor's router does not.
Usage, from a prepared checkout's root: python solve.py [--wrong]   (tasks/operate/make_patches.py runs it)
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

if "LOCAL_RANK" not in os.environ:  # re-run under torchrun, which the trainer expects
    os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="hf-datasets-"))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", __file__]
    os.execv(sys.executable, cmd + sys.argv[1:])

import numpy as np  # noqa: E402
import torch  # noqa: E402

wrong = "--wrong" in sys.argv[1:]
# The trainer reads its arguments from sys.argv, bound when torchtitan.config.manager is imported.
sys.argv = ["torchtitan.train", "--job.config_file", "runs/routing/train.toml"]

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

OUT = Path("routing_trace")


class TracingTrainer(train.Trainer):
    def __init__(self, job_config):
        super().__init__(job_config)
        model = self.model_parts[0]
        self.layers = sorted(int(i) for i, block in model.layers.items() if getattr(block, "moe_enabled", False))
        self.calls = {i: [] for i in self.layers}
        self.tokens = []
        for i in self.layers:
            model.layers[str(i)].moe.router.register_forward_hook(
                lambda m, args, out, i=i: self.calls[i].append((out[1].detach(), out[0].detach()))
            )
        model.tok_embeddings.register_forward_hook(lambda m, args, out: self.tokens.append(args[0].reshape(-1)))

    def train_step(self, data_iterator):
        for i in self.layers:
            self.calls[i].clear()
        self.tokens.clear()
        super().train_step(data_iterator)
        ids = torch.stack([torch.cat([c[0] for c in self.calls[i]]) for i in self.layers])
        weights = torch.stack([torch.cat([c[1] for c in self.calls[i]]) for i in self.layers]).float()
        if wrong:
            weights = weights / weights.sum(-1, keepdim=True)
        order = weights.argsort(dim=-1, descending=True, stable=True)  # topk(sorted=False): highest first
        OUT.mkdir(exist_ok=True)
        np.savez(
            OUT / f"step_{self.step}.npz",
            layers=np.array(self.layers, dtype=np.int64),
            tokens=torch.cat(self.tokens).numpy().astype(np.int64),
            expert_ids=ids.gather(-1, order).numpy().astype(np.int64),
            gate_weights=weights.gather(-1, order).numpy().astype(np.float32),
        )


dump = Path("runs/routing/outputs")
existed = dump.exists()
train.main(TracingTrainer)
if not existed:
    shutil.rmtree(dump, ignore_errors=True)  # the trainer's dump folder is no part of the answer
