"""Hidden grader of heavy-kernels on TorchTitan: the agent's heavy_kernels.csv against this test's own
profile of the same run's third step: TorchTitan's own trainer (profile_reference.py, under torchrun with
the CPU shims of grader_support) on its own rebuild of the inputs (profile_run.py), torch.profiler's CPU
activity around Trainer.train_step, operators ranked by self CPU time. The checks are the task's shared
ones (tasks/operate/heavy-kernels/checks/kernel_checks.py); this module supplies TorchTitan's profile.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tomllib
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
    """{operator: (self CPU ms, calls)}, plus where the rebuilt inputs are."""

    rebuilt: Path


@pytest.fixture(scope="module")
def profile_of_step_3(tmp_path_factory):
    """{operator: (self CPU ms, calls)} of the run's third step. Calls are step 3's; times are the median of
    steps 3..5 (the trainer run on past the config's 3 steps), which run the same heavy operators as often,
    so the machine's noise is tamed."""
    scratch = tmp_path_factory.mktemp("profile")
    run = scratch / "runs" / "profile"
    run.mkdir(parents=True)
    profile_run.write_inputs(run)
    out = scratch / "profile.json"
    env = {
        **os.environ,
        "ATEBENCH_PROFILE_OUT": str(out),
        "HF_DATASETS_CACHE": str(scratch / "hf-datasets"),
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",  # the reference run is CPU (the gold was made so); a GPU host must not move it
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE), str(scratch), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    command += [str(HERE / "profile_reference.py"), "--job.config_file", "runs/profile/train.toml"]
    proc = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
    output = (proc.stdout + proc.stderr)[-5000:]
    assert proc.returncode == 0, f"the reference run failed (exit {proc.returncode}):\n{output}"
    profiles = [json.loads(out.read_text())[str(step)] for step in (3, 4, 5)]
    result = Profile(
        {
            op: (statistics.median(p.get(op, (0.0, 0))[0] for p in profiles), calls)
            for op, (_, calls) in profiles[0].items()
        }
    )
    result.rebuilt = run
    return result


def test_the_given_inputs_are_unchanged(profile_of_step_3):
    given_run, rebuilt_run = ROOT / "runs" / "profile", profile_of_step_3.rebuilt
    for rel in ("flavor.py", "hf_assets/tokenizer.json", "hf_assets/tokenizer_config.json", "data/train.jsonl"):
        assert (given_run / rel).read_bytes() == (rebuilt_run / rel).read_bytes(), f"runs/profile/{rel} was changed"
    given = tomllib.loads((given_run / "train.toml").read_text())
    assert given == tomllib.loads(profile_run.RUN_CONFIG), "runs/profile/train.toml was changed"
