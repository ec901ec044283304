"""Per-trial effort metrics, computed from what the agent reported and what its trajectory recorded.

Definitions follow ATE-Bench (see docs/agents.md): turns are assistant API calls; session duration
is active wall-clock time (idle gaps over 10 minutes count only their first 10 minutes, unless a tool
call was running across them); per-turn context is the nearest-rank median of input + cache-read +
cache-write tokens per turn; cost comes from prices.toml, never from the agent.

`Metrics` is the `metrics` object of result.json: its field names are the file's keys (schema version 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

from bench.gpu import GpuReport
from bench.pricing import Price, turns_cost
from bench.types import AgentOutcome

IDLE_CAP_S = 600.0


@dataclass(frozen=True)
class Metrics:
    """One trial's effort and throughput numbers. Counts start at 0; what was not measured (no GPU, no
    price, no benchmark) is None, never 0."""

    agent_turns: int = 0
    session_duration_s: float | None = None
    """Active wall time of the trajectory (idle gaps capped at IDLE_CAP_S)."""
    wall_time_s: float = 0.0
    """The agent's wall time, start to stop."""
    per_turn_context_p50: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    cost_note: str | None = None
    """Why cost_usd is None (the model has no price in prices.toml)."""
    api_errors: int = 0
    api_retries: int = 0
    gpu_available: bool = False
    gpus: list[int] = field(default_factory=list)
    active_gpu_s: float | None = None
    gpu_hours_allocated: float | None = None
    throughput_tokens_per_s: float | None = None
    """Median of every sample of the throughput runs (bench/throughput.py)."""
    throughput_spread: list[float] | None = None
    """[min, max] of the samples."""
    throughput_samples: list[float] | None = None
    throughput_runs: int | None = None
    throughput_measured: str | None = None
    """What the benchmark says it measured (model, layout, device), else its command."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    def with_throughput(self, measured: dict) -> "Metrics":
        """These metrics plus throughput.metrics(...)'s numbers; a key that is no field is a TypeError."""
        return replace(self, **measured)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Metrics":
        """Reads every schema version 1 `metrics` object: keys written before a field existed (cost_note,
        the throughput_* details) get the field's default; an unknown key is a ValueError naming it."""
        if not isinstance(data, dict):
            raise ValueError(f"metrics must be an object, not {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)} in a schema_version 1 result")
        return cls(**data)


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
    """A tool call is in flight from the assistant event that issues it until its tool_result."""
    kind = event.get("kind")
    if kind == "assistant":
        in_flight.update(str(c.get("id")) for c in event.get("tool_calls") or [])
    elif kind == "tool_result":
        in_flight.discard(str(event.get("tool_call_id")))


def nearest_rank_median(values: list[int]) -> int | None:
    """The value at rank ceil(n/2) of the sorted values (no interpolation); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.5 * len(ordered)) - 1]


def trial_metrics(
    outcome: AgentOutcome, events: list[dict], prices: dict[str, Price], gpu: GpuReport | None = None
) -> Metrics:
    """The agent phase's metrics; throughput is added after grading (Metrics.with_throughput)."""
    turns = outcome.turns
    tokens = {
        "input_tokens": sum(t.input_tokens for t in turns),
        "output_tokens": sum(t.output_tokens for t in turns),
        "cache_read_tokens": sum(t.cache_read_tokens for t in turns),
        "cache_write_tokens": sum(t.cache_write_tokens for t in turns),
    }
    cost, note = turns_cost(outcome.model, prices, turns) if turns else (0.0, None)
    gpu = gpu or GpuReport(available=False)
    return Metrics(
        agent_turns=len(turns),
        session_duration_s=session_duration_s(events),
        wall_time_s=_wall_time_s(outcome, events),
        per_turn_context_p50=nearest_rank_median([t.context_tokens for t in turns]),
        **tokens,
        cost_usd=cost,
        cost_note=note,
        api_errors=outcome.api_errors,
        api_retries=outcome.api_retries,
        gpu_available=gpu.available,
        gpus=list(gpu.gpus),
        active_gpu_s=gpu.active_gpu_s if gpu.available else None,
        gpu_hours_allocated=gpu.gpu_hours_allocated if gpu.available else None,
    )


def _wall_time_s(outcome: AgentOutcome, events: list[dict]) -> float:
    if outcome.started_at is not None and outcome.ended_at is not None:
        return max(outcome.ended_at - outcome.started_at, 0.0)
    stamps = [e["t"] for e in events if isinstance(e.get("t"), (int, float))]
    return max(stamps) - min(stamps) if stamps else 0.0
