"""Agents by name. A run holds one `AgentSpec` per name, from `make_spec(name, options)`, checked once
before any trial; each trial calls `spec.build(TrialInputs(...))` for a fresh agent, then `agent.run(ctx)`.

Nothing outside this folder names an agent: a new agent is a module here plus one line in `AGENTS`
(docs/agents.md, "Adding an agent").
"""

from __future__ import annotations

from dataclasses import replace

from bench.agents.builtin import BUILTIN, BuiltinAgent, builtin_spec
from bench.agents.claude_code import CLAUDE_CODE, ClaudeCodeAgent, claude_code_spec
from bench.agents.codex import CODEX, CodexAgent, codex_spec
from bench.agents.nop import NOP, NopAgent, nop_spec
from bench.agents.oracle import MUTANT, ORACLE, WRONG, OracleAgent, mutant_spec, oracle_spec, wrong_spec
from bench.agents.replay import REPLAY, ReplayAgent, replay_spec
from bench.agents.spec import AgentOptions, AgentSetupError, AgentSpec, TrialInputs

AGENTS = {
    BUILTIN: builtin_spec,
    ORACLE: oracle_spec,
    NOP: nop_spec,
    REPLAY: replay_spec,
    WRONG: wrong_spec,
    CLAUDE_CODE: claude_code_spec,
    CODEX: codex_spec,
}

DEFAULT_AGENT = ORACLE
VALIDATION_AGENTS = (ORACLE, NOP, WRONG)
"""`validate` is a run of these: the oracle must resolve each task, nop and the wrong solution must not."""

__all__ = [
    "AGENTS",
    "DEFAULT_AGENT",
    "VALIDATION_AGENTS",
    "ORACLE",
    "NOP",
    "WRONG",
    "MUTANT",
    "AgentOptions",
    "AgentSetupError",
    "AgentSpec",
    "TrialInputs",
    "BuiltinAgent",
    "ClaudeCodeAgent",
    "CodexAgent",
    "NopAgent",
    "OracleAgent",
    "ReplayAgent",
    "make_spec",
    "make_specs",
    "mutant_spec",
]


def make_spec(name: str, options: AgentOptions | None = None, **fields) -> AgentSpec:
    """The spec of the agent called `name`, checked (e.g. its API key is set) before any trial.

    `fields` are AgentOptions' fields, for a caller without an AgentOptions (tests, scripts).
    An unknown name gets one error listing the valid ones.
    """
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of: {', '.join(AGENTS)}")
    spec = AGENTS[name](options or AgentOptions(**fields))
    spec.check_ready()
    return spec


def make_specs(names: list[str], options: AgentOptions) -> dict[str, AgentSpec]:
    """Every named agent's spec, checked before any trial; the first unknown name is the one error."""
    unknown = [n for n in names if n not in AGENTS]
    if unknown:
        raise ValueError(f"unknown agent {unknown[0]!r}; choose one of: {', '.join(AGENTS)}")
    models = models_by_agent(options.model, names)
    return {name: make_spec(name, replace(options, model=models.get(name))) for name in dict.fromkeys(names)}


def models_by_agent(model: str | None, names: list[str]) -> dict[str, str | None]:
    """`--model` is one model for every agent (`anthropic/claude-sonnet-4-5`) or one per agent
    (`claude-code=anthropic/claude-sonnet-4-5,codex=openai/gpt-5`): CLI agents of two providers in one run."""
    if not model or "=" not in model:
        return {name: model for name in names}
    models = {}
    for part in model.split(","):
        agent, sep, value = (x.strip() for x in part.partition("="))
        if not sep or not agent or not value:
            raise ValueError(
                f"--model {model!r}: {part!r} is not AGENT=MODEL; write e.g. claude-code=anthropic/x,codex=openai/y"
            )
        if agent not in names:
            raise ValueError(f"--model names agent {agent!r}, which this run does not have (--agent {','.join(names)})")
        models[agent] = value
    return models
