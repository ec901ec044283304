"""Hidden grader of heavy-kernels on Megatron-LM: the agent's heavy_kernels.csv against this test's own profile of
the same run's third iteration: Megatron's own pretrain_gpt.py (profile_reference.py, under torchrun on the
trial's GPU) run from the graded checkout with its own rebuild of the run (profile_run.py), torch.profiler's
CUDA activity around train_step, kernels ranked by their GPU time.

Call counts of one iteration are deterministic, so `instances` must equal the profile's exactly (that is what
catches a profile that also covers a warm-up iteration). Times move less on a GPU than on a shared CPU, but
the kernels are still matched by the margin rule and times by the factor of the CPU variants (figures below
and in tasks/operate/README.md).
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import profile_run
import pytest

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CSV = ROOT / "heavy_kernels.csv"
HEADER = ["kernel_name", "total_time_ms", "instances", "mean_time_ms"]
# A kernel the profile puts in its top 3 with at least this many times the 4th's time must be listed; every
# listed one must be in the profile's top 5 (the rule of the CPU variants).
CLEAR_MARGIN = 1.5
ALLOWED_RANKS = 5
# Times: within this factor of the profile's (the CPU variants' factor; a CSV in microseconds or seconds is
# 1000x off, a profile of two iterations fails on `instances`, which is exact).
TIME_FACTOR = 10.0


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


@pytest.fixture(scope="module")
def rows():
    assert CSV.is_file(), "no heavy_kernels.csv in the checkout's root"
    with CSV.open(newline="") as f:
        table = list(csv.reader(f))
    assert table and table[0] == HEADER, f"heavy_kernels.csv must start with the header {','.join(HEADER)}"
    body = [row for row in table[1:] if row]
    assert len(body) == 3, f"heavy_kernels.csv has {len(body)} data rows; it needs the top 3"
    parsed = []
    for row in body:
        assert len(row) == 4, f"row {row} does not have 4 fields"
        name, total, instances, mean = row
        parsed.append({"name": name, "total": float(total), "instances": int(instances), "mean": float(mean)})
    return parsed


def test_csv_has_the_header_and_three_numeric_rows(rows):
    for row in rows:
        assert row["instances"] > 0 and all(math.isfinite(row[k]) and row[k] > 0 for k in ("total", "mean")), row


def test_rows_are_by_total_time_and_mean_is_total_over_instances(rows):
    totals = [row["total"] for row in rows]
    assert totals == sorted(totals, reverse=True), f"rows are not by total_time_ms, largest first: {totals}"
    for row in rows:
        assert math.isclose(row["mean"], row["total"] / row["instances"], rel_tol=0.01, abs_tol=1e-3), row


def test_kernels_are_the_profiles_top_three(rows, profile_of_step_3):
    ranked = sorted(profile_of_step_3, key=lambda op: profile_of_step_3[op][0], reverse=True)
    fourth = profile_of_step_3[ranked[3]][0]
    required = {op for op in ranked[:3] if profile_of_step_3[op][0] >= CLEAR_MARGIN * fourth}
    listed = [row["name"] for row in rows]
    assert len(set(listed)) == 3, f"a kernel is listed twice: {listed}"
    shown = ", ".join(f"{op} {profile_of_step_3[op][0]:.1f} ms" for op in ranked[:ALLOWED_RANKS])
    print(f"the profile's top {ALLOWED_RANKS}: {shown}; the CSV's: {[(r['name'], r['total']) for r in rows]}")
    assert required <= set(listed), f"missing {sorted(required - set(listed))}; the profile's top kernels: {shown}"
    outside = sorted(set(listed) - set(ranked[:ALLOWED_RANKS]))
    assert not outside, f"{outside} are not among the step's top {ALLOWED_RANKS} kernels ({shown})"


def test_instances_are_the_calls_of_one_step(rows, profile_of_step_3):
    for row in rows:
        if row["name"] in profile_of_step_3:
            calls = profile_of_step_3[row["name"]][1]
            assert row["instances"] == calls, f"{row['name']}: {row['instances']} instances, one step has {calls}"


def test_total_times_are_the_steps_within_a_generous_factor(rows, profile_of_step_3):
    for row in rows:
        if row["name"] in profile_of_step_3:
            ms = profile_of_step_3[row["name"]][0]
            assert ms / TIME_FACTOR <= row["total"] <= ms * TIME_FACTOR, (
                f"{row['name']}: total_time_ms {row['total']}, the profile's {ms:.2f} ms (factor {TIME_FACTOR} allowed)"
            )


def test_the_given_inputs_are_unchanged(profile_of_step_3):
    given_run, rebuilt_run = ROOT / "runs" / "profile", profile_of_step_3.rebuilt
    for rel in ("train.toml", "launch.py"):
        assert (given_run / rel).read_bytes() == (rebuilt_run / rel).read_bytes(), f"runs/profile/{rel} was changed"
