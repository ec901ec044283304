"""The checks of heavy-kernels that every framework's variant shares. Each variant's grader_tests/test_heavy_kernels.py
imports them (grading.toml `task_support`) and defines the `profile_of_step_3` fixture from its framework's own
profile of the same run: {kernel name: (total ms in step 3, calls in step 3)}, named as torch.profiler names them
(the CPU activity's operators by self CPU time for a CPU run; the CUDA activity's kernels by GPU time for a GPU run).

Call counts of one step are deterministic, so `instances` must equal the profile's exactly (that is what catches a
profile that also covers a warm-up step). Times are not: they move with the machine's load, so the kernels are
matched by a margin rule and times by a generous factor (figures below).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "heavy_kernels.csv"
HEADER = ["kernel_name", "total_time_ms", "instances", "mean_time_ms"]
# A kernel the profile puts in its top 3 with at least this many times the 4th's time must be listed; every listed
# one must be in the profile's top 5. Measured: reference (1 thread) the 3rd is 3.6x the 4th on a quiet machine,
# 1.9x under heavy load; TorchTitan 2.9-5.4x over 10 oracle reruns; Megatron on an H200 0.6 vs 0.4-0.5 ms (only
# the clear ones are required, and any of the top 5 may be listed).
CLEAR_MARGIN = 1.5
ALLOWED_RANKS = 5
# Times: within this factor of the profile's. They follow the machine's load: on a shared 2-core machine one
# step's attention backward took from 192 ms to 1012 ms (5.3x) within half an hour; in 10 oracle reruns the
# grader's times were 0.51-3.4x the shipped CSV's (a gold made on a loaded machine: 4.7x). A factor of 10 still
# fails times in microseconds or seconds (1000x off); a profile of more than one step fails on `instances`.
TIME_FACTOR = 10.0


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
