"""The non-LLM agents: oracle applies the gold patch, nop changes nothing, replay re-runs a recording."""

from __future__ import annotations

import subprocess

import pytest

from bench.agents import make_agent
from bench.llm import RetryPolicy
from bench.metrics import trial_metrics
from bench.pricing import load_prices
from bench.sandbox.local import LocalSandbox
from bench.types import AgentContext, Limits, TrajectoryWriter
from tests.fake_llm import FakeLLMServer, Reply
from tests.tiny_task import GOLD_PATCH, make_task_repo, task_tests_pass


@pytest.fixture
def context(tmp_path):
    """Makes (AgentContext, repo) on a fresh task repo in a real LocalSandbox; closes the sandboxes after."""
    sandboxes = []

    def make(name, **fields):
        (tmp_path / name).mkdir()
        repo = make_task_repo(tmp_path / name)
        sandboxes.append(LocalSandbox(repo))
        trajectory = TrajectoryWriter(tmp_path / name / "trajectory.jsonl")
        return AgentContext(instruction="Fix add().", sandbox=sandboxes[-1], limits=Limits(),
                            trajectory=trajectory, **fields), repo

    yield make
    for sandbox in sandboxes:
        sandbox.close()


def git_status(repo) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_oracle_applies_the_gold_patch_and_cleans_up(context):
    ctx, repo = context("oracle", solution_patch=GOLD_PATCH)
    outcome = make_agent("oracle").run(ctx)
    assert outcome.exit_status == "completed" and outcome.error is None
    assert task_tests_pass(repo)
    assert git_status(repo).split() == ["M", "calc.py"]
    events = ctx.trajectory.read()
    assert events[0]["kind"] == "oracle" and events[0]["exit_code"] == 0
    patch_path = events[0]["command"].split()[-1]
    assert patch_path.startswith("/tmp/atebench-oracle-")
    assert ctx.sandbox.execute(f"test -e {patch_path}").exit_code == 1, "the patch file must be deleted"


def test_oracle_reports_a_patch_that_does_not_apply(context):
    ctx, repo = context("bad", solution_patch=GOLD_PATCH.replace("a - b", "a * b"))
    outcome = make_agent("oracle").run(ctx)
    assert outcome.exit_status == "agent_error"
    assert "the solution patch does not apply" in outcome.error and "calc.py" in outcome.error
    assert git_status(repo) == "" and not task_tests_pass(repo)


def test_oracle_without_a_patch_says_where_it_belongs(context):
    ctx, _ = context("none")
    outcome = make_agent("oracle").run(ctx)
    assert outcome.exit_status == "agent_error" and "has no solution" in outcome.error


def test_nop_changes_nothing(context):
    ctx, repo = context("nop")
    outcome = make_agent("nop").run(ctx)
    assert (outcome.exit_status, outcome.turns, outcome.error) == ("completed", [], None)
    assert git_status(repo) == "" and not task_tests_pass(repo)
    assert [e["kind"] for e in ctx.trajectory.read()] == ["nop"]


def test_replay_reproduces_a_recorded_trial_without_an_llm(context, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-anthropic-key-not-real-5e1d")
    script = [
        Reply(tool_calls=[("bash", {"command": "cat calc.py"})], input_tokens=900, output_tokens=40, cache_write_tokens=3000),
        Reply(tool_calls=[("str_replace_based_edit_tool",
                           {"command": "str_replace", "path": "calc.py", "old_str": "a - b", "new_str": "a + b"})],
              input_tokens=60, output_tokens=80, cache_read_tokens=3000),
        Reply(tool_calls=[("submit", {})], input_tokens=20, output_tokens=5, cache_read_tokens=3100),
    ]
    recorded_ctx, _ = context("recorded")
    with FakeLLMServer(script) as server:
        agent = make_agent("builtin", model="anthropic/claude-haiku-4-5", base_url=server.url,
                           retry=RetryPolicy(base_s=0.01))
        original = agent.run(recorded_ctx)
    assert original.exit_status == "submitted"

    ctx, repo = context("replayed", replay_path=recorded_ctx.trajectory.path)
    outcome = make_agent("replay").run(ctx)
    assert outcome.exit_status == "completed" and outcome.error is None
    assert task_tests_pass(repo)
    assert outcome.model == "anthropic/claude-haiku-4-5"
    prices = load_prices()
    replayed, recorded = trial_metrics(outcome, ctx.trajectory.read(), prices), \
        trial_metrics(original, recorded_ctx.trajectory.read(), prices)
    for key in ("agent_turns", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                "per_turn_context_p50", "cost_usd"):
        assert replayed[key] == recorded[key], key
    results = [e for e in ctx.trajectory.read() if e["kind"] == "tool_result" and e["name"] != "submit"]
    assert len(results) == 2 and all(e["matches_recording"] for e in results)


def test_replay_without_a_recording_is_one_clear_error(context, tmp_path):
    with pytest.raises(ValueError, match="no recorded trajectory at"):
        make_agent("replay", replay_path=tmp_path / "missing.jsonl")
    ctx, _ = context("r")
    outcome = make_agent("replay").run(ctx)
    assert outcome.exit_status == "agent_error" and "set the trial's replay_path" in outcome.error
