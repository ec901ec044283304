"""Claude Code as an agent: the pinned CLI, headless, metered by the host proxy.

Why these switches: `IS_SANDBOX=1` lets `--dangerously-skip-permissions` run as the sandbox's root;
`CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` stops telemetry, so the model's endpoint is its only
traffic. The key it is given is a placeholder on its command line (the sandbox drops *KEY* variables);
the proxy puts in the host's key. Its stream-json output gives the tool calls for the trajectory; turns
and tokens come from the proxy, since the stream's per-message output tokens are placeholders.
"""

from __future__ import annotations

import os
import shlex

from bench.agents.cli_agent import (
    HOME_INSIDE,
    MAX_EVENT_CHARS,
    RELAY_PORT,
    CLIAgent,
    CLIPackage,
    cli_agent_spec,
    npm_arch,
    pinned_version,
)
from bench.agents.spec import AgentOptions, AgentSpec
from bench.llm_proxy import PLACEHOLDER_KEY
from bench.types import truncate

CLAUDE_CODE = "claude-code"
PINNED = "2.1.332"
VERSION_VARIABLE = "ATEBENCH_CLAUDE_CODE_VERSION"
"""Overrides the pin (e.g. to try a newer release); the fake-server tests say whether it still works."""
EDIT_TOOLS = ("Edit", "Write", "NotebookEdit")
"""Disallowed on a read-only (Q&A) task, as ATE-Bench did; Bash can still write, and the grader fails that."""
WEB_TOOLS = ("WebSearch", "WebFetch")
"""Disallowed always: the sandbox has no network, and WebSearch is a tool the provider runs outside it (the
proxy refuses a call that offers one)."""


def package(version: str | None = None) -> CLIPackage:
    """The npm package; the native binary comes from its platform package (the postinstall's hardlink is
    not relied on: a stricter npm may skip install scripts)."""
    return CLIPackage(
        CLAUDE_CODE,
        "@anthropic-ai/claude-code",
        version or pinned_version(VERSION_VARIABLE, PINNED),
        f"node_modules/@anthropic-ai/claude-code-linux-{npm_arch()}/claude",
    )


class ClaudeCodeAgent(CLIAgent):
    name = CLAUDE_CODE
    upstream_default = "https://api.anthropic.com"
    routes = ("POST /v1/messages",)

    def __init__(self, model: str, base_url: str | None = None, version: str | None = None, **options):
        super().__init__(model, base_url or os.environ.get("ATEBENCH_ANTHROPIC_BASE_URL"), **options)
        self.package = package(version)
        self.transcript_dir = ".claude/projects"

    def inject(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}

    def command(self, binary: str, instruction: str) -> str:
        disallowed = ",".join(WEB_TOOLS + (EDIT_TOOLS if self.read_only else ()))
        return (
            f"ANTHROPIC_API_KEY={PLACEHOLDER_KEY} exec {binary} --print --model {shlex.quote(self.api_model)} "
            f"--output-format stream-json --verbose --dangerously-skip-permissions --disallowedTools {disallowed} -- "
            f"{shlex.quote(instruction)}"
        )

    def env(self) -> dict[str, str]:
        return {
            "HOME": HOME_INSIDE,
            "IS_SANDBOX": "1",
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{RELAY_PORT}",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
        }

    def on_line(self, line: dict) -> None:
        """stream-json: one `assistant` line per content block, `user` lines carry tool results, one `result`."""
        kind = line.get("type")
        if kind == "assistant":
            message = line.get("message") or {}
            blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
            text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
            calls = [
                {"id": b.get("id"), "name": b.get("name"), "arguments": b.get("input")}
                for b in blocks
                if b.get("type") == "tool_use"
            ]
            self.record(
                "assistant",
                message_id=message.get("id"),
                content=truncate(text, MAX_EVENT_CHARS),
                tool_calls=calls,
                subagent=line.get("parent_tool_use_id"),
            )
        elif kind == "user":
            content = (line.get("message") or {}).get("content")
            for block in content if isinstance(content, list) else []:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    output = block.get("content")
                    if isinstance(output, list):
                        output = "".join(part.get("text", "") for part in output if isinstance(part, dict))
                    self.record(
                        "tool_result",
                        tool_call_id=block.get("tool_use_id"),
                        output=truncate(str(output or ""), MAX_EVENT_CHARS),
                        is_error=bool(block.get("is_error")),
                        exit_code=1 if block.get("is_error") else 0,  # the CLI's error flag; it gives no code
                    )
        elif kind == "result":
            self.result_line = line
            self.record(
                "cli_result",
                subtype=line.get("subtype"),
                is_error=line.get("is_error"),
                num_turns=line.get("num_turns"),
                duration_ms=line.get("duration_ms"),
                result=truncate(str(line.get("result") or ""), MAX_EVENT_CHARS),
            )
        elif kind == "system" and line.get("subtype") == "init":
            self.record(
                "cli_init",
                session_id=line.get("session_id"),
                version=line.get("claude_code_version"),
                tools=line.get("tools"),
                cwd=line.get("cwd"),
            )

    def cli_totals(self) -> dict[str, int] | None:
        usage = (self.result_line or {}).get("usage")
        if not isinstance(usage, dict):
            return None
        return {
            "input": usage.get("input_tokens") or 0,
            "output": usage.get("output_tokens") or 0,
            "cache_read": usage.get("cache_read_input_tokens") or 0,
            "cache_write": usage.get("cache_creation_input_tokens") or 0,
        }


def claude_code_spec(options: AgentOptions) -> AgentSpec:
    """`--model anthropic/<model>` (the CLI gets `<model>`), `--base-url` the Anthropic API; the CLI is
    installed on first use, and the key checked, before any trial."""
    return cli_agent_spec(
        CLAUDE_CODE,
        options,
        ("anthropic",),
        "the claude-code agent needs a model, e.g. --model anthropic/claude-sonnet-4-5",
        "the claude-code agent speaks the Anthropic API: --model anthropic/<model>, not {model!r}",
        ClaudeCodeAgent,
        package,
    )
