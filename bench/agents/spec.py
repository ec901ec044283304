"""What a run holds per agent name: a spec that builds a fresh agent for each trial from that trial's inputs.

Why a spec and not an agent: an agent's inputs differ per trial (the oracle's patch is the gold of the
trial's task; the built-in agent's messages belong to one trial), so each trial gets its own agent
object, as mini-swe-agent builds one per instance. What is the same for every trial (a model, a
recording) is checked once, before any trial, by `check_ready`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench.specs import FrameworkSpec, TaskVariant
from bench.types import Agent
from bench.workspace import Workspace


class AgentSetupError(Exception):
    """The agent cannot be built for this trial (e.g. its task lacks the patch it applies); a setup error."""


@dataclass(frozen=True)
class TrialInputs:
    """What a spec may read to build one trial's agent."""

    variant: TaskVariant
    framework: FrameworkSpec
    workspace: Workspace
    """The trial's trees (original, prepared, working), made once by the trial's setup."""


@dataclass(frozen=True)
class AgentOptions:
    """The run's agent options (`runner.py run --model --base-url --replay`); each spec reads the ones it uses."""

    model: str | None = None
    base_url: str | None = None
    replay: str | None = None


def _ready() -> None:
    """Nothing to check: the agent needs no model, key or file."""


def _applies(variant: TaskVariant) -> str | None:
    return None


@dataclass(frozen=True)
class AgentSpec:
    """One agent name of a run: checked once, then asked by every trial for a fresh agent."""

    name: str
    """The agent's name: the `agent` of result.json and a folder of the run."""
    build: Callable[[TrialInputs], Agent]
    """A fresh agent for one trial; raises AgentSetupError (or WorkspaceError) when the trial cannot have one."""
    model: str | None = None
    """The LLM the agent calls, recorded in result.json and priced; None for an agent without one."""
    check_ready: Callable[[], None] = _ready
    """Raises one clear error (a missing key, an unreadable recording) before any trial starts."""
    skip_reason: Callable[[TaskVariant], str | None] = _applies
    """Why a task variant has nothing for this agent to do (the plan leaves that trial out), or None."""
