"""Metric definitions on hand-built timelines, where the right answer can be worked out by hand."""

from __future__ import annotations

import pytest

from bench.gpu import GpuReport
from bench.metrics import nearest_rank_median, session_duration_s, trial_metrics
from bench.pricing import load_prices, turn_model
from bench.types import AgentOutcome, TurnUsage

SCHEMA_KEYS = {
    "agent_turns",
    "session_duration_s",
    "wall_time_s",
    "per_turn_context_p50",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "api_errors",
    "api_retries",
    "gpu_available",
    "gpus",
    "active_gpu_s",
    "gpu_hours_allocated",
    "throughput_tokens_per_s",
}


def ev(t, kind="user", **data):
    return {"t": t, "kind": kind, **data}


def test_short_gaps_count_in_full():
    assert session_duration_s([ev(100), ev(110), ev(400), ev(1000)]) == pytest.approx(900)


def test_a_long_idle_gap_counts_only_its_first_600_s():
    assert session_duration_s([ev(0), ev(100), ev(2100), ev(2150)]) == pytest.approx(100 + 600 + 50)


def test_a_gap_exactly_at_the_cap_counts_in_full():
    assert session_duration_s([ev(0), ev(600)]) == pytest.approx(600)
    assert session_duration_s([ev(0), ev(600.5)]) == pytest.approx(600)


def test_a_tool_call_in_flight_keeps_a_long_gap_whole():
    events = [
        ev(0, "user"),
        ev(10, "assistant", tool_calls=[{"id": "a", "name": "bash", "arguments": {}}]),
        ev(2010, "tool_result", tool_call_id="a"),
        ev(2020, "assistant", tool_calls=[]),
        ev(5020, "user"),
    ]
    assert session_duration_s(events) == pytest.approx(10 + 2000 + 10 + 600)


def test_unsorted_records_work_too():
    events = [
        ev(3000, "tool_result", tool_call_id="x"),
        ev(0, "user"),
        ev(1000, "assistant", tool_calls=[{"id": "x", "name": "bash", "arguments": {}}]),
    ]
    assert session_duration_s(events) == pytest.approx(600 + 2000)


def test_no_records_means_unknown_and_one_record_means_zero():
    assert session_duration_s([]) is None
    assert session_duration_s([{"kind": "user"}]) is None
    assert session_duration_s([ev(5)]) == 0.0


def test_nearest_rank_median():
    assert nearest_rank_median([]) is None
    assert nearest_rank_median([7]) == 7
    assert nearest_rank_median([40, 10, 30, 20]) == 20
    assert nearest_rank_median([5, 1, 3]) == 3
    assert nearest_rank_median([1, 2, 3, 4, 100]) == 3


def turn(i, o, r=0, w=0, model=None):
    return TurnUsage(
        started_at=0.0,
        ended_at=1.0,
        input_tokens=i,
        output_tokens=o,
        cache_read_tokens=r,
        cache_write_tokens=w,
        model=model,
    )


def test_trial_metrics_for_an_llm_trial():
    outcome = AgentOutcome(
        "submitted",
        turns=[turn(1000, 100, 0, 5000), turn(50, 200, 5000, 100), turn(10, 30, 5100)],
        api_errors=3,
        api_retries=2,
        model="anthropic/claude-haiku-4-5",
        started_at=10.0,
        ended_at=72.5,
    )
    metrics = trial_metrics(outcome, [ev(10), ev(20), ev(70)], load_prices())
    assert SCHEMA_KEYS <= set(metrics.to_json())
    assert metrics.agent_turns == 3
    assert (metrics.input_tokens, metrics.output_tokens) == (1060, 330)
    assert (metrics.cache_read_tokens, metrics.cache_write_tokens) == (10100, 5100)
    assert metrics.per_turn_context_p50 == 5150  # contexts 6000, 5150, 5110
    assert metrics.cost_usd == pytest.approx((1060 * 1.0 + 330 * 5.0 + 10100 * 0.10 + 5100 * 1.25) / 1e6)
    assert metrics.cost_note is None
    assert (metrics.api_errors, metrics.api_retries) == (3, 2)
    assert metrics.session_duration_s == pytest.approx(60) and metrics.wall_time_s == pytest.approx(62.5)


def test_an_unpriced_model_costs_null_with_a_note():
    outcome = AgentOutcome("submitted", turns=[turn(10, 10)], model="openai-compatible/tiny@http://127.0.0.1:9/v1")
    metrics = trial_metrics(outcome, [], load_prices())
    assert metrics.cost_usd is None and "openai-compatible/tiny" in metrics.cost_note


def test_each_turn_is_priced_as_the_model_it_asked_for():
    """A Claude Code trial on Opus whose Explore sub-agent asked for Haiku: Haiku's calls at Haiku's price.
    The trial's own model, named as its API names it or not recorded, is priced as the trial's."""
    outcome = AgentOutcome(
        "submitted",
        turns=[turn(1000, 100, model="claude-opus-4-5"), turn(2000, 300, 500, model="claude-haiku-4-5"), turn(10, 20)],
        model="anthropic/claude-opus-4-5",
    )
    metrics = trial_metrics(outcome, [], load_prices())
    opus = (1010 * 5.0 + 120 * 25.0) / 1e6
    haiku = (2000 * 1.0 + 300 * 5.0 + 500 * 0.10) / 1e6
    assert metrics.cost_usd == pytest.approx(opus + haiku) and metrics.cost_note is None
    all_opus = (3010 * 5.0 + 420 * 25.0 + 500 * 0.50) / 1e6
    assert metrics.cost_usd < all_opus, "priced all at the trial's model, the sub-agent's calls cost 5x"


def test_a_turn_on_an_unpriced_model_makes_the_cost_unknown_not_partial():
    outcome = AgentOutcome(
        "submitted", turns=[turn(10, 10), turn(10, 10, model="claude-next-9")], model="anthropic/claude-opus-4-5"
    )
    metrics = trial_metrics(outcome, [], load_prices())
    assert metrics.cost_usd is None and "'anthropic/claude-next-9'" in metrics.cost_note


@pytest.mark.parametrize(
    ("trial", "asked", "priced"),
    [
        ("anthropic/claude-opus-4-5", None, "anthropic/claude-opus-4-5"),
        ("anthropic/claude-opus-4-5", "claude-opus-4-5", "anthropic/claude-opus-4-5"),
        ("anthropic/claude-opus-4-5", "claude-haiku-4-5", "anthropic/claude-haiku-4-5"),
        (
            "openai-compatible/qwen3@http://127.0.0.1:8000/v1",
            "qwen3",
            "openai-compatible/qwen3@http://127.0.0.1:8000/v1",
        ),
        ("openai/gpt-5", "gpt-5-mini", "openai/gpt-5-mini"),
        (None, "gpt-5", None),
    ],
)
def test_turn_model_names_the_price_table_entry(trial, asked, priced):
    assert turn_model(trial, asked) == priced


def test_a_trial_without_api_calls_costs_zero_and_has_no_context():
    metrics = trial_metrics(AgentOutcome("completed"), [ev(1), ev(4)], load_prices())
    assert (metrics.agent_turns, metrics.cost_usd, metrics.per_turn_context_p50) == (0, 0.0, None)
    assert metrics.wall_time_s == pytest.approx(3)


def test_gpu_metrics_are_null_not_zero_when_unavailable_and_copied_when_measured():
    metrics = trial_metrics(AgentOutcome("completed"), [], load_prices())
    assert (metrics.gpu_available, metrics.gpus, metrics.active_gpu_s, metrics.gpu_hours_allocated) == (
        False,
        [],
        None,
        None,
    )
    measured = GpuReport(available=True, gpus=[2, 3], active_gpu_s=41.5, gpu_hours_allocated=0.05)
    metrics = trial_metrics(AgentOutcome("completed"), [], load_prices(), gpu=measured)
    assert (metrics.gpu_available, metrics.gpus, metrics.active_gpu_s, metrics.gpu_hours_allocated) == (
        True,
        [2, 3],
        41.5,
        0.05,
    )
    assert metrics.throughput_tokens_per_s is None
