"""Agents by name. The harness calls `make_agent(name, **options)` and then `agent.run(ctx)`."""

from __future__ import annotations

from bench.agents.builtin import BuiltinAgent
from bench.agents.nop import NopAgent
from bench.agents.oracle import OracleAgent
from bench.agents.replay import ReplayAgent

AGENTS = {"builtin": BuiltinAgent, "oracle": OracleAgent, "nop": NopAgent, "replay": ReplayAgent}


def make_agent(name: str, **options):
    """Build the agent called `name` and check it can start (e.g. its API key is set) before any trial.

    An unknown name gets one error listing the valid ones.
    """
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of: {', '.join(AGENTS)}")
    agent = AGENTS[name](**options)
    agent.check_ready()
    return agent
