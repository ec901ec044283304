"""Agents by name. The harness calls `make_agent(name, **options)` and then `agent.run(ctx)`."""

from __future__ import annotations

from bench.agents.nop import NopAgent
from bench.agents.oracle import OracleAgent

AGENTS = {"oracle": OracleAgent, "nop": NopAgent}


def make_agent(name: str, **options):
    """Build the agent called `name`; an unknown name gets one error listing the valid ones."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of: {', '.join(sorted(AGENTS))}")
    return AGENTS[name](**options)
