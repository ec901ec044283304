"""The built-in agent: one small tool-calling loop over an LLM API, in the spirit of mini-swe-agent.

Why our own: a loop whose every tool call is in the trajectory. Its API calls go through the host's
metering proxy (bench/llm_proxy.py) as the CLI agents' do, so turns, tokens, API errors and limits come
from the same records and the same code for every agent. Each exit (submit, a limit, a failure) is an
exception caught in one place, `run`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from pathlib import Path
from urllib.parse import urlsplit

from bench.agents.spec import AgentOptions, AgentSpec
from bench.agents.tools import TOOLS, run_tool
from bench.keys import host_keys, redact_value
from bench.llm import (
    DeadlineExceeded,
    LLMClient,
    LLMError,
    RetryPolicy,
    check_key,
    endpoint,
    make_client,
    parse_model,
)
from bench.llm_proxy import SOCKET_NAME, LLMProxy, api_error_counts, limit_reached, metered_turns
from bench.pricing import PRICES_PATH, cost_usd, load_prices, missing_price_note
from bench.types import AgentContext, AgentOutcome

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
        self.proxy: LLMProxy | None = None

    def record(self, kind: str, **data) -> None:
        """Append to the trajectory with the host's key values redacted."""
        self.ctx.trajectory.append(kind, **redact_value(data, self.keys))

    def run(self, ctx: AgentContext) -> AgentOutcome:
        if self.outcome is not None:
            raise RuntimeError("a BuiltinAgent runs one trial; build a fresh one (AgentSpec.build) for the next")
        self.ctx, self.keys = ctx, host_keys()
        outcome = self.outcome = AgentOutcome(exit_status="agent_error", model=self.model, started_at=time.time())
        scratch = Path(tempfile.mkdtemp(prefix="atebench-llm-"))  # short: a unix socket path has ~100 bytes
        try:
            upstream, inject = endpoint(self.model, self.base_url)
            parts = urlsplit(upstream)
            self.proxy = LLMProxy(
                scratch / SOCKET_NAME,
                f"{parts.scheme}://{parts.netloc}",
                inject,
                ctx.trajectory.path.parent / "llm_calls.jsonl",
            ).start()
            client = make_client(
                self.model,
                base_url=self.base_url,
                proxy_socket=str(self.proxy.socket_path),
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
            if self.proxy is not None:
                self.proxy.close()
                outcome.turns = metered_turns(self.proxy.records)
                outcome.api_errors, outcome.api_retries = api_error_counts(self.proxy.records)
            shutil.rmtree(scratch, ignore_errors=True)
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
        self.proxy.settle()
        outcome.turns = metered_turns(self.proxy.records)  # the proxy's record of this reply is its turn
        if not outcome.turns:
            raise LLMError(f"the metering proxy has no record of the reply; see {self.proxy.records_path.name}")
        n, u = len(outcome.turns), outcome.turns[-1]
        self.record(
            "assistant",
            turn=n,
            content=reply.text,
            stop_reason=reply.stop_reason,
            tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in reply.tool_calls],
            usage={
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "cache_read_tokens": u.cache_read_tokens,
                "cache_write_tokens": u.cache_write_tokens,
            },
            cost_usd=cost_usd(
                self.model, self.prices, u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens
            ),
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
        limits = self.ctx.limits
        reached = limit_reached(limits, self.model, self.prices, metered_turns(self.proxy.records))
        if reached:
            raise _Exit(*reached)
        elapsed = time.time() - self.outcome.started_at
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
