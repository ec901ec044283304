"""Runs TorchTitan's own trainer (torchtitan.train) on CPU/gloo for the hidden checks: the CPU shims plus
the trainer's CUDA-only spots, and the tiny Qwen3-MoE of titan_case.py registered as qwen3 flavor
"atebench_tiny". Every argument is passed to the trainer. Usage (under torchrun): titan_train.py <args>
With ATEBENCH_PADDED_BATCHES=1 the trainer's batches come from padded_batches() instead of its dataloader.

Why a launcher and not a config: the shims patch this process only; the agent's tree is not touched.
"""

import sys

import titan_case as case
import torch
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


PADS = (0, 5, 20, 28)  # ignored label positions at the end of each row: ranks of dp=2 get 5 and 48


def padded_batches(trainer, data_iterable):
    """The same global batch every layout sees (4 rows, seeded per step), this rank's share of its rows,
    labels padded unevenly with the ignore index; replaces Trainer.batch_generator."""
    import torch.distributed as dist
    from torchtitan.components.loss import IGNORE_INDEX

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    rows = len(PADS) // world
    step = 0
    while True:
        step += 1
        g = torch.Generator().manual_seed(1000 + step)
        tokens = torch.randint(3, 203, (len(PADS), case.SEQ), generator=g)
        labels = torch.randint(3, 203, (len(PADS), case.SEQ), generator=g)
        for row, pad in enumerate(PADS):
            if pad:
                labels[row, -pad:] = IGNORE_INDEX
        mine = slice(rank * rows, (rank + 1) * rows)
        trainer.ntokens_seen += labels[mine].numel()
        trainer.metrics_processor.ntokens_since_last_log += labels[mine].numel()
        trainer.metrics_processor.data_loading_times.append(0.0)
        yield {"input": tokens[mine].clone()}, labels[mine].clone()


if __name__ == "__main__":
    install()
    import os

    import torchtitan.train as train

    if os.environ.get("ATEBENCH_PADDED_BATCHES") == "1":
        train.Trainer.batch_generator = padded_batches

    sys.argv = ["torchtitan.train", *sys.argv[1:]]
    train.main(train.Trainer)
