"""The no-op agent: changes nothing. A task whose tests pass for it is not testing anything."""

from __future__ import annotations

from bench.types import AgentContext, AgentOutcome


class NopAgent:
    name = "nop"

    def check_ready(self) -> None:
        """Nothing to check: the no-op agent needs no model and no key."""

    def run(self, ctx: AgentContext) -> AgentOutcome:
        ctx.trajectory.append("nop", message="no-op agent: left the workspace unchanged")
        return AgentOutcome(exit_status="completed")
