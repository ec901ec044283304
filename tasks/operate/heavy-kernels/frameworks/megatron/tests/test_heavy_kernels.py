"""Hidden grader of heavy-kernels on Megatron-LM: the agent's heavy_kernels.csv against this test's own profile of
the same run's third iteration: Megatron's own pretrain_gpt.py (profile_reference.py, under torchrun on the
trial's GPU) run from the graded checkout with its own rebuild of the run (profile_run.py), torch.profiler's
CUDA activity around train_step, kernels ranked by their GPU time. The checks are the task's shared ones
(tasks/operate/heavy-kernels/checks/kernel_checks.py); this module supplies Megatron's profile.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import profile_run
import pytest
from kernel_checks import (  # noqa: F401  the shared checks, collected here with this module's `profile_of_step_3`
    rows,
    test_csv_has_the_header_and_three_numeric_rows,
    test_instances_are_the_calls_of_one_step,
    test_kernels_are_the_profiles_top_three,
    test_rows_are_by_total_time_and_mean_is_total_over_instances,
    test_total_times_are_the_steps_within_a_generous_factor,
)

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


class Profile(dict):
    """{kernel: (GPU ms, calls)}, plus where the rebuilt inputs are."""

    rebuilt: Path


def _failure(log: str) -> str:
    """What of a failed run's log to show: from the first traceback on (torchrun's own summary follows it)."""
    start = log.find("Traceback (most recent call last)")
    return log[start : start + 8000] if start >= 0 else log[-8000:]


@pytest.fixture(scope="module")
def profile_of_step_3(tmp_path_factory):
    """{kernel: (GPU ms, calls)} of the run's third iteration. Calls are iteration 3's; times are the median of
    iterations 3..5 (the run goes on past the config's 3 iterations), which run the same kernels as often."""
    scratch = tmp_path_factory.mktemp("profile")
    run = scratch / "runs" / "profile"
    profile_run.write_inputs(run)
    out = scratch / "profile.json"
    env = {
        **os.environ,
        "ATEBENCH_PROFILE_OUT": str(out),
        "CUDA_DEVICE_MAX_CONNECTIONS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    command += [str(HERE / "profile_reference.py"), str(run / "launch.py")]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = _failure(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"the reference run failed (exit {proc.returncode}):\n{output}"
    profiles = [json.loads(out.read_text())[str(step)] for step in (3, 4, 5)]
    result = Profile(
        {
            kernel: (statistics.median(p.get(kernel, (0.0, 0))[0] for p in profiles), calls)
            for kernel, (_, calls) in profiles[0].items()
        }
    )
    result.rebuilt = run
    return result


def test_the_given_inputs_are_unchanged(profile_of_step_3):
    given_run, rebuilt_run = ROOT / "runs" / "profile", profile_of_step_3.rebuilt
    for rel in ("train.toml", "launch.py"):
        assert (given_run / rel).read_bytes() == (rebuilt_run / rel).read_bytes(), f"runs/profile/{rel} was changed"
