"""The built-in agent: one small tool-calling loop over an LLM API, in the spirit of mini-swe-agent.

Why our own: installed CLI agents hide their turns and tokens; this loop records every API call
(usage included) and every tool call in the trajectory, so every metric is exact. Each exit (submit,
a limit, a failure) is an exception caught in one place, `run`.
"""

from __future__ import annotations

import time
import traceback

from bench.agents.spec import AgentOptions, AgentSpec
from bench.agents.tools import TOOLS, run_tool
from bench.keys import host_keys, redact_value
from bench.llm import DeadlineExceeded, LLMClient, LLMError, RetryPolicy, check_key, make_client, parse_model
from bench.pricing import PRICES_PATH, cost_usd, load_prices, missing_price_note
from bench.types import AgentContext, AgentOutcome, TurnUsage

SYSTEM_PROMPT = """You are an expert software engineer working alone in the repository at {workdir}.
Use the tools: `bash` to explore, run and test; `str_replace_based_edit_tool` to view and edit files;
`submit` when the task is done. Work in small verified steps: read the relevant code, make the change,
run the tests that cover it, then call `submit`. Nobody will answer questions; decide and proceed.
Hidden tests grade the workspace after you submit; do not edit existing tests to make them pass.
A task that asks a question is read-only instead: change no file, and give your answer in `submit`'s summary."""

BUILTIN = "builtin"
NO_TOOL_CALL = "Your reply called no tool. Use the tools to work on the task, and call `submit` when it is done."


class _Exit(Exception):
    def __init__(self, status: str, message: str | None = None):
        super().__init__(message or status)
        self.status, self.message = status, message


class BuiltinAgent:
    """One trial's agent: the conversation (`messages`) and the outcome so far live on it, so it runs once."""

    name = BUILTIN

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        prices_path=PRICES_PATH,
        max_output_chars: int = 10_000,
        max_reply_tokens: int = 16_384,
        request_timeout_s: float = 600.0,
        retry: RetryPolicy | None = None,
    ):
        if not model:
            raise ValueError("the builtin agent needs a model, e.g. --model anthropic/claude-sonnet-4-5")
        parse_model(model)
        self.model, self.base_url = model, base_url
        self.prices = load_prices(prices_path)
        self.max_output_chars, self.max_reply_tokens = max_output_chars, max_reply_tokens
        self.request_timeout_s, self.retry = request_timeout_s, retry or RetryPolicy()
        self.messages: list[dict] = []
        self.outcome: AgentOutcome | None = None
        self.ctx: AgentContext | None = None
        self.keys: list[str] = []

    def record(self, kind: str, **data) -> None:
        """Append to the trajectory with the host's key values redacted."""
        self.ctx.trajectory.append(kind, **redact_value(data, self.keys))

    def run(self, ctx: AgentContext) -> AgentOutcome:
        if self.outcome is not None:
            raise RuntimeError("a BuiltinAgent runs one trial; build a fresh one (AgentSpec.build) for the next")
        self.ctx, self.keys = ctx, host_keys()
        outcome = self.outcome = AgentOutcome(exit_status="agent_error", model=self.model, started_at=time.time())
        client = None
        try:
            client = make_client(
                self.model,
                base_url=self.base_url,
                timeout_s=self.request_timeout_s,
                max_reply_tokens=self.max_reply_tokens,
                retry=self.retry,
                on_api_error=lambda event: self.record("api_error", **event),
            )
            self._loop(client)
        except _Exit as e:
            outcome.exit_status = e.status
            if e.status.startswith("limit_"):
                self.record("limit", exit_status=e.status, message=e.message)
        except DeadlineExceeded as e:
            outcome.exit_status = "limit_time"
            self.record("limit", exit_status="limit_time", message=redact_value(str(e), self.keys))
        except LLMError as e:
            outcome.error = redact_value(str(e), self.keys)
            self.record("error", message=outcome.error)
        except KeyboardInterrupt:
            outcome.exit_status = "interrupted"
            self.record("interrupted", message="the run was interrupted")
            raise
        except Exception as e:
            outcome.error = redact_value(f"builtin agent crashed: {type(e).__name__}: {e}", self.keys)
            self.record("error", message=outcome.error, traceback=traceback.format_exc())
        finally:
            if client is not None:
                outcome.api_errors, outcome.api_retries = client.api_errors, client.api_retries
            outcome.ended_at = time.time()
            self.record("exit", exit_status=outcome.exit_status, error=outcome.error)
        return outcome

    def _loop(self, client: LLMClient) -> None:
        ctx = self.ctx
        system = SYSTEM_PROMPT.format(workdir=ctx.sandbox.workdir)
        self.record(
            "system", model=self.model, content=system, tools=[t.name for t in TOOLS], limits=ctx.limits.model_dump()
        )
        self.record("user", content=ctx.instruction)
        self.messages.append({"role": "user", "content": ctx.instruction})
        note = missing_price_note(self.model, self.prices)
        if note:
            self.record("note", message=f"{note}; the cost limit is not enforced")
        while True:
            self._check_limits()
            self._step(client, system)

    def _step(self, client: LLMClient, system: str) -> None:
        ctx, outcome = self.ctx, self.outcome
        started = time.time()
        deadline = time.monotonic() + ctx.limits.wall_time_s - (started - outcome.started_at)
        reply = client.complete(system, self.messages, TOOLS, deadline=deadline)
        u = reply.usage
        outcome.turns.append(
            TurnUsage(started, time.time(), u.input, u.output, u.cache_read, u.cache_write, len(reply.tool_calls))
        )
        n = len(outcome.turns)
        self.record(
            "assistant",
            turn=n,
            content=reply.text,
            stop_reason=reply.stop_reason,
            tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in reply.tool_calls],
            usage={
                "input_tokens": u.input,
                "output_tokens": u.output,
                "cache_read_tokens": u.cache_read,
                "cache_write_tokens": u.cache_write,
            },
            cost_usd=cost_usd(self.model, self.prices, u.input, u.output, u.cache_read, u.cache_write),
        )
        self.messages.append({"role": "assistant", "content": reply.text, "tool_calls": reply.tool_calls})
        if not reply.tool_calls:
            self.messages.append({"role": "user", "content": NO_TOOL_CALL})
            self.record("user", content=NO_TOOL_CALL)
            return
        results = []
        for call in reply.tool_calls:
            if call.name == "submit":
                self.record(
                    "tool_result",
                    turn=n,
                    tool_call_id=call.id,
                    name=call.name,
                    output="submitted",
                    exit_code=0,
                    duration_s=0.0,
                )
                raise _Exit("submitted")
            remaining = ctx.limits.wall_time_s - (time.time() - outcome.started_at)
            timeout = max(1.0, min(ctx.limits.command_timeout_s, remaining))
            result = run_tool(call, ctx.sandbox, timeout, self.max_output_chars)
            output = redact_value(result.output, self.keys)
            self.record(
                "tool_result",
                turn=n,
                tool_call_id=call.id,
                name=call.name,
                output=output,
                exit_code=result.exit_code,
                duration_s=round(result.duration_s, 3),
            )
            results.append({"tool_call_id": call.id, "name": call.name, "output": output})
        self.messages.append({"role": "tool", "results": results})

    def _check_limits(self) -> None:
        limits, turns = self.ctx.limits, self.outcome.turns
        tokens = sum(t.context_tokens + t.output_tokens for t in turns)
        cost = cost_usd(
            self.model,
            self.prices,
            sum(t.input_tokens for t in turns),
            sum(t.output_tokens for t in turns),
            sum(t.cache_read_tokens for t in turns),
            sum(t.cache_write_tokens for t in turns),
        )
        elapsed = time.time() - self.outcome.started_at
        if len(turns) >= limits.turns:
            raise _Exit("limit_turns", f"{len(turns)} turns reached limits.turns={limits.turns}")
        if tokens >= limits.tokens:
            raise _Exit("limit_tokens", f"{tokens} tokens reached limits.tokens={limits.tokens}")
        if cost is not None and cost >= limits.cost_usd:
            raise _Exit("limit_cost", f"${cost:.4f} reached limits.cost_usd={limits.cost_usd}")
        if elapsed >= limits.wall_time_s:
            raise _Exit("limit_time", f"{elapsed:.1f} s reached limits.wall_time_s={limits.wall_time_s}")


def builtin_spec(options: AgentOptions) -> AgentSpec:
    """The run's `--model` and `--base-url`; the model's key is checked once, before any trial."""
    if not options.model:
        raise ValueError("the builtin agent needs a model, e.g. --model anthropic/claude-sonnet-4-5")
    parse_model(options.model)
    model, base_url = options.model, options.base_url
    return AgentSpec(
        BUILTIN, lambda trial: BuiltinAgent(model, base_url), model=model, check_ready=lambda: check_key(model)
    )
