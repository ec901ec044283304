"""The oracle agent: applies a patch it is given, or says an answer it is given (Q&A tasks). A task
counts only if its oracle resolves it.

Three specs build it: `oracle` with the gold of each trial's task (its patch, or for a task graded by
answer the answer rendered from its key), `wrong` with the task's plausible-wrong solution
(tasks/<task>/frameworks/<fw>/wrong/*.patch, or wrong/answer.md; validation expects it to fail), and
`mutant_spec` with one mutant of the gold (`validate --mutants`, bench/mutants.py).
"""

from __future__ import annotations

import shlex
import uuid

from bench import answers, sources, workspace
from bench.agents.spec import AgentOptions, AgentSetupError, AgentSpec, TrialInputs
from bench.specs import SpecError, TaskVariant
from bench.types import AgentContext, AgentOutcome

ORACLE, WRONG, MUTANT = "oracle", "wrong", "oracle-mutant"


class OracleAgent:
    """Writes its patch outside the workspace, `git apply`s it, then deletes it; or, given an answer,
    writes it as its one message, where the grader reads every agent's answer."""

    name = ORACLE

    def __init__(self, patch: str | None, timeout_s: float = 300.0, answer: str | None = None):
        self.patch, self.timeout_s, self.answer = patch, timeout_s, answer

    def run(self, ctx: AgentContext) -> AgentOutcome:
        if self.answer is not None:
            ctx.trajectory.append("assistant", content=self.answer, tool_calls=[])
            return AgentOutcome(exit_status="completed")
        if not self.patch:
            message = (
                "oracle agent: this task has no solution; its gold is the diff prepared -> original checkout, "
                "or tasks/<task>/frameworks/<fw>/solution.patch (see docs/adding-a-task.md)"
            )
            ctx.trajectory.append("error", message=message)
            return AgentOutcome(exit_status="agent_error", error=message)
        patch_path = f"/tmp/atebench-oracle-{uuid.uuid4().hex}.patch"
        ctx.sandbox.write_file(patch_path, self.patch)
        workdir = shlex.quote(ctx.sandbox.workdir)
        quoted = shlex.quote(patch_path)
        try:
            result = ctx.sandbox.execute(
                f"cd {workdir} && git apply --whitespace=nowarn {quoted}", timeout=self.timeout_s
            )
        finally:
            ctx.sandbox.execute(f"rm -f {quoted}", timeout=30)
        ctx.trajectory.append(
            "oracle",
            command=f"git apply {patch_path}",
            output=result.output,
            exit_code=result.exit_code,
            duration_s=result.duration_s,
        )
        if result.exit_code != 0:
            message = (
                f"oracle agent: the solution patch does not apply (git apply exit {result.exit_code}): "
                f"{result.output.strip()[-2000:]}"
            )
            ctx.trajectory.append("error", message=message)
            return AgentOutcome(exit_status="agent_error", error=message)
        return AgentOutcome(exit_status="completed")


def oracle_spec(options: AgentOptions) -> AgentSpec:
    """The gold patch of each trial's task (computed per task variant; see workspace.gold_patch)."""
    return AgentSpec(ORACLE, _gold_patch)


def _gold_patch(trial: TrialInputs) -> OracleAgent:
    variant = trial.variant
    if variant.answer_key is not None:
        try:
            resolved = answers.resolve_key(variant.answer_key, trial.workspace.prepared, variant.answer_key_path)
        except SpecError as e:
            raise AgentSetupError(str(e)) from None
        return OracleAgent(None, answer=answers.gold_answer(variant.answer_key, resolved))
    return OracleAgent(workspace.solution_diff(trial.variant, trial.workspace.prepared, trial.workspace.original))


def _wrong_patch(trial: TrialInputs) -> OracleAgent:
    variant = trial.variant
    if variant.answer_key is not None:
        if variant.wrong_answer is None:
            raise AgentSetupError(f"task {variant.task.id!r} on {trial.framework.name!r} has no wrong/answer.md")
        try:
            text = answers.render_template(
                variant.wrong_answer.read_text(), trial.workspace.prepared, variant.wrong_answer
            )
        except SpecError as e:
            raise AgentSetupError(str(e)) from None
        return OracleAgent(None, answer=text)
    if trial.variant.wrong_patch is None:
        raise AgentSetupError(f"task {trial.variant.task.id!r} on {trial.framework.name!r} has no wrong/*.patch")
    return OracleAgent(sources.wrong_solution(trial.variant, trial.workspace.prepared, trial.workspace.original))


def wrong_spec(options: AgentOptions) -> AgentSpec:
    """The task's plausible-wrong patch (or answer); a task that ships none has no `wrong` trial."""
    return AgentSpec(WRONG, _wrong_patch, skip_reason=_no_wrong_patch)


def _no_wrong_patch(variant: TaskVariant) -> str | None:
    if variant.answer_key is not None:
        return None if variant.wrong_answer is not None else "the task ships no wrong/answer.md"
    return None if variant.wrong_patch is not None else "the task ships no wrong/*.patch"


def mutant_spec(patch: str) -> AgentSpec:
    """One mutant of the gold (bench/mutants.py `validate --mutants`): its patch, on the one trial it has."""
    return AgentSpec(MUTANT, lambda trial: OracleAgent(patch))
