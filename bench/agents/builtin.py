"""The built-in agent: one small tool-calling loop over an LLM API, in the spirit of mini-swe-agent.

Why our own: installed CLI agents hide their turns and tokens; this loop records every API call
(usage included) and every tool call in the trajectory, so every metric is exact. Each exit (submit,
a limit, a failure) is an exception caught in one place, `run`.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Callable

from bench.agents.tools import TOOLS, run_tool
from bench.keys import host_keys, redact_value
from bench.llm import DeadlineExceeded, LLMClient, LLMError, RetryPolicy, check_key, make_client, parse_model
from bench.pricing import PRICES_PATH, cost_usd, load_prices, missing_price_note
from bench.types import AgentContext, AgentOutcome, TurnUsage

SYSTEM_PROMPT = """You are an expert software engineer working alone in the repository at {workdir}.
Use the tools: `bash` to explore, run and test; `str_replace_based_edit_tool` to view and edit files;
`submit` when the task is done. Work in small verified steps: read the relevant code, make the change,
run the tests that cover it, then call `submit`. Nobody will answer questions; decide and proceed.
Hidden tests grade the workspace after you submit; do not edit existing tests to make them pass."""

NO_TOOL_CALL = "Your reply called no tool. Use the tools to work on the task, and call `submit` when it is done."


class _Exit(Exception):
    def __init__(self, status: str, message: str | None = None):
        super().__init__(message or status)
        self.status, self.message = status, message


@dataclass
class _Trial:
    """The state of one run, kept apart from the agent so one agent can serve concurrent trials."""

    ctx: AgentContext
    outcome: AgentOutcome
    record: Callable[..., None]
    keys: list[str]
    messages: list[dict] = field(default_factory=list)


class BuiltinAgent:
    name = "builtin"

    def __init__(self, model: str | None = None, base_url: str | None = None, prices_path=PRICES_PATH,
                 max_output_chars: int = 10_000, max_reply_tokens: int = 16_384, request_timeout_s: float = 600.0,
                 retry: RetryPolicy | None = None):
        if not model:
            raise ValueError("the builtin agent needs a model, e.g. --model anthropic/claude-sonnet-4-5")
        parse_model(model)
        self.model, self.base_url = model, base_url
        self.prices = load_prices(prices_path)
        self.max_output_chars, self.max_reply_tokens = max_output_chars, max_reply_tokens
        self.request_timeout_s, self.retry = request_timeout_s, retry or RetryPolicy()

    def check_ready(self) -> None:
        """Raises before the trial starts when the model's key is missing from the host environment."""
        check_key(self.model)

    def run(self, ctx: AgentContext) -> AgentOutcome:
        keys = host_keys()
        trial = _Trial(ctx, AgentOutcome(exit_status="agent_error", model=self.model, started_at=time.time()),
                       record=lambda kind, **data: ctx.trajectory.append(kind, **redact_value(data, keys)), keys=keys)
        client = None
        try:
            client = make_client(self.model, base_url=self.base_url, timeout_s=self.request_timeout_s,
                                 max_reply_tokens=self.max_reply_tokens, retry=self.retry,
                                 on_api_error=lambda event: trial.record("api_error", **event))
            self._loop(trial, client)
        except _Exit as e:
            trial.outcome.exit_status = e.status
            if e.status.startswith("limit_"):
                trial.record("limit", exit_status=e.status, message=e.message)
        except DeadlineExceeded as e:
            trial.outcome.exit_status = "limit_time"
            trial.record("limit", exit_status="limit_time", message=redact_value(str(e), keys))
        except LLMError as e:
            trial.outcome.error = redact_value(str(e), keys)
            trial.record("error", message=trial.outcome.error)
        except KeyboardInterrupt:
            trial.outcome.exit_status = "interrupted"
            trial.record("interrupted", message="the run was interrupted")
            raise
        except Exception as e:
            trial.outcome.error = redact_value(f"builtin agent crashed: {type(e).__name__}: {e}", keys)
            trial.record("error", message=trial.outcome.error, traceback=traceback.format_exc())
        finally:
            if client is not None:
                trial.outcome.api_errors, trial.outcome.api_retries = client.api_errors, client.api_retries
            trial.outcome.ended_at = time.time()
            trial.record("exit", exit_status=trial.outcome.exit_status, error=trial.outcome.error)
        return trial.outcome

    def _loop(self, trial: _Trial, client: LLMClient) -> None:
        ctx = trial.ctx
        system = SYSTEM_PROMPT.format(workdir=ctx.sandbox.workdir)
        trial.record("system", model=self.model, content=system, tools=[t.name for t in TOOLS], limits=asdict(ctx.limits))
        trial.record("user", content=ctx.instruction)
        trial.messages.append({"role": "user", "content": ctx.instruction})
        note = missing_price_note(self.model, self.prices)
        if note:
            trial.record("note", message=f"{note}; the cost limit is not enforced")
        while True:
            self._check_limits(trial)
            self._step(trial, client, system)

    def _step(self, trial: _Trial, client: LLMClient, system: str) -> None:
        started = time.time()
        deadline = time.monotonic() + trial.ctx.limits.max_wall_s - (started - trial.outcome.started_at)
        reply = client.complete(system, trial.messages, TOOLS, deadline=deadline)
        u = reply.usage
        trial.outcome.turns.append(TurnUsage(started, time.time(), u.input, u.output, u.cache_read, u.cache_write,
                                             len(reply.tool_calls)))
        n = len(trial.outcome.turns)
        trial.record("assistant", turn=n, content=reply.text, stop_reason=reply.stop_reason,
                     tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in reply.tool_calls],
                     usage={"input_tokens": u.input, "output_tokens": u.output,
                            "cache_read_tokens": u.cache_read, "cache_write_tokens": u.cache_write},
                     cost_usd=cost_usd(self.model, self.prices, u.input, u.output, u.cache_read, u.cache_write))
        trial.messages.append({"role": "assistant", "content": reply.text, "tool_calls": reply.tool_calls})
        if not reply.tool_calls:
            trial.messages.append({"role": "user", "content": NO_TOOL_CALL})
            trial.record("user", content=NO_TOOL_CALL)
            return
        results = []
        for call in reply.tool_calls:
            if call.name == "submit":
                trial.record("tool_result", turn=n, tool_call_id=call.id, name=call.name, output="submitted",
                             exit_code=0, duration_s=0.0)
                raise _Exit("submitted")
            remaining = trial.ctx.limits.max_wall_s - (time.time() - trial.outcome.started_at)
            timeout = max(1.0, min(trial.ctx.limits.command_timeout_s, remaining))
            result = run_tool(call, trial.ctx.sandbox, timeout, self.max_output_chars)
            output = redact_value(result.output, trial.keys)
            trial.record("tool_result", turn=n, tool_call_id=call.id, name=call.name, output=output,
                         exit_code=result.exit_code, duration_s=round(result.duration_s, 3))
            results.append({"tool_call_id": call.id, "name": call.name, "output": output})
        trial.messages.append({"role": "tool", "results": results})

    def _check_limits(self, trial: _Trial) -> None:
        limits, turns = trial.ctx.limits, trial.outcome.turns
        tokens = sum(t.context_tokens + t.output_tokens for t in turns)
        cost = cost_usd(self.model, self.prices, sum(t.input_tokens for t in turns), sum(t.output_tokens for t in turns),
                        sum(t.cache_read_tokens for t in turns), sum(t.cache_write_tokens for t in turns))
        elapsed = time.time() - trial.outcome.started_at
        if len(turns) >= limits.max_turns:
            raise _Exit("limit_turns", f"{len(turns)} turns reached max_turns={limits.max_turns}")
        if tokens >= limits.max_tokens:
            raise _Exit("limit_tokens", f"{tokens} tokens reached max_tokens={limits.max_tokens}")
        if cost is not None and cost >= limits.max_cost_usd:
            raise _Exit("limit_cost", f"${cost:.4f} reached max_cost_usd={limits.max_cost_usd}")
        if elapsed >= limits.max_wall_s:
            raise _Exit("limit_time", f"{elapsed:.1f} s reached max_wall_s={limits.max_wall_s}")
