"""Per-trial effort metrics, computed from what the agent reported and what its trajectory recorded.

Definitions follow ATE-Bench (see docs/agents.md): turns are assistant API calls; session duration
is active wall-clock time (idle gaps over 10 minutes count only their first 10 minutes, unless a tool
call was running across them); per-turn context is the nearest-rank median of input + cache-read +
cache-write tokens per turn; cost comes from prices.toml, never from the agent.
"""

from __future__ import annotations

import math

from bench.gpu import GpuReport
from bench.pricing import Price, cost_usd, missing_price_note
from bench.types import AgentOutcome

IDLE_CAP_S = 600.0


def session_duration_s(events: list[dict], idle_cap_s: float = IDLE_CAP_S) -> float | None:
    """Active time over consecutive timestamped records; None when nothing was recorded."""
    stamped = sorted((e for e in events if isinstance(e.get("t"), (int, float))), key=lambda e: e["t"])
    if not stamped:
        return None
    in_flight: set[str] = set()
    total = 0.0
    for current, following in zip(stamped, stamped[1:]):
        _track_tool_calls(in_flight, current)
        gap = following["t"] - current["t"]
        total += gap if gap <= idle_cap_s or in_flight else idle_cap_s
    return total


def _track_tool_calls(in_flight: set[str], event: dict) -> None:
    """A tool call is in flight from the event that issues it until its tool_result."""
    kind = event.get("kind")
    if kind == "assistant":
        in_flight.update(str(c.get("id")) for c in event.get("tool_calls") or [])
    elif kind == "tool_call":
        in_flight.add(str(event.get("id", event.get("tool_call_id"))))
    elif kind == "tool_result":
        in_flight.discard(str(event.get("tool_call_id")))


def nearest_rank_median(values: list[int]) -> int | None:
    """The value at rank ceil(n/2) of the sorted values (no interpolation); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.5 * len(ordered)) - 1]


def trial_metrics(outcome: AgentOutcome, events: list[dict], prices: dict[str, Price],
                  gpu: GpuReport | None = None) -> dict:
    """The `metrics` object of result.json (schema version 1), plus `cost_note` explaining a null cost."""
    turns = outcome.turns
    tokens = {
        "input_tokens": sum(t.input_tokens for t in turns),
        "output_tokens": sum(t.output_tokens for t in turns),
        "cache_read_tokens": sum(t.cache_read_tokens for t in turns),
        "cache_write_tokens": sum(t.cache_write_tokens for t in turns),
    }
    if turns:
        cost = cost_usd(outcome.model, prices, tokens["input_tokens"], tokens["output_tokens"],
                        tokens["cache_read_tokens"], tokens["cache_write_tokens"])
        note = missing_price_note(outcome.model, prices)
    else:
        cost, note = 0.0, None
    gpu = gpu or GpuReport(available=False)
    return {
        "agent_turns": len(turns),
        "session_duration_s": session_duration_s(events),
        "wall_time_s": _wall_time_s(outcome, events),
        "per_turn_context_p50": nearest_rank_median([t.context_tokens for t in turns]),
        **tokens,
        "cost_usd": cost,
        "cost_note": note,
        "api_errors": outcome.api_errors,
        "api_retries": outcome.api_retries,
        "gpu_available": gpu.available,
        "gpus": list(gpu.gpus),
        "active_gpu_s": gpu.active_gpu_s if gpu.available else None,
        "gpu_hours_allocated": gpu.gpu_hours_allocated if gpu.available else None,
        "throughput_tokens_per_s": None,
    }


def _wall_time_s(outcome: AgentOutcome, events: list[dict]) -> float:
    if outcome.started_at is not None and outcome.ended_at is not None:
        return max(outcome.ended_at - outcome.started_at, 0.0)
    stamps = [e["t"] for e in events if isinstance(e.get("t"), (int, float))]
    return max(stamps) - min(stamps) if stamps else 0.0
