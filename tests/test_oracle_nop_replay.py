"""The non-LLM agents: oracle applies the gold patch, nop changes nothing, replay re-runs a recording."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bench.agents import BuiltinAgent, NopAgent, OracleAgent, ReplayAgent, make_spec
from bench.llm import RetryPolicy
from bench.metrics import trial_metrics
from bench.pricing import load_prices
from bench.sandbox.local import LocalSandbox
from bench.specs import Limits, load_framework
from bench.types import AgentContext, TrajectoryWriter
from tests.fake_llm import FakeLLMServer, Reply
from tests.tiny_task import GOLD_PATCH, make_task_repo, task_tests_pass


@pytest.fixture
def context(tmp_path):
    """Makes (AgentContext, repo) on a fresh task repo in a real LocalSandbox; closes the sandboxes after."""
    sandboxes = []

    def make(name):
        (tmp_path / name).mkdir()
        repo = make_task_repo(tmp_path / name)
        sandboxes.append(LocalSandbox(repo))
        trajectory = TrajectoryWriter(tmp_path / name / "trajectory.jsonl")
        return AgentContext(
            instruction="Fix add().", sandbox=sandboxes[-1], limits=Limits(), trajectory=trajectory
        ), repo

    yield make
    for sandbox in sandboxes:
        sandbox.close()


def git_status(repo) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_oracle_applies_the_gold_patch_and_cleans_up(context):
    ctx, repo = context("oracle")
    outcome = OracleAgent(GOLD_PATCH).run(ctx)
    assert outcome.exit_status == "completed" and outcome.error is None
    assert task_tests_pass(repo)
    assert git_status(repo).split() == ["M", "calc.py"]
    events = ctx.trajectory.read()
    assert events[0]["kind"] == "oracle" and events[0]["exit_code"] == 0
    patch_path = events[0]["command"].split()[-1]
    assert patch_path.startswith("/tmp/atebench-oracle-")
    assert ctx.sandbox.execute(f"test -e {patch_path}").exit_code == 1, "the patch file must be deleted"


def test_oracle_reports_a_patch_that_does_not_apply(context):
    ctx, repo = context("bad")
    outcome = OracleAgent(GOLD_PATCH.replace("a - b", "a * b")).run(ctx)
    assert outcome.exit_status == "agent_error"
    assert "the solution patch does not apply" in outcome.error and "calc.py" in outcome.error
    assert git_status(repo) == "" and not task_tests_pass(repo)


def test_oracle_without_a_patch_says_where_it_belongs(context):
    ctx, _ = context("none")
    outcome = OracleAgent(None).run(ctx)
    assert outcome.exit_status == "agent_error" and "has no solution" in outcome.error


def test_nop_changes_nothing(context):
    ctx, repo = context("nop")
    outcome = NopAgent().run(ctx)
    assert (outcome.exit_status, outcome.turns, outcome.error) == ("completed", [], None)
    assert git_status(repo) == "" and not task_tests_pass(repo)
    assert [e["kind"] for e in ctx.trajectory.read()] == ["nop"]


def test_replay_reproduces_a_recorded_trial_without_an_llm(context, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-anthropic-key-not-real-5e1d")
    script = [
        Reply(
            tool_calls=[("bash", {"command": "cat calc.py"})],
            input_tokens=900,
            output_tokens=40,
            cache_write_tokens=3000,
        ),
        Reply(
            tool_calls=[
                (
                    "str_replace_based_edit_tool",
                    {"command": "str_replace", "path": "calc.py", "old_str": "a - b", "new_str": "a + b"},
                )
            ],
            input_tokens=60,
            output_tokens=80,
            cache_read_tokens=3000,
        ),
        Reply(tool_calls=[("submit", {})], input_tokens=20, output_tokens=5, cache_read_tokens=3100),
    ]
    recorded_ctx, _ = context("recorded")
    with FakeLLMServer(script) as server:
        agent = BuiltinAgent(model="anthropic/claude-haiku-4-5", base_url=server.url, retry=RetryPolicy(base_s=0.01))
        original = agent.run(recorded_ctx)
    assert original.exit_status == "submitted"

    ctx, repo = context("replayed")
    outcome = ReplayAgent(recorded_ctx.trajectory.path).run(ctx)
    assert outcome.exit_status == "completed" and outcome.error is None
    assert task_tests_pass(repo)
    assert outcome.model == "anthropic/claude-haiku-4-5"
    prices = load_prices()
    replayed, recorded = (
        trial_metrics(outcome, ctx.trajectory.read(), prices),
        trial_metrics(original, recorded_ctx.trajectory.read(), prices),
    )
    for key in (
        "agent_turns",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "per_turn_context_p50",
        "cost_usd",
    ):
        assert getattr(replayed, key) == getattr(recorded, key), key
    results = [e for e in ctx.trajectory.read() if e["kind"] == "tool_result" and e["name"] != "submit"]
    assert len(results) == 2 and all(e["matches_recording"] for e in results)


def test_replay_without_a_recording_is_one_clear_error(context, tmp_path):
    with pytest.raises(ValueError, match="no recorded trajectory at"):
        make_spec("replay", replay=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="the replay agent needs a recording: pass --replay TRAJECTORY"):
        make_spec("replay")
    ctx, _ = context("r")
    outcome = ReplayAgent(tmp_path / "missing.jsonl").run(ctx)
    assert outcome.exit_status == "agent_error" and "no recorded trajectory at" in outcome.error


# ---- specs: one per agent name in a run, a fresh agent per trial -----------------------------------------


def test_each_trial_gets_a_fresh_agent_built_from_its_own_task(toy_root, cache, tmp_path):
    from conftest import WRONG_PATCH

    from bench import workspace
    from bench.agents import AgentSetupError, TrialInputs
    from bench.specs import load_task

    variant = load_task("arith/mul", toy_root).variant("toy")
    framework = load_framework("toy", toy_root)
    inputs = TrialInputs(variant, framework, workspace.prepare(variant, framework, tmp_path / "ws"))
    oracle, wrong = make_spec("oracle"), make_spec("wrong")
    first, second = oracle.build(inputs), oracle.build(inputs)
    assert first is not second and isinstance(first, OracleAgent)
    assert "+    return a * b" in first.patch, "the oracle's patch is the gold of the trial's task"
    assert wrong.build(inputs).patch == WRONG_PATCH and wrong.skip_reason(variant) is None
    assert (oracle.model, wrong.model, make_spec("nop").model) == (None, None, None)

    shutil.rmtree(variant.dir / "wrong")
    variant = load_task("arith/mul", toy_root).variant("toy")
    assert wrong.skip_reason(variant) == "the task ships no wrong/*.patch"
    with pytest.raises(AgentSetupError, match="has no wrong/\\*.patch"):
        wrong.build(TrialInputs(variant, framework, inputs.workspace))


def test_validation_agents_run_as_one_plan_and_wrong_is_skipped_where_no_task_ships_one(toy_root, cache, tmp_path):
    from bench.agents import VALIDATION_AGENTS, AgentOptions, make_specs
    from bench.cli import validation_matrix
    from bench.run import RunConfig, execute, make_plan

    cfg = RunConfig(
        task="arith/mul",
        framework="toy",
        agents=list(VALIDATION_AGENTS),
        run_id="v",
        isolate=False,
        results_dir=str(tmp_path / "results"),
        specs_root=str(toy_root),
        measure_throughput=False,
    )
    rows = execute(cfg, make_plan(cfg, make_specs(cfg.agents, AgentOptions())))
    assert {r["agent"]: r["status"] for r in rows} == {"oracle": "resolved", "nop": "unresolved", "wrong": "unresolved"}
    assert all(r["model"] is None for r in rows)
    table, valid = validation_matrix(rows)
    assert valid and [c.header for c in table.columns][2:5] == [
        "oracle (must resolve)",
        "nop (must fail)",
        "wrong (must fail)",
    ]

    shutil.rmtree(toy_root / "tasks" / "arith" / "mul" / "frameworks" / "toy" / "wrong")
    plan = make_plan(cfg, make_specs(cfg.agents, AgentOptions()))
    assert [t.agent_name for t in plan.trials] == ["oracle", "nop"]
    assert plan.skipped == ["skipping wrong on arith/mul / toy: the task ships no wrong/*.patch"]


def test_the_builtin_spec_names_its_model_and_its_agent_runs_one_trial(monkeypatch, context):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-anthropic-key-not-real-5e1d")
    spec = make_spec("builtin", model="anthropic/claude-haiku-4-5", replay="ignored.jsonl")
    assert spec.model == "anthropic/claude-haiku-4-5"
    ctx, _ = context("once")
    with FakeLLMServer([Reply(tool_calls=[("submit", {})])]) as server:
        agent = BuiltinAgent(model=spec.model, base_url=server.url, retry=RetryPolicy(base_s=0.01))
        assert agent.run(ctx).exit_status == "submitted"
        assert agent.messages[0] == {"role": "user", "content": "Fix add()."}
        with pytest.raises(RuntimeError, match="runs one trial; build a fresh one"):
            agent.run(ctx)
