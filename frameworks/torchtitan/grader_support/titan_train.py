"""Runs TorchTitan's own trainer (torchtitan.train) on CPU/gloo for the hidden checks: the CPU shims plus
the trainer's CUDA-only spots, and the tiny Qwen3-MoE of titan_case.py registered as qwen3 flavor
"atebench_tiny". Every argument is passed to the trainer. Usage (under torchrun): titan_train.py <args>

Why a launcher and not a config: the shims patch this process only; the agent's tree is not touched.
"""

import sys
import torch

import titan_case as case
from torchtitan.components import metrics
from torchtitan.distributed import utils as dist_utils
from torchtitan.models.qwen3 import qwen3_args

FLAVOR = "atebench_tiny"


class CpuMemoryMonitor:
    """Stands in for DeviceMemoryMonitor, which asks the CUDA allocator."""

    device_name, device_capacity_gib = "cpu", 1.0

    def reset_peak_stats(self):
        pass

    def get_peak_stats(self):
        return metrics.DeviceMemStats(0.0, 0.0, 0.0, 0.0, 0, 0)


def install() -> None:
    if not torch.cuda.is_available():
        dist_utils.device_type, dist_utils.device_module = "cpu", torch.cpu
        metrics.device_type, metrics.device_module = "cpu", torch.cpu
        # it calls barrier(device_ids=...), which gloo rejects; the default timeouts serve on CPU
        dist_utils.set_pg_timeouts = lambda timeout, parallel_dims: None
        metrics.build_device_memory_monitor = CpuMemoryMonitor
    qwen3_args[FLAVOR] = case.tiny_args()


if __name__ == "__main__":
    install()
    import torchtitan.train as train

    sys.argv = ["torchtitan.train", *sys.argv[1:]]
    train.main(train.Trainer)
