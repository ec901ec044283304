"""Faults: agent crash, Ctrl-C on a real runner.py, grader timeout. Each ends labelled, loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, make_toy_root

from bench.agents import AgentSpec
from bench.run import RunConfig, execute, make_plan
from bench.trial import Trial
from bench.types import AgentContext, AgentOutcome


class CrashingAgent:
    """Edits a file, records a turn, then raises: what a buggy agent integration does."""

    name = "crashing"

    def run(self, ctx: AgentContext) -> AgentOutcome:
        ctx.sandbox.execute("echo 'partial work' > notes.txt")
        ctx.trajectory.append("assistant", turn=1, content="about to crash", tool_calls=[])
        raise RuntimeError("boom in the agent loop")


def test_agent_crash_is_an_agent_error_and_keeps_earlier_output(toy_root, cache, tmp_path):
    cfg = RunConfig(
        task="arith/mul",
        framework="toy",
        agents=["crashing"],
        run_id="crash",
        isolate=False,
        results_dir=str(tmp_path / "results"),
        specs_root=str(toy_root),
    )
    [row] = execute(cfg, make_plan(cfg, {"crashing": AgentSpec("crashing", lambda trial: CrashingAgent())}))
    assert row["status"] == "error" and row["exit_status"] == "agent_error"
    assert row["error"] == {"phase": "agent", "message": "the agent crashed: RuntimeError: boom in the agent loop"}
    folder = tmp_path / "results" / "crash" / "arith__mul" / "toy" / "crashing" / "0"
    kinds = [json.loads(line)["kind"] for line in (folder / "trajectory.jsonl").read_text().splitlines()]
    assert kinds == ["assistant", "error"]
    assert "+partial work" in (folder / "agent.diff").read_text()
    assert "RuntimeError: boom" in (folder / "agent.log").read_text()
    assert row["grade"] is None and row["finished_at"] is not None


def crashing_trial(toy_root, tmp_path, run_id: str) -> Trial:
    """One trial of the crashing agent on the toy task, not yet run."""
    cfg = RunConfig(
        task="arith/mul",
        framework="toy",
        agents=["crashing"],
        run_id=run_id,
        isolate=False,
        results_dir=str(tmp_path / "results"),
        specs_root=str(toy_root),
    )
    return Trial(make_plan(cfg, {"crashing": AgentSpec("crashing", lambda trial: CrashingAgent())}).trials[0])


def test_a_trial_the_interrupt_reaches_before_it_starts_never_starts(toy_root, cache, tmp_path):
    """With --parallel N, queued trials keep starting while the signal handler closes the running ones; each
    must see the stop and not start (recording nothing, so --resume runs it), never end as an error."""
    trial = crashing_trial(toy_root, tmp_path, "stop")
    trial.interrupt("SIGTERM")
    assert trial.interrupted
    assert trial.run() is None
    assert not trial.folder.exists() and trial.scratch is None


def test_an_error_the_interrupt_caused_is_labelled_interrupted_an_older_one_is_kept(toy_root, cache, tmp_path):
    """Ctrl-C reaches the whole foreground process group, scancel every process of a Slurm job: a command the trial
    waits on can die first, ending the trial in error a moment before the handler runs. That error is the
    signal's doing (interrupted, resumable, the error kept in the notes); an error from before it stays."""
    from bench import trial as trial_module

    raced = crashing_trial(toy_root, tmp_path, "race")
    assert raced.run().status == "error"
    raced.interrupt("SIGTERM")
    labelled = json.loads((raced.folder / "result.json").read_text())
    assert labelled["status"] == "interrupted" and labelled["error"]["message"].startswith("interrupted (SIGTERM)")
    assert labelled["notes"][-1] == (
        "ended in error as it was being interrupted, most likely by the same SIGTERM reaching its processes: "
        "agent: the agent crashed: RuntimeError: boom in the agent loop"
    )

    older = crashing_trial(toy_root, tmp_path, "older")
    assert older.run().status == "error"
    older._failed_at = time.monotonic() - trial_module.SIGNAL_RACE_S - 1
    older.interrupt("SIGINT")
    kept = json.loads((older.folder / "result.json").read_text())
    assert kept["status"] == "error" and kept["error"]["phase"] == "agent" and not kept["notes"]


def test_grader_timeout_ends_trial_as_grade_error(tmp_path, cache):
    root = make_toy_root(tmp_path / "specs", grading_command="sleep 30; python -m pytest -q tests", grading_timeout_s=1)
    cfg = RunConfig(
        task="arith/mul",
        framework="toy",
        agents=["oracle"],
        run_id="slow",
        isolate=False,
        results_dir=str(tmp_path / "results"),
        specs_root=str(root),
    )
    from bench.agents import make_spec

    [row] = execute(cfg, make_plan(cfg, {"oracle": make_spec("oracle")}))
    assert row["status"] == "error" and row["error"]["phase"] == "grade"
    assert row["error"]["message"].startswith("grading timed out after 1s")
    assert row["exit_status"] == "completed", "the agent phase finished; only grading failed"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_marks_running_trial_interrupted_and_resume_completes(tmp_path, signum):
    """Ctrl-C, SIGTERM (a scheduler's stop) and SIGHUP (a closed terminal) end the same way: running
    trials labelled interrupted, their workspaces removed, a resume command that works as printed."""
    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / "slow").touch()
    slow_second_grading = (
        f"if [ -f {flags}/first-done ] && [ -f {flags}/slow ]; then sleep 60; fi; "
        f"touch {flags}/first-done; python -m pytest -q -p no:cacheprovider tests"
    )
    root = make_toy_root(tmp_path / "specs", grading_command=slow_second_grading)
    results_dir = tmp_path / "results"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "ATEBENCH_CACHE": str(tmp_path / "cache"), "TMPDIR": str(scratch)}
    command = [
        sys.executable,
        str(REPO / "runner.py"),
        "--specs-root",
        str(root),
        "--task",
        "arith/mul",
        "--framework",
        "toy",
        "--agent",
        "oracle,nop",
        "--run-id",
        "r",
        "--results-dir",
        str(results_dir),
        "--no-isolate",
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = results_dir / "r" / "arith__mul" / "toy"
    deadline = time.monotonic() + 60
    while not ((run_dir / "nop" / "0" / "agent.diff").exists() and (flags / "first-done").exists()):
        assert time.monotonic() < deadline and proc.poll() is None, (
            proc.stdout.read() if proc.poll() is not None else "timeout"
        )
        time.sleep(0.2)
    time.sleep(1.0)
    assert list(scratch.glob("atebench-trial-*")), "the interrupted trial has a workspace to remove"
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, output
    assert f"interrupted ({signum.name})" in output
    resume = output.split("Resume with: ")[1].splitlines()[0]
    assert resume == f"python runner.py --run-id r --resume --results-dir {results_dir}"
    assert not list(scratch.glob("atebench-trial-*")), "an interrupted trial's workspace must not stay behind"
    oracle = json.loads((run_dir / "oracle" / "0" / "result.json").read_text())
    nop = json.loads((run_dir / "nop" / "0" / "result.json").read_text())
    assert oracle["status"] == "resolved"
    assert nop["status"] == "interrupted" and nop["exit_status"] == "interrupted" and nop["error"]["phase"] == "grade"

    (flags / "slow").unlink()
    resumed = subprocess.run(
        [sys.executable, str(REPO / "runner.py"), *resume.split()[2:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 already finished, 1 to run" in resumed.stdout
    assert json.loads((run_dir / "oracle" / "0" / "result.json").read_text()) == oracle
    assert json.loads((run_dir / "nop" / "0" / "result.json").read_text())["status"] == "unresolved"
    assert "1 resolved, 1 unresolved" in resumed.stdout
    assert Path(run_dir / "nop" / "0" / "grader.log").is_file()
    earlier = run_dir / "nop" / "0.interrupted-1"
    assert json.loads((earlier / "result.json.interrupted").read_text()) == nop, "the interrupted attempt is kept"
    assert (earlier / "agent.diff").is_file()
