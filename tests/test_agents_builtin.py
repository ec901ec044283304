"""The built-in agent end to end: real sandbox, real git repo, real SDKs against a scripted server."""

from __future__ import annotations

import json
import sys

import pytest

from bench.agents import BuiltinAgent, make_spec
from bench.llm import RetryPolicy
from bench.metrics import trial_metrics
from bench.pricing import load_prices
from bench.sandbox.local import LocalSandbox
from bench.specs import Limits
from bench.types import AgentContext, TrajectoryWriter
from tests.fake_llm import Failure, FakeLLMServer, Malformed, Reply
from tests.tiny_task import make_task_repo, task_tests_pass

ANTHROPIC_KEY = "test-anthropic-key-not-real-7f3a9c1e"
OPENAI_KEY = "test-openai-key-not-real-2b8d4e6f"
MODELS = {"anthropic": "anthropic/claude-haiku-4-5", "openai": "openai/gpt-5"}
FAST_RETRY = RetryPolicy(max_retries=3, base_s=0.01, max_s=0.2)


@pytest.fixture(autouse=True)
def host_keys(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)


def base_url(server: FakeLLMServer, provider: str) -> str:
    return server.url if provider == "anthropic" else server.url + "/v1"


def run_agent(tmp_path, server, provider, limits=None, **options):
    """One trial of the builtin agent in a real LocalSandbox on a fresh task repo."""
    repo = make_task_repo(tmp_path)
    trajectory = TrajectoryWriter(tmp_path / "out" / "trajectory.jsonl")
    agent = BuiltinAgent(
        model=MODELS[provider], base_url=base_url(server, provider), retry=options.pop("retry", FAST_RETRY), **options
    )
    sandbox = LocalSandbox(repo)
    try:
        ctx = AgentContext(
            instruction="Fix add() in calc.py so test_calc.py passes.",
            sandbox=sandbox,
            limits=limits or Limits(),
            trajectory=trajectory,
        )
        return agent.run(ctx), trajectory.read(), repo
    finally:
        sandbox.close()


SOLVE = [
    Reply(text="Let me look.", tool_calls=[("bash", {"command": "cat calc.py"})]),
    Reply(
        tool_calls=[
            (
                "str_replace_based_edit_tool",
                {"command": "str_replace", "path": "calc.py", "old_str": "a - b", "new_str": "a + b"},
            )
        ]
    ),
    Reply(tool_calls=[("bash", {"command": f"{sys.executable} -m pytest -q -p no:cacheprovider test_calc.py"})]),
    Reply(text="Fixed.", tool_calls=[("submit", {"summary": "add now adds"})]),
]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_solves_a_real_task_through_the_sdk(tmp_path, provider):
    with FakeLLMServer(SOLVE) as server:
        outcome, events, repo = run_agent(tmp_path, server, provider)
    assert outcome.exit_status == "submitted", outcome.error
    assert len(outcome.turns) == 4 and task_tests_pass(repo)
    assert "a + b" in (repo / "calc.py").read_text()
    assert [e["kind"] for e in events].count("tool_result") == 4
    results = [e for e in events if e["kind"] == "tool_result"]
    assert "return a - b" in results[0]["output"] and results[0]["exit_code"] == 0
    assert "1 passed" in results[2]["output"] and results[2]["exit_code"] == 0
    second_request = json.dumps(server.requests[1].body)
    assert "return a - b" in second_request, "the first observation must reach the model"
    assert server.requests[0].body["model"] == MODELS[provider].split("/", 1)[1]
    assert {
        t["name"] if provider == "anthropic" else t["function"]["name"] for t in server.requests[0].body["tools"]
    } == {"bash", "str_replace_based_edit_tool", "submit"}


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_429_and_500_are_retried_and_counted(tmp_path, provider):
    script = [Failure(429, "slow down", retry_after_s=0.05), Failure(500, "boom"), Reply(tool_calls=[("submit", {})])]
    with FakeLLMServer(script) as server:
        outcome, events, _ = run_agent(tmp_path, server, provider)
    assert outcome.exit_status == "submitted"
    assert (outcome.api_errors, outcome.api_retries) == (2, 2)
    assert len(server.requests) == 3 and len(outcome.turns) == 1
    api_errors = [e for e in events if e["kind"] == "api_error"]
    assert [e["status"] for e in api_errors] == [429, 500]
    assert api_errors[0]["retry_in_s"] == pytest.approx(0.05)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_final_api_failure_is_an_agent_error_that_keeps_the_trajectory(tmp_path, provider):
    script = [Reply(tool_calls=[("bash", {"command": "echo first-step"})])] + [Failure(503, "down")] * 4
    with FakeLLMServer(script) as server:
        outcome, events, _ = run_agent(tmp_path, server, provider)
    assert outcome.exit_status == "agent_error"
    assert "failed after 4 attempts" in outcome.error and "HTTP 503" in outcome.error
    assert (outcome.api_errors, outcome.api_retries) == (4, 3)
    assert len(outcome.turns) == 1
    assert any(e["kind"] == "tool_result" and "first-step" in e["output"] for e in events)
    assert events[-1] == {**events[-1], "kind": "exit", "exit_status": "agent_error"}


def test_an_unauthorised_key_is_not_retried(tmp_path):
    with FakeLLMServer([Failure(401, "invalid x-api-key"), Reply(tool_calls=[("submit", {})])]) as server:
        outcome, _, _ = run_agent(tmp_path, server, "anthropic")
    assert outcome.exit_status == "agent_error" and "not retryable" in outcome.error
    assert (outcome.api_errors, outcome.api_retries, len(server.requests)) == (1, 0, 1)


def test_a_request_timeout_is_retried(tmp_path):
    script = [Reply(tool_calls=[("submit", {})], delay_s=3.0), Reply(tool_calls=[("submit", {})])]
    with FakeLLMServer(script) as server:
        outcome, _, _ = run_agent(tmp_path, server, "openai", request_timeout_s=0.5)
    assert outcome.exit_status == "submitted"
    assert (outcome.api_errors, outcome.api_retries) == (1, 1)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_usage_with_cache_fields_is_summed(tmp_path, provider):
    script = [
        Reply(
            tool_calls=[("bash", {"command": "true"})],
            input_tokens=1000,
            output_tokens=50,
            cache_read_tokens=0,
            cache_write_tokens=4000,
        ),
        Reply(
            tool_calls=[("bash", {"command": "true"})],
            input_tokens=200,
            output_tokens=70,
            cache_read_tokens=4000,
            cache_write_tokens=300,
        ),
        Reply(tool_calls=[("submit", {})], input_tokens=100, output_tokens=10, cache_read_tokens=4300),
    ]
    with FakeLLMServer(script) as server:
        outcome, events, _ = run_agent(tmp_path, server, provider)
    metrics = trial_metrics(outcome, events, load_prices())
    assert (metrics.input_tokens, metrics.output_tokens) == (1300, 130)
    assert (metrics.cache_read_tokens, metrics.cache_write_tokens) == (8300, 4300)
    assert [t.context_tokens for t in outcome.turns] == [5000, 4500, 4400]
    assert metrics.per_turn_context_p50 == 4500
    price = {"anthropic": (1.0, 5.0, 0.10, 1.25), "openai": (1.25, 10.0, 0.125, 0.0)}[provider]
    expected = (1300 * price[0] + 130 * price[1] + 8300 * price[2] + 4300 * price[3]) / 1e6
    assert metrics.cost_usd == pytest.approx(expected)
    assert sum(e["cost_usd"] for e in events if e["kind"] == "assistant") == pytest.approx(expected)


LOOP = [Reply(tool_calls=[("bash", {"command": "echo working"})], input_tokens=100_000, output_tokens=20)] * 5


@pytest.mark.parametrize(
    "limits, exit_status, turns",
    [
        (Limits(turns=2), "limit_turns", 2),
        (Limits(tokens=250_000), "limit_tokens", 3),
        (Limits(cost_usd=0.15), "limit_cost", 2),
    ],
)
def test_limits_end_the_trial_cleanly(tmp_path, limits, exit_status, turns):
    with FakeLLMServer(LOOP) as server:
        outcome, events, _ = run_agent(tmp_path, server, "anthropic", limits=limits)
    assert (outcome.exit_status, len(outcome.turns), outcome.error) == (exit_status, turns, None)
    limit_events = [e for e in events if e["kind"] == "limit"]
    assert len(limit_events) == 1 and limit_events[0]["exit_status"] == exit_status
    assert events[-1]["kind"] == "exit" and events[-1]["exit_status"] == exit_status


def test_the_wall_time_limit_cuts_a_long_command_and_ends_the_trial(tmp_path):
    script = [Reply(tool_calls=[("bash", {"command": "sleep 30"})]), Reply(tool_calls=[("submit", {})])]
    with FakeLLMServer(script) as server:
        outcome, events, _ = run_agent(tmp_path, server, "anthropic", limits=Limits(wall_time_s=1.5))
    assert outcome.exit_status == "limit_time" and len(outcome.turns) == 1
    result = next(e for e in events if e["kind"] == "tool_result")
    assert result["exit_code"] == -1 and result["duration_s"] < 10
    assert outcome.ended_at - outcome.started_at < 10


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_the_wall_time_limit_cuts_a_slow_llm_reply(tmp_path, provider):
    """The request timeout is the time left, not the configured 600 s: a hanging API cannot outlive the trial."""
    script = [Reply(tool_calls=[("submit", {})], delay_s=20.0)]
    with FakeLLMServer(script) as server:
        outcome, events, _ = run_agent(tmp_path, server, provider, limits=Limits(wall_time_s=2.0))
    assert outcome.exit_status == "limit_time" and outcome.error is None
    assert outcome.ended_at - outcome.started_at < 8, "the request must be cut at the trial's deadline"
    assert any(e["kind"] == "limit" and e["exit_status"] == "limit_time" for e in events)


def test_no_retry_is_started_past_the_deadline(tmp_path):
    script = [Failure(429, "slow down", retry_after_s=30)] + [Reply(tool_calls=[("submit", {})])]
    with FakeLLMServer(script) as server:
        outcome, events, _ = run_agent(
            tmp_path,
            server,
            "anthropic",
            limits=Limits(wall_time_s=3.0),
            retry=RetryPolicy(max_retries=3, base_s=0.01, max_s=60),
        )
    assert outcome.exit_status == "limit_time" and outcome.ended_at - outcome.started_at < 5
    errors = [e for e in events if e["kind"] == "api_error"]
    assert len(errors) == 1 and errors[0]["will_retry"] is False


def test_a_crash_mid_trial_keeps_the_trajectory(tmp_path):
    sandbox = LocalSandbox(make_task_repo(tmp_path))
    script = [
        Reply(tool_calls=[("bash", {"command": "echo before-crash"})]),
        Reply(tool_calls=[("bash", {"command": "echo never-runs"})], on_serve=sandbox.close),
    ]
    trajectory = TrajectoryWriter(tmp_path / "trajectory.jsonl")
    with FakeLLMServer(script) as server:
        agent = BuiltinAgent(model=MODELS["anthropic"], base_url=server.url, retry=FAST_RETRY)
        outcome = agent.run(AgentContext("Fix add().", sandbox, Limits(), trajectory))
    events = trajectory.read()
    assert outcome.exit_status == "agent_error"
    assert outcome.error.startswith("builtin agent crashed: SandboxError") and "closed" in outcome.error
    assert len(outcome.turns) == 2
    assert any(e["kind"] == "tool_result" and "before-crash" in e["output"] for e in events)
    error = next(e for e in events if e["kind"] == "error")
    assert "Traceback" in error["traceback"]


def test_a_malformed_reply_is_one_clear_agent_error(tmp_path):
    with FakeLLMServer([Malformed({"unexpected": True})]) as server:
        outcome, _, _ = run_agent(tmp_path, server, "openai")
    assert outcome.exit_status == "agent_error" and "reply without choices" in outcome.error


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_keys_never_reach_the_sandbox_the_model_or_the_trajectory(tmp_path, provider):
    fake_real_key = "sk-ant-api03-" + "Q" * 40
    script = [
        Reply(tool_calls=[("bash", {"command": "env; echo ANTHROPIC=$ANTHROPIC_API_KEY OPENAI=$OPENAI_API_KEY"})]),
        Reply(tool_calls=[("bash", {"command": "printf 'leaked sk-ant-api03-%s\\n' $(printf 'Q%.0s' $(seq 40))"})]),
        Reply(tool_calls=[("submit", {})]),
    ]
    with FakeLLMServer(script) as server:
        outcome, events, _ = run_agent(tmp_path, server, provider)
    assert outcome.exit_status == "submitted"
    key = ANTHROPIC_KEY if provider == "anthropic" else OPENAI_KEY
    assert (
        server.requests[0].headers.get("authorization") == f"Bearer {key}"
        or server.requests[0].headers.get("x-api-key") == key
    ), "the key must be used for the API call"
    recorded = (tmp_path / "out" / "trajectory.jsonl").read_text()
    bodies = json.dumps([r.body for r in server.requests])
    for secret in (ANTHROPIC_KEY, OPENAI_KEY, fake_real_key):
        assert secret not in recorded and secret not in bodies
    assert "ANTHROPIC= OPENAI=\\n" in recorded, "the sandbox must not see the host's keys"
    assert "leaked [REDACTED]" in recorded and "leaked [REDACTED]" in bodies
    assert server.leaked_real_keys() == []


def test_a_missing_key_fails_before_the_trial(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ValueError, match="needs OPENAI_API_KEY in the host environment"):
        make_spec("builtin", model="openai/gpt-5")


def test_bad_agent_and_model_names_get_one_clear_error():
    with pytest.raises(ValueError, match="unknown agent 'claude'; choose one of: builtin, oracle, nop, replay"):
        make_spec("claude")
    with pytest.raises(ValueError, match="is not 'provider/model'"):
        make_spec("builtin", model="gpt-5")
    with pytest.raises(ValueError, match="needs a model"):
        make_spec("builtin")


def test_a_reply_without_tool_calls_is_nudged_and_bad_tool_arguments_come_back_as_errors(tmp_path):
    script = [
        Reply(text="I think I am done."),
        Reply(
            tool_calls=[
                (
                    "str_replace_based_edit_tool",
                    {"command": "str_replace", "path": "calc.py", "old_str": "nowhere", "new_str": "x"},
                )
            ]
        ),
        Reply(tool_calls=[("str_replace_based_edit_tool", {"command": "view", "path": "missing.py"})]),
        Reply(tool_calls=[("teleport", {})]),
        Reply(tool_calls=[("submit", {})]),
    ]
    with FakeLLMServer(script) as server:
        outcome, events, repo = run_agent(tmp_path, server, "anthropic")
    assert outcome.exit_status == "submitted" and len(outcome.turns) == 5
    assert "called no tool" in json.dumps(server.requests[1].body)
    outputs = [e["output"] for e in events if e["kind"] == "tool_result"]
    assert (
        "occurs 0 times" in outputs[0] and "FileNotFoundError" in outputs[1] and "unknown tool 'teleport'" in outputs[2]
    )
    assert not task_tests_pass(repo)
