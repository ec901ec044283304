"""Codex CLI as an agent: the pinned CLI, `codex exec` headless, metered by the host proxy.

Why this config: Codex speaks only the OpenAI Responses API (`wire_api = "responses"`; a server that
speaks only Chat Completions needs a translating proxy). Plugins, analytics, feedback and the update
check are off so the model's endpoint is its only traffic; its own sandbox is bypassed because ours
is the wall. Its `--json` log sums usage over the whole task and undercounts retries, so turns and
tokens come from the proxy; the log gives the commands for the trajectory.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

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
from bench.llm import parse_model
from bench.llm_proxy import PLACEHOLDER_KEY
from bench.types import truncate

CODEX = "codex"
PINNED = "0.171.0"
VERSION_VARIABLE = "ATEBENCH_CODEX_VERSION"
"""Overrides the pin (e.g. to try a newer release); the fake-server tests say whether it still works."""
TRIPLES = {"x64": "x86_64-unknown-linux-musl", "arm64": "aarch64-unknown-linux-musl"}


def package(version: str | None = None) -> CLIPackage:
    """The static musl binary itself (no Node needed at run time), not the `codex.js` launcher."""
    arch = npm_arch()
    return CLIPackage(
        CODEX,
        "@openai/codex",
        version or pinned_version(VERSION_VARIABLE, PINNED),
        f"node_modules/@openai/codex-linux-{arch}/vendor/{TRIPLES.get(arch, arch)}/bin/codex",
    )


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


class CodexAgent(CLIAgent):
    name = CODEX
    upstream_default = "https://api.openai.com"
    routes = ("POST /v1/responses",)
    read_only_workspace = True
    """On a read-only task its workspace is mounted read-only: Codex's own read-only policy starts a
    bubblewrap of its own, which cannot nest inside ours ("setting up uid map: Operation not
    permitted"), and it has no switch that drops only its edit tool."""

    def __init__(self, model: str, base_url: str | None = None, version: str | None = None, **options):
        provider, api_model, url = parse_model(model)
        base = (url or base_url or "").rstrip("/")
        # The sandbox's requests carry /v1; an OpenAI-style base URL (…/v1) is the upstream without it.
        super().__init__(model, base[:-3] if base.endswith("/v1") else base or None, **options)
        self.api_model = api_model
        self.package = package(version)
        self.transcript_dir = ".codex/sessions"
        self.usage_line: dict | None = None

    def inject(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"} if key else {}

    def prepare_home(self, home: Path) -> None:
        config = home / ".codex"
        config.mkdir()
        (config / "config.toml").write_text(
            f"model = {_toml(self.api_model)}\n"
            'model_provider = "atebench"\n'
            "check_for_update_on_startup = false\n"
            # `bash -lc` would run /etc/profile, whose PATH drops the sandbox's (the framework's Python first).
            "allow_login_shell = false\n"
            # The hosted web_search tool runs at the provider, outside the sandbox's wall: no network means none.
            'web_search = "disabled"\n'
            "[analytics]\nenabled = false\n"
            "[feedback]\nenabled = false\n"
            "[features]\nplugins = false\n"
            "[model_providers.atebench]\n"
            'name = "atebench"\n'
            f'base_url = "http://127.0.0.1:{RELAY_PORT}/v1"\n'
            'env_key = "ATEBENCH_LLM_KEY"\n'
            'wire_api = "responses"\n'
        )

    def command(self, binary: str, instruction: str) -> str:
        return (
            f"ATEBENCH_LLM_KEY={PLACEHOLDER_KEY} exec {binary} exec --json --skip-git-repo-check "
            f'--dangerously-bypass-approvals-and-sandbox -C "$PWD" -- {shlex.quote(instruction)} < /dev/null'
        )

    def env(self) -> dict[str, str]:
        return {"HOME": HOME_INSIDE, "CODEX_HOME": f"{HOME_INSIDE}/.codex"}

    def on_line(self, line: dict) -> None:
        """`--json`: items start and complete (commands, messages, errors); one turn.completed at the end."""
        kind, item = line.get("type"), line.get("item") or {}
        if kind == "item.started" and item.get("type") == "command_execution":
            self.record(
                "assistant",
                content="",
                tool_calls=[
                    {"id": item.get("id"), "name": "exec_command", "arguments": {"command": item.get("command")}}
                ],
            )
        elif kind == "item.completed" and item.get("type") == "command_execution":
            self.record(
                "tool_result",
                tool_call_id=item.get("id"),
                exit_code=item.get("exit_code"),
                output=truncate(str(item.get("aggregated_output") or ""), MAX_EVENT_CHARS),
            )
        elif kind == "item.completed" and item.get("type") == "agent_message":
            self.record("assistant", content=truncate(str(item.get("text") or ""), MAX_EVENT_CHARS), tool_calls=[])
        elif kind == "item.completed" and item.get("type") == "file_change":
            self.record("cli_file_change", changes=item.get("changes"))
        elif kind == "turn.completed":
            self.usage_line = line.get("usage") if isinstance(line.get("usage"), dict) else None
            self.record("cli_turn_completed", usage=self.usage_line)
        elif kind in ("turn.failed", "error") or item.get("type") == "error":
            if kind == "turn.failed":
                self.result_line = {"is_error": True, "message": str((line.get("error") or {}).get("message"))}
            self.record("cli_" + kind.replace(".", "_"), **{k: v for k, v in line.items() if k != "type"})
        elif kind == "thread.started":
            self.record("cli_init", thread_id=line.get("thread_id"))

    def cli_totals(self) -> dict[str, int] | None:
        """`turn.completed` sums the task's calls; its input includes the cached tokens, as OpenAI's does."""
        usage = self.usage_line
        if usage is None:
            return None
        cache_read, cache_write = usage.get("cached_input_tokens") or 0, usage.get("cache_write_input_tokens") or 0
        return {
            "input": (usage.get("input_tokens") or 0) - cache_read - cache_write,
            "output": usage.get("output_tokens") or 0,
            "cache_read": cache_read,
            "cache_write": cache_write,
        }


def codex_spec(options: AgentOptions) -> AgentSpec:
    """`--model openai/<slug>` (or `openai-compatible/<name>@<url>`, a server with the Responses API),
    `--base-url` the OpenAI API; the CLI is installed on first use, and the key checked, before any trial."""
    return cli_agent_spec(
        CODEX,
        options,
        ("openai", "openai-compatible"),
        "the codex agent needs a model, e.g. --model openai/gpt-5-codex",
        "the codex agent speaks the OpenAI Responses API: --model openai/<model> or "
        "openai-compatible/<name>@<url>, not {model!r}",
        CodexAgent,
        package,
    )
