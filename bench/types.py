"""The few shapes every part of the harness agrees on: sandbox, agent, limits, usage, outcome.

Why a file of its own: sandboxes, agents, metrics and results are written and read by different
modules; keeping their contracts here means each module imports data, not each other.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bench.keys import redact_value
from bench.specs import Limits


@dataclass
class ExecResult:
    """What one command in a sandbox produced."""

    output: str  # stdout and stderr interleaved, possibly truncated by the sandbox
    exit_code: int  # -1 when the command was killed by a timeout
    timed_out: bool = False
    duration_s: float = 0.0


def truncate(text: str, limit: int) -> str:
    """At most about `limit` characters: the head (2/5) and the tail (3/5, where errors usually are) with
    one marker between them saying how many characters were cut. The one cut for command output: the
    sandbox cuts what a command printed, the agent's tools cut it again to their own limit."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 5, limit * 3 // 5
    return f"{text[:head]}\n[... {len(text) - head - tail} characters cut ...]\n{text[-tail:]}"


class Sandbox(Protocol):
    """Where an agent's commands run. `workdir` is the workspace as the agent sees it."""

    workdir: str

    def execute(self, command: str, timeout: float = 120.0) -> ExecResult: ...

    def read_file(self, path: str) -> str: ...

    def write_file(self, path: str, content: str) -> None: ...

    def close(self) -> None: ...


@dataclass
class TurnUsage:
    """One assistant API call (ATE-Bench's 'turn')."""

    started_at: float
    ended_at: float
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    tool_calls: int = 0
    model: str | None = None
    """The model the call asked for, as its API names it, when the proxy saw it (None: the trial's model).
    A CLI may run a sub-agent on another model of its provider; each turn is priced as its own model."""

    @property
    def context_tokens(self) -> int:
        """ATE-Bench's per-turn context: input + cache read + cache creation."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass
class AgentOutcome:
    """What an agent reports when it stops. Exit statuses are listed in EXIT_STATUSES."""

    exit_status: str
    turns: list[TurnUsage] = field(default_factory=list)
    api_errors: int = 0  # 429 / 5xx / timeouts seen, retried or not
    api_retries: int = 0
    error: str | None = None  # the one clear message when exit_status is 'agent_error'
    model: str | None = None
    started_at: float | None = None  # unix time the agent started; with ended_at gives wall_time_s
    ended_at: float | None = None


EXIT_STATUSES = {
    "submitted": "the agent declared the task done (the builtin agent's submit tool; a CLI agent exiting 0)",
    "completed": "a non-LLM agent (oracle, nop, replay) finished",
    "limit_turns": "limits.turns reached",
    "limit_tokens": "limits.tokens reached",
    "limit_cost": "limits.cost_usd reached",
    "limit_time": "limits.wall_time_s reached",
    "agent_error": "the agent crashed or its API failed for good",
    "interrupted": "the run was interrupted (Ctrl-C); the trial is resumable",
}


class TrajectoryWriter:
    """Appends events to a JSONL file as they happen, so a crash mid-trial keeps what happened."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, kind: str, **data) -> None:
        """Every event is redacted here, whoever writes it: no host secret reaches a trajectory."""
        event = {"t": time.time(), "kind": kind, **redact_value(data)}
        line = json.dumps(event, default=str)
        with self._lock, open(self.path, "a") as f:
            f.write(line + "\n")
            f.flush()

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


@dataclass
class AgentContext:
    """What every agent gets for one trial. An input only some agents use (a patch, a recording, a
    model) goes to that agent's constructor instead (bench/agents/spec.py). Keys stay on the host:
    never put them here."""

    instruction: str
    sandbox: Sandbox
    limits: Limits
    """The task's [limits] (bench.specs.Limits), as task.toml states them."""
    trajectory: TrajectoryWriter


class Agent(Protocol):
    """One trial's agent, built for it by its AgentSpec; `run` is called once."""

    name: str

    def run(self, ctx: AgentContext) -> AgentOutcome: ...
