"""The oracle agent: applies the task's gold patch. A task counts only if its oracle resolves it."""

from __future__ import annotations

import shlex
import uuid

from bench.types import AgentContext, AgentOutcome


class OracleAgent:
    """Writes `ctx.solution_patch` outside the workspace, `git apply`s it, then deletes it."""

    name = "oracle"

    def __init__(self, timeout_s: float = 300.0):
        self.timeout_s = timeout_s

    def check_ready(self) -> None:
        """Nothing to check: the oracle needs no model and no key."""

    def run(self, ctx: AgentContext) -> AgentOutcome:
        if not ctx.solution_patch:
            message = "oracle agent: this task has no solution; its gold is the diff prepared -> original checkout, or tasks/<task>/frameworks/<fw>/solution.patch (see docs/adding-a-task.md)"
            ctx.trajectory.append("error", message=message)
            return AgentOutcome(exit_status="agent_error", error=message)
        patch_path = f"/tmp/atebench-oracle-{uuid.uuid4().hex}.patch"
        ctx.sandbox.write_file(patch_path, ctx.solution_patch)
        workdir = shlex.quote(ctx.sandbox.workdir)
        quoted = shlex.quote(patch_path)
        try:
            result = ctx.sandbox.execute(f"cd {workdir} && git apply --whitespace=nowarn {quoted}", timeout=self.timeout_s)
        finally:
            ctx.sandbox.execute(f"rm -f {quoted}", timeout=30)
        ctx.trajectory.append("oracle", command=f"git apply {patch_path}", output=result.output,
                              exit_code=result.exit_code, duration_s=result.duration_s)
        if result.exit_code != 0:
            message = f"oracle agent: the solution patch does not apply (git apply exit {result.exit_code}): {result.output.strip()[-2000:]}"
            ctx.trajectory.append("error", message=message)
            return AgentOutcome(exit_status="agent_error", error=message)
        return AgentOutcome(exit_status="completed")
