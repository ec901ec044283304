"""Hidden grader of heavy-kernels: the agent's heavy_kernels.csv against this test's own profile of the
same run's third step (torch.profiler, CPU activity, operators ranked by self CPU time).

Call counts of one step are deterministic, so `instances` must equal the profile's exactly (that is what
catches a profile that also covers a warm-up step). Times are not: they move with the machine's load, so
the kernels are matched by a margin rule and times by a generous factor (figures below).
"""

from __future__ import annotations

import csv
import math
import statistics
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "heavy_kernels.csv"
HEADER = ["kernel_name", "total_time_ms", "instances", "mean_time_ms"]
RUN = {
    "model": {
        "config": "../../examples/models/qwen3_moe_tiny.json",
        "overrides": {
            "hidden_size": 128,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "intermediate_size": 256,
            "moe_intermediate_size": 64,
        },
    },
    "training": {"device": "cpu", "steps": 3, "log_interval": 1, "seed": 0},  # a CPU run on GPU hosts too
    "data": {"source": "corpus", "seq_len": 1024, "global_batch_size": 4, "micro_batch_size": 2},
}
WARMUP = 2  # steps 1 and 2; step 3 is profiled
REPEATS = 3  # the profiled step's times are the median of this many profiles (steps 3, 4, 5)
# An operator the profile puts in its top 3 with at least this many times the 4th's time must be listed;
# every listed one must be in the profile's top 5. Measured on 1 thread: the 3rd is 3.6x the 4th on a
# quiet machine, 1.9x under heavy load (the 4th, aten::mul, is 507 short calls and suffers more).
CLEAR_MARGIN = 1.5
ALLOWED_RANKS = 5
# Times: within this factor of the profile's. They follow the machine's load: on a shared 2-core machine
# one step's attention backward took from 192 ms to 1012 ms (5.3x) within half an hour; in 10 oracle
# reruns the grader's times were 0.76-3.4x the shipped CSV's (made outside the sandbox's CPU cgroup),
# and its 3rd operator 2.8-3.8x its 4th. A factor of 10
# still fails times in microseconds or seconds (1000x off); a profile of more than one step fails on
# `instances`, which is exact.
TIME_FACTOR = 10.0


@pytest.fixture(scope="module")
def profile_of_step_3(tmp_path_factory):
    """{operator: (self CPU ms, calls)} of the run's third step. Calls are step 3's (deterministic for one
    step; a few small operators' counts vary with the routing from step to step); times are the median of
    steps 3..5, which run the same heavy operators as often, so the machine's noise is tamed."""
    from torch.profiler import ProfilerActivity, profile

    import reftrain.tokenizer
    from reftrain.config import load_config
    from reftrain.train import setup, train_step

    scratch = tmp_path_factory.mktemp("profile")
    reftrain.tokenizer.CACHE_DIR = scratch / "tokenizer-cache"  # not the agent's cached tokenizer
    overrides = "".join(f"{key} = {value}\n" for key, value in RUN["model"]["overrides"].items())
    (scratch / "train.toml").write_text(
        f'[model]\nconfig = "{ROOT / "examples/models/qwen3_moe_tiny.json"}"\n[model.overrides]\n{overrides}'
        f'[training]\ndevice = "cpu"\nsteps = {RUN["training"]["steps"]}\nseed = {RUN["training"]["seed"]}\n[data]\n'
        + "".join(f"{key} = {value!r}\n".replace("'", '"') for key, value in RUN["data"].items())
    )
    cfg = load_config(scratch / "train.toml")
    run = setup(cfg)  # the run's own 3 steps, so step 3 is the agent's step 3; steps 4 and 5 only add timings
    for step in range(WARMUP):
        train_step(run, step)
    profiles = []
    for step in range(WARMUP, WARMUP + REPEATS):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_step(run, step)
        profiles.append({e.key: (e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages()})
    return {
        op: (statistics.median(p.get(op, (0.0, 0))[0] for p in profiles), calls)
        for op, (_, calls) in profiles[0].items()
    }


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


def test_the_run_config_is_unchanged():
    run = tomllib.loads((ROOT / "runs/profile/train.toml").read_text())
    for section, values in RUN.items():
        for key, value in values.items():
            assert run.get(section, {}).get(key) == value, f"runs/profile/train.toml [{section}] {key} changed"
