"""Hidden grader of heavy-kernels: the agent's heavy_kernels.csv against this test's own profile of the
same run's third step (torch.profiler, CPU activity, operators ranked by self CPU time). The checks are
the task's shared ones (tasks/operate/heavy-kernels/checks/kernel_checks.py: exact call counts, a margin rule
on names, times within a factor); this module supplies reftrain's profile.
"""

from __future__ import annotations

import statistics
import tomllib
from pathlib import Path

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


def test_the_run_config_is_unchanged():
    run = tomllib.loads((ROOT / "runs/profile/train.toml").read_text())
    for section, values in RUN.items():
        for key, value in values.items():
            assert run.get(section, {}).get(key) == value, f"runs/profile/train.toml [{section}] {key} changed"
