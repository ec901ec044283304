"""The installed CLI agents (Claude Code, Codex) for real, inside bubblewrap, against the fake LLM server
through the metering proxy. The pinned CLIs are installed on first use (npm; `.ci/run` does it ahead);
without npm or the package these tests skip and say why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import REPO

from bench import specs
from bench.agents import AgentOptions, TrialInputs, make_spec, make_specs
from bench.agents.claude_code import ClaudeCodeAgent
from bench.agents.claude_code import package as claude_code_package
from bench.agents.cli_agent import RELAY_PORT, CLIUnavailable
from bench.agents.codex import CodexAgent
from bench.agents.codex import package as codex_package
from bench.llm_proxy import PLACEHOLDER_KEY
from bench.metrics import trial_metrics
from bench.pricing import cost_usd, load_prices
from bench.sandbox.docker import DockerSandbox
from bench.sandbox.images import BASE_IMAGE
from bench.sandbox.local import LocalSandbox, bwrap_available
from bench.specs import Limits
from bench.types import AgentContext, AgentOutcome, TrajectoryWriter, TurnUsage
from tests.fake_llm import Failure, FakeLLMServer, Reply
from tests.tiny_task import make_task_repo, task_tests_pass

HOST_KEY = f"sk-ant-host-secret-{uuid.uuid4().hex}"
MODEL = "anthropic/claude-haiku-4-5"
OPENAI_HOST_KEY = f"sk-proj-host-secret-{uuid.uuid4().hex}"
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
CODEX_MODEL = "openai/atebench-test-model"
"""A slug Codex does not know: it offers its fallback tools (exec_command), which the script uses."""


@pytest.fixture(scope="module")
def claude_code():
    if not bwrap_available():
        pytest.skip("CLAUDE CODE TESTS SKIPPED: bubblewrap (bwrap) is not installed")
    try:
        return claude_code_package().ensure_installed()
    except CLIUnavailable as e:
        pytest.skip(f"CLAUDE CODE TESTS SKIPPED: {e}")


@pytest.fixture(scope="module")
def codex():
    if not bwrap_available():
        pytest.skip("CODEX TESTS SKIPPED: bubblewrap (bwrap) is not installed")
    try:
        return codex_package().ensure_installed()
    except CLIUnavailable as e:
        pytest.skip(f"CODEX TESTS SKIPPED: {e}")


@pytest.fixture(autouse=True)
def host_key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", HOST_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_HOST_KEY)


def fix_calc(repo: Path) -> list:
    """Claude Code's own tools, one step per tool result: run, read, edit, finish."""
    calc = str(repo / "calc.py")
    look = {"command": "python3 -m pytest -q test_calc.py; env > env.txt", "description": "run the test"}
    return [
        Reply(
            text="Let me look.",
            tool_calls=[("Bash", look)],
            input_tokens=1200,
            output_tokens=50,
            cache_read_tokens=300,
            cache_write_tokens=40,
        ),
        Reply(tool_calls=[("Read", {"file_path": calc})], input_tokens=1300, output_tokens=51),
        Reply(
            tool_calls=[("Edit", {"file_path": calc, "old_string": "a - b", "new_string": "a + b"})],
            input_tokens=1400,
            output_tokens=52,
            cache_read_tokens=900,
        ),
        Reply(text="Fixed add.", input_tokens=1500, output_tokens=53),
    ]


def run_claude(tmp_path, server, limits=None, agent=None, docker_client=None):
    """One CLI agent's trial on the tiny task, in the local sandbox (or docker, given a client)."""
    repo = make_task_repo(tmp_path)
    trajectory = TrajectoryWriter(tmp_path / "trial" / "trajectory.jsonl")
    sandbox = DockerSandbox(repo, BASE_IMAGE, client=docker_client) if docker_client else LocalSandbox(repo)
    agent = agent or ClaudeCodeAgent(MODEL, base_url=server.url)
    try:
        outcome = agent.run(AgentContext("Fix add in calc.py.", sandbox, limits or Limits(turns=10), trajectory))
    finally:
        sandbox.close()
    return repo, outcome, trajectory.read()


def run_smoke(agent: str, model: str, base_url: str, run_id: str, results: Path, env: dict, sandbox: str = "local"):
    """`runner.py --task smoke` with CLI agents against the fake server, as a user runs it."""
    command = [sys.executable, str(REPO / "runner.py"), "--task", "smoke", "--framework", "reference"]
    command += ["--agent", agent, "--model", model, "--base-url", base_url, "--run-id", run_id]
    command += ["--results-dir", str(results), "--no-throughput", "--sandbox", sandbox]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def all_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_claude_code_fixes_a_task_metered_by_the_proxy(claude_code, tmp_path):
    with FakeLLMServer(fix_calc(tmp_path / "repo"), by_step=True) as server:
        started = time.monotonic()
        repo, outcome, events = run_claude(tmp_path, server)
        took = time.monotonic() - started
        served = server.served_replies()
        requests = server.requests
    assert outcome.exit_status == "submitted", (outcome.error, events[-3:])
    assert task_tests_pass(repo)
    # The proxy's records are the metrics, and they equal what the server served.
    assert [(t.input_tokens, t.output_tokens, t.cache_read_tokens, t.cache_write_tokens) for t in outcome.turns] == [
        (r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens) for r in served
    ]
    assert [t.tool_calls for t in outcome.turns] == [1, 1, 1, 0]
    assert (outcome.api_errors, outcome.api_retries) == (0, 0)
    # The key: only the proxy's, upstream; never inside.
    assert {r.headers.get("x-api-key") for r in requests} == {HOST_KEY}
    assert all(r.path == "/v1/messages" and r.body.get("stream") for r in requests)
    assert not [r for r in requests if "WebSearch" in json.dumps(r.body) or "WebFetch" in json.dumps(r.body)], (
        "no web tool is offered, not even as a deferred one: the sandbox has no network"
    )
    sandbox_env = (repo / "env.txt").read_text()
    assert HOST_KEY not in sandbox_env and f"ANTHROPIC_API_KEY={PLACEHOLDER_KEY}" in sandbox_env
    assert "IS_SANDBOX=1" in sandbox_env
    assert HOST_KEY not in all_text(tmp_path / "trial") + all_text(repo)
    # The trajectory holds the CLI's tool calls and results; the transcript was copied out.
    calls = [c["name"] for e in events if e["kind"] == "assistant" for c in e["tool_calls"]]
    assert calls == ["Bash", "Read", "Edit"]
    results = [e for e in events if e["kind"] == "tool_result"]
    assert len(results) == 3
    assert "1 failed" in results[0]["output"], "commands see the sandbox's PATH (its Python, with pytest)"
    assert list((tmp_path / "trial" / "transcripts").rglob("*.jsonl")), "the CLI's own transcript"
    assert cli_processes() == []
    assert not [e for e in events if e["kind"] == "note" and "differ" in e["message"]], "the CLI agrees with the proxy"
    metrics = trial_metrics(outcome, events, load_prices())
    assert metrics.agent_turns == 4 and metrics.output_tokens == 50 + 51 + 52 + 53
    print(f"claude-code session: {took:.1f} s")


@pytest.mark.parametrize("sandbox", ["local", "docker"])
def test_claude_code_retries_are_counted_and_a_turn_limit_ends_it(claude_code, sandbox, request, tmp_path):
    script = fix_calc(tmp_path / "repo")
    script[0] = [Failure(429, "slow down", retry_after_s=0.1), Failure(500), script[0]]
    client = request.getfixturevalue("docker_client") if sandbox == "docker" else None
    with FakeLLMServer(script, by_step=True) as server:
        repo, outcome, events = run_claude(tmp_path, server, Limits(turns=2), docker_client=client)
        forwarded = len(server.requests)
    assert outcome.exit_status == "limit_turns", (outcome.error, events[-3:])
    assert (len(outcome.turns), outcome.api_errors, outcome.api_retries) == (2, 2, 2)
    assert forwarded == 4, "the third turn's call is refused by the proxy, never forwarded"
    kinds = [e["kind"] for e in events]
    assert kinds[-1] == "exit" and "limit" in kinds
    assert sum(e["kind"] == "api_error" for e in events) == 2
    assert not task_tests_pass(repo)
    assert cli_processes() == [], "the killed CLI left processes behind"


def test_the_wall_time_limit_ends_a_slow_claude_code(claude_code, tmp_path):
    script = fix_calc(tmp_path / "repo")
    slow = {"command": "python3 -c 'import time; time.sleep(60)'", "description": "wait"}
    script[1] = Reply(tool_calls=[("Bash", slow)])
    with FakeLLMServer(script, by_step=True) as server:
        started = time.monotonic()
        _, outcome, events = run_claude(tmp_path, server, Limits(turns=10, wall_time_s=10))
    assert outcome.exit_status == "limit_time"
    assert time.monotonic() - started < 30, "ended at the limit, not when the 60 s command would have"
    assert len(outcome.turns) == 2, "the limit came while the second turn's command ran"
    assert cli_processes() == []


def cli_processes() -> list[str]:
    """Processes of a CLI agent or its forwarder still alive on this host."""
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "/atebench-cli/" in cmdline or "/run/atebench/fwd.py" in cmdline:
            found.append(f"{pid}: {cmdline[:120]}")
    return found


SMOKE_FIX = """python3 - <<'PY'
import pathlib
path = pathlib.Path("bench_utils/rates.py")
body = ('    if seconds <= 0:\\n        raise ValueError(f"seconds must be positive, got {seconds}")\\n'
        '    if tokens < 0:\\n        raise ValueError(f"tokens must not be negative, got {tokens}")\\n'
        '    return float(tokens) / seconds')
stub = '    raise NotImplementedError("tokens_per_second is not implemented yet")'
path.write_text(path.read_text().replace(stub, body))
PY"""


def test_runner_resolves_smoke_with_claude_code_and_the_proxy_metrics(claude_code, tmp_path):
    script = [
        Reply(
            tool_calls=[("Bash", {"command": "env; cat bench_utils/rates.py", "description": "look"})],
            input_tokens=2000,
            output_tokens=40,
            cache_write_tokens=500,
        ),
        Reply(
            tool_calls=[("Bash", {"command": SMOKE_FIX, "description": "implement"})],
            input_tokens=300,
            output_tokens=120,
            cache_read_tokens=2500,
        ),
        Reply(text="Implemented tokens_per_second.", input_tokens=200, output_tokens=15, cache_read_tokens=2800),
    ]
    results = tmp_path / "results"
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": HOST_KEY,
        "ATEBENCH_CACHE": str(tmp_path / "cache"),
        "ATEBENCH_CLI_CACHE": str(claude_code.parent),
    }
    with FakeLLMServer(script, by_step=True) as server:
        done = run_smoke("claude-code", MODEL, server.url, "cc", results, env)
        served, bodies = server.served_replies(), json.dumps([r.body for r in server.requests])
        credentials = {r.headers.get("x-api-key") for r in server.requests}
    assert done.returncode == 0, done.stdout + done.stderr
    trial = results / "cc" / "smoke" / "reference" / "claude-code" / "0"
    result = json.loads((trial / "result.json").read_text())
    assert (result["status"], result["exit_status"]) == ("resolved", "submitted"), result
    metrics = result["metrics"]
    assert metrics["agent_turns"] == len(served) == 3
    for field, attr in (
        ("input_tokens", "input_tokens"),
        ("output_tokens", "output_tokens"),
        ("cache_read_tokens", "cache_read_tokens"),
        ("cache_write_tokens", "cache_write_tokens"),
    ):
        assert metrics[field] == sum(getattr(r, attr) for r in served), field
    assert metrics["cost_usd"] is not None and metrics["cost_usd"] > 0
    # The planted host key: only upstream, as the proxy's; nowhere in the sandbox, the trial or the model's input.
    assert credentials == {HOST_KEY}
    assert "ANTHROPIC_API_KEY=" + PLACEHOLDER_KEY in bodies, "the CLI's env, as the model saw it"
    assert HOST_KEY not in bodies
    assert HOST_KEY not in all_text(results) + all_text(tmp_path / "cache")
    assert (trial / "llm_calls.jsonl").is_file() and (trial / "claude-code.stdout.jsonl").is_file()
    assert cli_processes() == []


def test_codex_fixes_a_task_metered_by_the_proxy(codex, tmp_path):
    script = [
        Reply(
            text="",
            tool_calls=[("exec_command", {"cmd": "env > env.txt; python3 -m pytest -q test_calc.py"})],
            input_tokens=3000,
            output_tokens=30,
            cache_read_tokens=1000,
        ),
        [
            Failure(500, "overloaded"),
            Reply(
                tool_calls=[("exec_command", {"cmd": "sed -i 's/a - b/a + b/' calc.py"})],
                input_tokens=400,
                output_tokens=31,
                cache_read_tokens=3900,
            ),
        ],
        Reply(text="Fixed add.", input_tokens=500, output_tokens=32, cache_read_tokens=4300),
    ]
    with FakeLLMServer(script, by_step=True) as server:
        repo, outcome, events = run_claude(tmp_path, server, agent=CodexAgent(CODEX_MODEL, base_url=server.url + "/v1"))
        served, requests = server.served_replies(), server.requests
    assert outcome.exit_status == "submitted", (outcome.error, events[-4:])
    assert task_tests_pass(repo)
    assert [(t.input_tokens, t.output_tokens, t.cache_read_tokens) for t in outcome.turns] == [
        (r.input_tokens, r.output_tokens, r.cache_read_tokens) for r in served
    ]
    assert (outcome.api_errors, outcome.api_retries) == (1, 1)
    assert all(r.path == "/v1/responses" for r in requests)
    assert not [t for r in requests for t in r.body["tools"] if t.get("type") == "web_search"], "no hosted search"
    assert {r.headers.get("authorization") for r in requests} == {f"Bearer {OPENAI_HOST_KEY}"}
    sandbox_env = (repo / "env.txt").read_text()
    assert OPENAI_HOST_KEY not in sandbox_env and f"ATEBENCH_LLM_KEY={PLACEHOLDER_KEY}" in sandbox_env
    assert OPENAI_HOST_KEY not in all_text(tmp_path / "trial") + all_text(repo)
    results = [e for e in events if e["kind"] == "tool_result"]
    assert len(results) == 2
    assert "1 failed" in results[0]["output"], "commands see the sandbox's PATH (its Python, with pytest)"
    assert not [e for e in events if e["kind"] == "note" and "differ" in e["message"]], "the CLI agrees with the proxy"
    assert list((tmp_path / "trial" / "transcripts").rglob("rollout-*.jsonl")), "the CLI's own rollout"
    assert cli_processes() == []


def test_codex_retries_a_429_after_its_retry_after_and_it_is_counted(codex, tmp_path):
    """Codex 0.171 waits out a whole-second retry-after (it gives up at once on a fractional one, "0.2")."""
    script = [[Failure(429, "slow down", retry_after_s=1), Reply(text="Nothing to fix.", output_tokens=4)]]
    with FakeLLMServer(script, by_step=True) as server:
        _, outcome, events = run_claude(tmp_path, server, agent=CodexAgent(CODEX_MODEL, base_url=server.url))
        forwarded = len(server.requests)
    assert outcome.exit_status == "submitted", (outcome.error, events[-3:])
    assert forwarded == 2 and (outcome.api_errors, outcome.api_retries, len(outcome.turns)) == (1, 1, 1)
    (error,) = [e for e in events if e["kind"] == "api_error"]
    assert (error["status"], error["retry_after"]) == (429, "1")
    assert cli_processes() == []


def test_a_turn_limit_ends_codex_and_is_labelled(codex, tmp_path):
    script = [
        Reply(tool_calls=[("exec_command", {"cmd": "ls"})], input_tokens=300, output_tokens=9),
        Reply(tool_calls=[("exec_command", {"cmd": "sed -i 's/a - b/a + b/' calc.py"})]),
        Reply(text="Fixed add."),
    ]
    with FakeLLMServer(script, by_step=True) as server:
        repo, outcome, events = run_claude(
            tmp_path, server, Limits(turns=1), agent=CodexAgent(CODEX_MODEL, base_url=server.url + "/v1")
        )
        forwarded = len(server.requests)
    assert outcome.exit_status == "limit_turns", (outcome.error, events[-3:])
    assert len(outcome.turns) == forwarded == 1, "the second call is refused by the proxy, never forwarded"
    assert any(e["kind"] == "limit" and "limits.turns=1" in e["message"] for e in events)
    assert events[-1]["kind"] == "exit" and events[-1]["exit_status"] == "limit_turns"
    assert not task_tests_pass(repo)
    assert cli_processes() == []


USE_THE_KEY = """python3 - > probe.txt 2>&1 <<'PY'
import http.client, json
ask = {"model": "%s", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
calls = [
    ("GET", "/v1/models", None),
    ("POST", "/v1/files", "{}"),
    ("POST", "/v1/messages/batches", json.dumps({"requests": []})),
    ("POST", "/v1/responses/../files", json.dumps(ask)),
    ("POST", "%s", json.dumps({**ask, "tools": [{"type": "web_search_20250305", "name": "web_search"}]})),
    ("POST", "%s", json.dumps({**ask, "tools": [{"type": "web_search"}]})),
    ("POST", "%s", json.dumps({**ask, "mcp_servers": [{"type": "url", "url": "https://example.com", "name": "x"}]})),
    ("POST", "%s", '{"model": "%s", "model": "gpt-5-pro", "input": "hi"}'),
]
for method, path, body in calls:
    conn = http.client.HTTPConnection("127.0.0.1", %d, timeout=20)
    conn.request(method, path, body=body, headers={"content-type": "application/json", "x-api-key": "x"})
    print(method, path, conn.getresponse().status)
PY"""


@pytest.mark.parametrize("cli", ["claude-code", "codex"])
def test_the_sandbox_cannot_use_the_proxys_key_for_anything_but_its_clis_calls(cli, request, tmp_path):
    """The proxy is the sandbox's one way out and holds the host's key: from a command the agent runs, call
    other endpoints (models, files, batches, a path that walks out of the CLI's), and the CLI's own endpoint
    with a provider-run web search, an MCP server or a body parsers read two ways. Each is refused (403)
    before the provider sees it, recorded as refused, and the CLI goes on to finish."""
    request.getfixturevalue(cli.replace("-", "_"))
    path, model = ("/v1/messages", "claude-haiku-4-5") if cli == "claude-code" else ("/v1/responses", "m")
    probe = USE_THE_KEY % (model, path, path, path, path, model, RELAY_PORT)
    if cli == "claude-code":
        step, agent = ("Bash", {"command": probe, "description": "probe"}), ClaudeCodeAgent
    else:
        step, agent = ("exec_command", {"cmd": probe}), CodexAgent
    script = [Reply(tool_calls=[step], output_tokens=7), Reply(text="done", output_tokens=3)]
    with FakeLLMServer(script, by_step=True) as server:
        base = server.url if cli == "claude-code" else server.url + "/v1"
        repo, outcome, events = run_claude(
            tmp_path, server, agent=agent(MODEL if cli == "claude-code" else CODEX_MODEL, base_url=base)
        )
        reached = [r.path for r in server.requests]
    assert outcome.exit_status == "submitted", (outcome.error, events[-3:])
    statuses = [line.rsplit(" ", 1)[1] for line in (repo / "probe.txt").read_text().splitlines()]
    assert statuses == ["403"] * 8, (repo / "probe.txt").read_text()
    assert reached == [path, path], "only the CLI's own two calls reached the provider"
    refused = [e for e in events if e["kind"] == "llm_call" and e["refused"]]
    assert len(refused) == 8 and all("403" not in e["refused"] for e in refused)
    assert [t.output_tokens for t in outcome.turns] == [7, 3], "refused calls are no turns"
    assert (outcome.api_errors, outcome.api_retries) == (0, 0)
    assert cli_processes() == []


def test_runner_resolves_smoke_with_codex(codex, tmp_path):
    script = [
        Reply(
            tool_calls=[("exec_command", {"cmd": "env; cat bench_utils/rates.py"})],
            input_tokens=2500,
            output_tokens=20,
            cache_read_tokens=700,
        ),
        Reply(
            tool_calls=[("exec_command", {"cmd": SMOKE_FIX})],
            input_tokens=300,
            output_tokens=110,
            cache_read_tokens=3100,
        ),
        Reply(text="Implemented tokens_per_second.", input_tokens=200, output_tokens=12, cache_read_tokens=3500),
    ]
    results = tmp_path / "results"
    env = {
        **os.environ,
        "OPENAI_API_KEY": OPENAI_HOST_KEY,
        "ATEBENCH_CACHE": str(tmp_path / "cache"),
        "ATEBENCH_CLI_CACHE": str(codex.parent),
    }
    with FakeLLMServer(script, by_step=True) as server:
        done = run_smoke("codex", CODEX_MODEL, server.url + "/v1", "cx", results, env)
        served, bodies = server.served_replies(), json.dumps([r.body for r in server.requests])
        credentials = {r.headers.get("authorization") for r in server.requests}
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((results / "cx" / "smoke" / "reference" / "codex" / "0" / "result.json").read_text())
    assert (result["status"], result["exit_status"]) == ("resolved", "submitted"), result
    metrics = result["metrics"]
    assert metrics["agent_turns"] == len(served) == 3
    assert metrics["input_tokens"] == sum(r.input_tokens for r in served)
    assert metrics["output_tokens"] == sum(r.output_tokens for r in served)
    assert metrics["cache_read_tokens"] == sum(r.cache_read_tokens for r in served)
    assert credentials == {f"Bearer {OPENAI_HOST_KEY}"}
    assert "ATEBENCH_LLM_KEY=" + PLACEHOLDER_KEY in bodies and OPENAI_HOST_KEY not in bodies
    assert OPENAI_HOST_KEY not in all_text(results) + all_text(tmp_path / "cache")
    assert cli_processes() == []


PRICED_CODEX_MODEL = "openai/gpt-5-mini"
"""A priced slug, so the run's cost can be checked against what the server served."""


@pytest.mark.parametrize("sandbox", ["local", "docker"])
def test_runner_resolves_smoke_with_both_clis_against_one_server(claude_code, codex, sandbox, request, tmp_path):
    """The issue's acceptance run: `--agent claude-code,codex --model claude-code=...,codex=... --base-url`
    against one fake server; each resolves, and its turns, tokens and cost are what the server served.
    The docker variant runs on the real local engine (the framework image built locally, never pulled)."""
    if sandbox == "docker":
        request.getfixturevalue("docker_client")
    cc_script = [
        [
            Failure(429, "slow down", retry_after_s=0.2),
            Reply(
                tool_calls=[("Bash", {"command": "env; cat bench_utils/rates.py", "description": "look"})],
                input_tokens=2100,
                output_tokens=41,
                cache_write_tokens=400,
            ),
        ],
        Reply(
            tool_calls=[("Bash", {"command": SMOKE_FIX, "description": "implement"})],
            input_tokens=310,
            output_tokens=121,
            cache_read_tokens=2500,
        ),
        Reply(text="Implemented tokens_per_second.", input_tokens=210, output_tokens=16, cache_read_tokens=2900),
    ]
    codex_script = [
        Reply(
            tool_calls=[("exec_command", {"cmd": "env; cat bench_utils/rates.py"})],
            input_tokens=2600,
            output_tokens=21,
            cache_read_tokens=800,
        ),
        [
            Failure(503, "overloaded", retry_after_s=0.2),
            Reply(
                tool_calls=[("exec_command", {"cmd": SMOKE_FIX})],
                input_tokens=320,
                output_tokens=111,
                cache_read_tokens=3200,
            ),
        ],
        Reply(text="Implemented tokens_per_second.", input_tokens=220, output_tokens=13, cache_read_tokens=3600),
    ]
    results, prices = tmp_path / "results", load_prices()
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": HOST_KEY,
        "OPENAI_API_KEY": OPENAI_HOST_KEY,
        "ATEBENCH_CACHE": str(tmp_path / "cache"),
        "ATEBENCH_CLI_CACHE": str(claude_code.parent),
    }
    models = {"claude-code": MODEL, "codex": PRICED_CODEX_MODEL}
    routes = {"claude-code": "/v1/messages", "codex": "/v1/responses"}
    with FakeLLMServer({routes["claude-code"]: cc_script, routes["codex"]: codex_script}, by_step=True) as server:
        done = run_smoke(
            "claude-code,codex",
            ",".join(f"{a}={m}" for a, m in models.items()),
            server.url,
            "both",
            results,
            env,
            sandbox,
        )
        served = {agent: server.served_replies(route) for agent, route in routes.items()}
        bodies = json.dumps([r.body for r in server.requests])
        credentials = {r.path: {r.headers.get("x-api-key") or r.headers.get("authorization")} for r in server.requests}
    assert done.returncode == 0, done.stdout + done.stderr
    assert credentials == {"/v1/messages": {HOST_KEY}, "/v1/responses": {f"Bearer {OPENAI_HOST_KEY}"}}
    # Each CLI's environment, as the model saw it: the placeholder, never a host key.
    assert "ANTHROPIC_API_KEY=" + PLACEHOLDER_KEY in bodies and "ATEBENCH_LLM_KEY=" + PLACEHOLDER_KEY in bodies
    assert HOST_KEY not in bodies and OPENAI_HOST_KEY not in bodies
    for agent, replies in served.items():
        result = json.loads((results / "both" / "smoke" / "reference" / agent / "0" / "result.json").read_text())
        assert (result["status"], result["exit_status"], result["model"]) == ("resolved", "submitted", models[agent])
        metrics = result["metrics"]
        sums = {f: sum(getattr(r, f) for r in replies) for f in TOKEN_FIELDS}
        assert metrics["agent_turns"] == len(replies) == 3, agent
        assert {f: metrics[f] for f in TOKEN_FIELDS} == sums, agent
        assert metrics["cost_usd"] == pytest.approx(cost_usd(models[agent], prices, *sums.values())), agent
        assert (metrics["api_errors"], metrics["api_retries"]) == (1, 1), agent
    trial = results / "both" / "smoke" / "reference" / "claude-code" / "0"
    events = [json.loads(line) for line in (trial / "trajectory.jsonl").read_text().splitlines()]
    (init,) = [e for e in events if e["kind"] == "cli_init"]
    assert init["cwd"].startswith("/workspace" if sandbox == "docker" else "/"), init
    assert HOST_KEY not in all_text(results) and OPENAI_HOST_KEY not in all_text(results)
    assert cli_processes() == []
    if sandbox == "docker":
        left = [c.name for c in request.getfixturevalue("docker_client").containers.list(all=True)]
        assert not [name for name in left if "-spawn-" in name], left
    # The report's trajectory pages show a CLI's turns as the builtin's: usage per turn, named tool calls.
    report = [sys.executable, str(REPO / "runner.py"), "report", "both", "--results-dir", str(results)]
    assert subprocess.run(report, capture_output=True, text=True, timeout=120, env=env, cwd=REPO).returncode == 0
    pages = results / "both" / "report" / "trajectories"
    for agent, tool in (("claude-code", "Bash"), ("codex", "exec_command")):
        page = (pages / f"both__smoke__reference__{agent}__0.html").read_text()
        first = served[agent][0]
        assert "llm_call · turn 1" in page and f"input {first.input_tokens} · output {first.output_tokens}" in page
        assert f"tool call <b>{tool}</b>" in page and f"{tool} · exit 0" in page and "None · exit" not in page


# --- Q&A mode: a read-only task ---


def test_a_read_only_task_builds_cli_agents_without_their_edit_tools(claude_code, codex, tmp_path):
    """`[grading] kind = "answer"` makes a task read-only: each CLI agent built for it knows."""
    qa, smoke = specs.load_task("qa/rope").variant("reference"), specs.load_task("smoke").variant("reference")
    for name, model in (("claude-code", MODEL), ("codex", CODEX_MODEL)):
        spec = make_spec(name, model=model)
        assert spec.build(TrialInputs(qa, None, None)).read_only is True
        assert spec.build(TrialInputs(smoke, None, None)).read_only is False


def test_claude_code_on_a_read_only_task_is_offered_no_edit_tool(claude_code, tmp_path):
    calc = str(tmp_path / "repo" / "calc.py")
    script = [
        Reply(tool_calls=[("Read", {"file_path": calc})]),
        Reply(tool_calls=[("Edit", {"file_path": calc, "old_string": "a - b", "new_string": "a + b"})]),
        Reply(text="add subtracts (calc.py:2)."),
    ]
    with FakeLLMServer(script, by_step=True) as server:
        repo, outcome, events = run_claude(
            tmp_path, server, agent=ClaudeCodeAgent(MODEL, base_url=server.url, read_only=True)
        )
        offered = [{t.get("name") for t in r.body.get("tools", [])} for r in server.requests]
    assert outcome.exit_status == "submitted", (outcome.error, events[-3:])
    assert all(tools and not tools & {"Edit", "Write", "NotebookEdit"} for tools in offered), offered
    assert all("Read" in tools and "Bash" in tools for tools in offered)
    edit_result = [e for e in events if e["kind"] == "tool_result"][1]
    assert edit_result["is_error"], edit_result
    assert "a - b" in (repo / "calc.py").read_text(), "the disallowed Edit changed nothing"
    assert cli_processes() == []


def test_codex_on_a_read_only_task_sees_a_read_only_workspace(codex, tmp_path):
    script = [
        Reply(tool_calls=[("exec_command", {"cmd": "cat calc.py; echo x > new.txt; sed -i s/a/b/ calc.py"})]),
        Reply(text="add subtracts (calc.py:2)."),
    ]
    with FakeLLMServer(script, by_step=True) as server:
        repo, outcome, events = run_claude(
            tmp_path, server, agent=CodexAgent(CODEX_MODEL, base_url=server.url, read_only=True)
        )
    assert outcome.exit_status == "submitted", (outcome.error, events[-3:])
    (result,) = [e for e in events if e["kind"] == "tool_result"]
    assert "def add" in result["output"] and "Read-only file system" in result["output"], result
    assert not (repo / "new.txt").exists() and "a - b" in (repo / "calc.py").read_text()
    assert cli_processes() == []


# --- specs: one clear error before anything starts ---


@pytest.mark.parametrize(
    ("agent", "model", "message"),
    [
        ("claude-code", None, "the claude-code agent needs a model"),
        ("claude-code", "openai/gpt-5", "the claude-code agent speaks the Anthropic API"),
        ("codex", None, "the codex agent needs a model"),
        ("codex", "anthropic/claude-haiku-4-5", "the codex agent speaks the OpenAI Responses API"),
    ],
)
def test_cli_specs_name_the_flag_to_fix(agent, model, message):
    with pytest.raises(ValueError, match=message):
        make_spec(agent, model=model)


@pytest.mark.parametrize(
    ("agent", "model", "variable"),
    [("claude-code", MODEL, "ANTHROPIC_API_KEY"), ("codex", CODEX_MODEL, "OPENAI_API_KEY")],
)
def test_cli_specs_check_the_key_before_installing(agent, model, variable, monkeypatch, tmp_path):
    monkeypatch.delenv(variable)
    monkeypatch.setenv("ATEBENCH_CLI_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match=variable):
        make_spec(agent, model=model)
    assert list(tmp_path.iterdir()) == []


def test_one_run_gives_each_cli_agent_its_own_model(claude_code, codex):
    """--agent claude-code,codex --model claude-code=...,codex=...: two providers in one run."""
    specs = make_specs(["claude-code", "codex"], AgentOptions(model=f"claude-code={MODEL},codex={CODEX_MODEL}"))
    assert {name: spec.model for name, spec in specs.items()} == {"claude-code": MODEL, "codex": CODEX_MODEL}
    assert make_specs(["claude-code"], AgentOptions(model=MODEL))["claude-code"].model == MODEL
    with pytest.raises(ValueError, match="this run does not have"):
        make_specs(["claude-code"], AgentOptions(model=f"claude-code={MODEL},codex={CODEX_MODEL}"))
    with pytest.raises(ValueError, match="is not AGENT=MODEL"):
        make_specs(["claude-code", "codex"], AgentOptions(model=f"claude-code={MODEL},{CODEX_MODEL}"))
    with pytest.raises(ValueError, match="the codex agent needs a model"):
        make_specs(["claude-code", "codex"], AgentOptions(model=f"claude-code={MODEL}"))


@pytest.mark.parametrize(
    ("package", "variable", "pinned"),
    [
        (claude_code_package, "ATEBENCH_CLAUDE_CODE_VERSION", "2.1.332"),
        (codex_package, "ATEBENCH_CODEX_VERSION", "0.171.0"),
    ],
)
def test_an_environment_variable_overrides_the_pin(package, variable, pinned, monkeypatch, tmp_path):
    monkeypatch.setenv("ATEBENCH_CLI_CACHE", str(tmp_path))
    monkeypatch.delenv(variable, raising=False)
    assert package().version == pinned
    monkeypatch.setenv(variable, "9.8.7")
    assert (package().version, package().root) == ("9.8.7", tmp_path / f"{package().name}@9.8.7")
    monkeypatch.setenv(variable, "latest; rm -rf /")
    with pytest.raises(CLIUnavailable, match=f"{variable}=.* is not an npm version"):
        package()


def test_without_npm_the_install_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("ATEBENCH_CLI_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CLIUnavailable, match="npm, which is not on PATH: install Node.js and npm"):
        make_spec("claude-code", model=MODEL)


def test_a_token_limit_ends_claude_code_before_the_next_call(claude_code, tmp_path):
    with FakeLLMServer(fix_calc(tmp_path / "repo"), by_step=True) as server:
        _, outcome, events = run_claude(tmp_path, server, Limits(turns=10, tokens=1500))
        forwarded = len(server.requests)
    assert outcome.exit_status == "limit_tokens", outcome.error
    assert len(outcome.turns) == forwarded == 1  # 1200 + 50 + 300 + 40 tokens reach 1500: the second call is refused
    assert any(e["kind"] == "limit" and "limits.tokens=1500" in e["message"] for e in events)
    assert cli_processes() == []


def test_an_unisolated_sandbox_is_refused_with_the_reason(tmp_path):
    with FakeLLMServer([]) as server:
        repo = make_task_repo(tmp_path)
        sandbox = LocalSandbox(repo, isolate=False)
        try:
            outcome = ClaudeCodeAgent(MODEL, base_url=server.url).run(
                AgentContext("Fix add.", sandbox, Limits(), TrajectoryWriter(tmp_path / "trial" / "trajectory.jsonl"))
            )
        finally:
            sandbox.close()
        assert server.requests == []
    assert outcome.exit_status == "agent_error"
    assert "runs only behind a sandbox's wall" in outcome.error


def test_a_cli_that_disagrees_with_the_proxy_gets_a_note(tmp_path):
    agent = ClaudeCodeAgent(MODEL)
    agent.ctx = AgentContext("x", None, Limits(), TrajectoryWriter(tmp_path / "trajectory.jsonl"))
    agent.result_line = {
        "usage": {
            "input_tokens": 10,
            "output_tokens": 1,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
    }
    outcome = AgentOutcome("submitted", turns=[TurnUsage(0, 1, input_tokens=10, output_tokens=7)])
    agent._cross_check(outcome)
    (note,) = agent.ctx.trajectory.read()
    assert "differ from the proxy's" in note["message"] and "'output': (1, 7)" in note["message"]


def test_transcripts_are_copied_only_from_real_folders_of_the_home(tmp_path):
    """The home is the agent's to write: a link on the way to the transcript folder (to the host user's own
    ~/.claude/projects, say) or below it copies nothing from where it points."""
    from bench.agents.cli_agent import copy_regular_files

    outside = tmp_path / "host-projects"
    (outside / "p").mkdir(parents=True)
    (outside / "p" / "host-session.jsonl").write_text('{"secret": "host"}\n')
    home, dest = tmp_path / "home", tmp_path / "trial" / "transcripts"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "projects").symlink_to(outside)
    assert copy_regular_files(home / ".claude" / "projects", dest, ".jsonl", within=home) == []
    (home / ".claude" / "projects").unlink()
    (home / ".claude" / "projects" / "own").mkdir(parents=True)
    (home / ".claude" / "projects" / "own" / "s.jsonl").write_text("{}\n")
    (home / ".claude" / "projects" / "linked").symlink_to(outside / "p")
    (home / ".claude" / "projects" / "file.jsonl").symlink_to(outside / "p" / "host-session.jsonl")
    assert copy_regular_files(home / ".claude" / "projects", dest, ".jsonl", within=home) == ["own/s.jsonl"]
    (home / ".claude").rename(home / "real-claude")
    (home / ".claude").symlink_to(home / "real-claude")
    assert copy_regular_files(home / ".claude" / "projects", dest, ".jsonl", within=home) == []
    assert "host" not in "".join(p.read_text() for p in dest.rglob("*") if p.is_file())


def test_a_link_the_agent_leaves_in_its_home_copies_no_host_file_into_results(claude_code, tmp_path):
    """Through the real CLI: a command inside swaps the transcript folder for a link to a host folder."""
    host = tmp_path / "host-projects" / "p"
    host.mkdir(parents=True)
    canary = f"canary-transcript-{uuid.uuid4().hex[:8]}"
    (host / "host-session.jsonl").write_text(json.dumps({"secret": canary}) + "\n")
    attack = f"rm -rf /atebench-home/.claude/projects; ln -sfn {host.parent} /atebench-home/.claude/projects; true"
    script = [Reply(tool_calls=[("Bash", {"command": attack, "description": "tidy"})]), Reply(text="done.")]
    with FakeLLMServer(script, by_step=True) as server:
        _, outcome, events = run_claude(tmp_path, server)
    assert outcome.exit_status == "submitted", outcome.error
    assert any("ln -sfn" in json.dumps(e) for e in events if e["kind"] == "assistant"), "the attack did not run"
    trial = tmp_path / "trial"
    assert canary not in all_text(trial), "a host file reached the trial's folder through the agent's link"
