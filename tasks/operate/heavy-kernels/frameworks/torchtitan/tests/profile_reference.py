"""Runs TorchTitan's own trainer (under torchrun, the CPU shims of grader_support installed) on the run of
the current directory, runs/profile/train.toml, with the config's 3 steps, then 2 more steps that only add
timings; profiles each of steps 3..5 (train_step, torch.profiler CPU activity) and saves
{step: {operator: [self CPU ms, calls]}} to $ATEBENCH_PROFILE_OUT. Usage (under torchrun):
profile_reference.py <trainer args>
"""

import json
import os

import titan_train
from torch.profiler import ProfilerActivity, profile

titan_train.install()

import torchtitan.train as train  # noqa: E402

FIRST, LAST = 3, 5


class ProfilingTrainer(train.Trainer):
    def __init__(self, job_config):
        super().__init__(job_config)
        self.profiles = {}

    def should_continue_training(self) -> bool:
        # The config's step count (3) shapes the learning-rate schedule of steps 1..3; 4 and 5 only add timings.
        return self.step < LAST

    def train_step(self, data_iterator):
        if self.step < FIRST:
            return super().train_step(data_iterator)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            super().train_step(data_iterator)
        self.profiles[self.step] = {e.key: [e.self_cpu_time_total / 1e3, e.count] for e in prof.key_averages()}
        if self.step == LAST:
            with open(os.environ["ATEBENCH_PROFILE_OUT"], "w") as f:
                json.dump(self.profiles, f)


if __name__ == "__main__":
    train.main(ProfilingTrainer)
