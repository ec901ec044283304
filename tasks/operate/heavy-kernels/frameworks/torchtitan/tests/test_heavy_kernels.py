"""Hidden grader of heavy-kernels on TorchTitan: the agent's heavy_kernels.csv against this test's own
profile of the same run's third step: TorchTitan's own trainer (profile_reference.py, under torchrun with
the CPU shims of grader_support) on its own rebuild of the inputs (profile_run.py), torch.profiler's CPU
activity around Trainer.train_step, operators ranked by self CPU time.

Call counts of one step are deterministic, so `instances` must equal the profile's exactly (that is what
catches a profile that also covers a warm-up step). Times are not: they move with the machine's load, so
the kernels are matched by a margin rule and times by a generous factor (figures below).
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tomllib
from pathlib import Path

import profile_run
import pytest

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CSV = ROOT / "heavy_kernels.csv"
HEADER = ["kernel_name", "total_time_ms", "instances", "mean_time_ms"]
# An operator the profile puts in its top 3 with at least this many times the 4th's time must be listed;
# every listed one must be in the profile's top 5. Measured on 1 thread, 10 oracle reruns in the sandbox:
# flash-attention backward, aten::mm, flash-attention forward, then aten::mul or aten::bmm; the 3rd is
# 2.9-5.4x the 4th.
CLEAR_MARGIN = 1.5
ALLOWED_RANKS = 5
# Times: within this factor of the profile's. They follow the machine's load (on the shared 2-core machine
# the reference task saw one operator's time move 5.3x within half an hour). In 10 oracle reruns the
# shipped CSV's times (made on a quiet machine) were 0.51-1.08x the grader's; a gold run made while the
# machine was loaded gave 4.7x (flash-attention backward 624 ms against 132 ms). A factor of 10
# still fails times in microseconds or seconds (1000x off); a profile of more than one step fails on
# `instances`, which is exact.
TIME_FACTOR = 10.0


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
    assert len(set(listed)) == 3, f"an operator is listed twice: {listed}"
    shown = ", ".join(f"{op} {profile_of_step_3[op][0]:.1f} ms" for op in ranked[:ALLOWED_RANKS])
    print(f"the profile's top {ALLOWED_RANKS}: {shown}; the CSV's: {[(r['name'], r['total']) for r in rows]}")
    assert required <= set(listed), f"missing {sorted(required - set(listed))}; the profile's top ops: {shown}"
    outside = sorted(set(listed) - set(ranked[:ALLOWED_RANKS]))
    assert not outside, f"{outside} are not among the step's top {ALLOWED_RANKS} operators ({shown})"


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
    for rel in ("flavor.py", "hf_assets/tokenizer.json", "hf_assets/tokenizer_config.json", "data/train.jsonl"):
        assert (given_run / rel).read_bytes() == (rebuilt_run / rel).read_bytes(), f"runs/profile/{rel} was changed"
    given = tomllib.loads((given_run / "train.toml").read_text())
    assert given == tomllib.loads(profile_run.RUN_CONFIG), "runs/profile/train.toml was changed"
