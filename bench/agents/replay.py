"""The replay agent: re-runs the tool calls of a recorded trajectory against a fresh sandbox, no LLM.

Why: it reproduces a trial's workspace (to re-grade, to debug a grader, to check that a task is
deterministic) at no API cost, while reporting the recorded turns and tokens unchanged.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

from bench.agents.spec import AgentOptions, AgentSpec
from bench.agents.tools import run_tool
from bench.llm import ToolCall
from bench.types import AgentContext, AgentOutcome, TurnUsage

REPLAY = "replay"


def load_recording(path: Path) -> list[dict]:
    """The events of a trajectory.jsonl, with one clear error if the file is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"replay agent: no recorded trajectory at {path}; pass the trajectory.jsonl of an earlier trial"
        )
    events = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"replay agent: {path}:{number} is not JSON ({e})") from None
    return events


class ReplayAgent:
    """Replays the recording at `recording` (a trajectory.jsonl), read when the trial starts."""

    name = REPLAY

    def __init__(self, recording: Path | str, max_output_chars: int = 10_000):
        self.recording = Path(recording)
        self.max_output_chars = max_output_chars

    def run(self, ctx: AgentContext) -> AgentOutcome:
        outcome = AgentOutcome(exit_status="completed", started_at=time.time())
        try:
            self._replay(ctx, outcome)
        except Exception as e:
            outcome.exit_status, outcome.error = "agent_error", f"replay agent: {type(e).__name__}: {e}"
            ctx.trajectory.append("error", message=outcome.error)
        outcome.ended_at = time.time()
        ctx.trajectory.append("exit", exit_status=outcome.exit_status, error=outcome.error)
        return outcome

    def _replay(self, ctx: AgentContext, outcome: AgentOutcome) -> None:
        source = self.recording
        recorded = load_recording(source)
        outcome.model = next((e.get("model") for e in recorded if e.get("kind") == "system"), None)
        recorded_outputs = {e.get("tool_call_id"): e.get("output") for e in recorded if e.get("kind") == "tool_result"}
        ctx.trajectory.append("replay", source=str(source), model=outcome.model)
        for event in (e for e in recorded if e.get("kind") == "assistant"):
            usage = event.get("usage") or {}
            calls = event.get("tool_calls") or []
            started = time.time()
            outcome.turns.append(
                TurnUsage(
                    started,
                    started,
                    usage.get("input_tokens", 0),
                    usage.get("output_tokens", 0),
                    usage.get("cache_read_tokens", 0),
                    usage.get("cache_write_tokens", 0),
                    len(calls),
                )
            )
            ctx.trajectory.append("assistant", **{k: v for k, v in event.items() if k not in ("t", "kind")})
            for call in calls:
                if call["name"] == "submit":
                    ctx.trajectory.append(
                        "tool_result",
                        turn=event.get("turn"),
                        tool_call_id=call["id"],
                        name="submit",
                        output="submitted",
                        exit_code=0,
                        duration_s=0.0,
                    )
                    return
                result = run_tool(
                    ToolCall(call["id"], call["name"], call.get("arguments") or {}),
                    ctx.sandbox,
                    ctx.limits.command_timeout_s,
                    self.max_output_chars,
                )
                ctx.trajectory.append(
                    "tool_result",
                    turn=event.get("turn"),
                    tool_call_id=call["id"],
                    name=call["name"],
                    output=result.output,
                    exit_code=result.exit_code,
                    duration_s=round(result.duration_s, 3),
                    matches_recording=result.output == recorded_outputs.get(call["id"]),
                )


def replay_spec(options: AgentOptions) -> AgentSpec:
    """The run's one recording (`--replay TRAJECTORY`), checked once before any trial."""
    if not options.replay:
        raise ValueError(
            "the replay agent needs a recording: pass --replay TRAJECTORY (the trajectory.jsonl of an earlier trial)"
        )
    recording = Path(options.replay)
    return AgentSpec(REPLAY, lambda trial: ReplayAgent(recording), check_ready=partial(load_recording, recording))
