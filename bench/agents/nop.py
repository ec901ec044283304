"""The no-op agent: changes nothing. A task whose tests pass for it is not testing anything."""

from __future__ import annotations

from bench.agents.spec import AgentOptions, AgentSpec
from bench.types import AgentContext, AgentOutcome

NOP = "nop"


class NopAgent:
    name = NOP

    def run(self, ctx: AgentContext) -> AgentOutcome:
        ctx.trajectory.append("nop", message="no-op agent: left the workspace unchanged")
        return AgentOutcome(exit_status="completed")


def nop_spec(options: AgentOptions) -> AgentSpec:
    return AgentSpec(NOP, lambda trial: NopAgent())
