"""`runner.py --executor slurm` against a real Slurm (`.ci/setup-slurm.sh` starts a one-node one).

Every trial here is a real Slurm job: submitted through submitit, run by slurmd, cancelled with scancel,
killed at its time limit by slurmctld. Nothing is mocked; without a reachable controller the module
skips, saying why.
"""

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

from bench import cli
from bench.slurm import slurm_unavailable_reason

UNAVAILABLE = slurm_unavailable_reason()
pytestmark = pytest.mark.skipif(
    UNAVAILABLE is not None, reason=f"no Slurm here ({UNAVAILABLE}); `bash .ci/setup-slurm.sh` starts one as root"
)


def runner(*args, env=None, timeout=240):
    return subprocess.run(
        [sys.executable, str(REPO / "runner.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


def start_runner(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "runner.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


def result(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_jobs(run_id: str) -> list[str]:
    """The run's jobs Slurm still lists (any state), by the job name the executor gives them."""
    out = subprocess.run(
        ["squeue", "--noheader", "--array", "--name", f"atebench-{run_id}", "--format", "%i %T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split("\n") if out.strip() else []


@pytest.fixture
def gated_root(tmp_path) -> tuple[Path, Path]:
    """Toy tasks arith/quick and arith/gated; gated's grading waits while the flag file exists, so a
    test can hold its job running (to cancel it, to run into a time limit) and then let a re-run pass."""
    flag = tmp_path / "hold"
    flag.write_text("grading of arith/gated waits while this file exists\n")
    root = make_toy_root(tmp_path / "specs", task_id="arith/quick")
    make_toy_root(
        root,
        grading_command=f"while [ -e {flag} ]; do sleep 1; done; python -m pytest -q -p no:cacheprovider tests",
        grading_timeout_s=600,
        task_id="arith/gated",
    )
    for task in ("quick", "gated"):  # one CPU each, so both run at once on a two-core node
        with open(root / "tasks" / "arith" / task / "task.toml", "a") as f:
            f.write("[resources]\ncpus = 1\nmemory_gb = 1\n")
    return root, flag


@pytest.fixture(autouse=True)
def no_job_left():
    """A failed test must not leave its jobs running into the next one (or into the suite's tmp check)."""
    yield
    names = ",".join(f"atebench-{run_id}" for run_id in ("s", "l", "c", "t", "i", "p"))
    subprocess.run(["scancel", "--name", names], capture_output=True)


@pytest.mark.slow
def test_smoke_trials_as_slurm_jobs_equal_a_local_run(tmp_path):
    """One trial here, then the run continued on the cluster (--resume --extend): two more trials as
    one job array, each result like the local one."""
    env = {"ATEBENCH_CACHE": str(tmp_path / "cache")}
    common = ("--task", "smoke", "--framework", "reference", "--agent", "oracle", "--results-dir", str(tmp_path))
    local = runner(*common, "--run-id", "s", env=env)
    assert local.returncode == 0, local.stdout + local.stderr
    here = result(tmp_path / "s" / "smoke" / "reference" / "oracle" / "0")
    on_slurm = runner(*common, "--run-id", "s", "--resume", "--extend", "--trials", "3", "--executor", "slurm", env=env)
    assert on_slurm.returncode == 0, on_slurm.stdout + on_slurm.stderr
    assert "run s: 3 trial(s), 1 already finished, 2 to run" in on_slurm.stdout
    assert "slurm: probe job " in on_slurm.stdout and "slurm: 2 job(s) submitted: " in on_slurm.stdout
    for i in (1, 2):
        assert f"[{i}/2] smoke / reference / oracle #{i}: resolved after " in on_slurm.stdout
    assert "3 resolved" in on_slurm.stdout
    assert result(tmp_path / "s" / "smoke" / "reference" / "oracle" / "0") == here, "the local trial is kept as it was"
    jobs = json.loads((tmp_path / "s" / "slurm" / "jobs.json").read_text())
    assert sorted(jobs) == ["smoke/reference/oracle/1", "smoke/reference/oracle/2"]
    assert len({j.split("_")[0] for j in jobs.values()}) == 1, "trials of one resource shape are one job array"
    for i in (1, 2):
        there = result(tmp_path / "s" / "smoke" / "reference" / "oracle" / str(i))
        assert there["trial"] == i and there["run_id"] == "s"
        for key in ("status", "exit_status", "error", "files", "task", "framework", "agent", "schema_version"):
            assert there[key] == here[key], key
        assert sorted(there["metrics"]) == sorted(here["metrics"])
        assert sorted(there["grade"]) == sorted(here["grade"]) and there["grade"]["tests_run"] == 5
        assert sorted(there["phase_seconds"]) == sorted(here["phase_seconds"])


@pytest.mark.slow
def test_scancelled_job_is_labelled_and_resume_reruns_only_it(gated_root, tmp_path):
    root, flag = gated_root
    args = ("--specs-root", str(root), "--framework", "toy", "--agent", "oracle", "--no-isolate")
    results_dir = tmp_path / "r"
    env = {"ATEBENCH_CACHE": str(tmp_path / "cache")}
    proc = start_runner(
        *args, "--task", "arith", "--executor", "slurm", "--run-id", "c", "--results-dir", str(results_dir), env=env
    )
    gated = results_dir / "c" / "arith__gated" / "toy" / "oracle" / "0"
    quick = results_dir / "c" / "arith__quick" / "toy" / "oracle" / "0"
    try:
        wait_for(lambda: (gated / "trajectory.jsonl").exists(), 90, "the gated trial's job to reach its agent")
        wait_for(lambda: (quick / "result.json").exists() and result(quick)["status"] == "resolved", 90, "quick")
        job = json.loads((results_dir / "c" / "slurm" / "jobs.json").read_text())["arith__gated/toy/oracle/0"]
        time.sleep(2)  # into the grading wait
        subprocess.run(["scancel", job], check=True)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out
    labelled = result(gated)
    assert labelled["status"] == "error" and labelled["error"]["kind"] == "infra_error", labelled
    assert labelled["error"]["slurm"] == {
        "job_id": job,
        "state": "CANCELLED",
        "reason": labelled["error"]["slurm"]["reason"],
    }
    assert labelled["error"]["message"].startswith(f"infra_error: Slurm job {job} ended CANCELLED")
    assert labelled["error"]["phase"] in ("agent", "grade")
    assert "1 resolved, 1 error" in out
    quick_before = result(quick)

    flag.unlink()  # the re-run's grading goes straight on
    again = runner("--run-id", "c", "--resume", "--results-dir", str(results_dir), env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "run c: 2 trial(s), 1 already finished, 1 to run" in again.stdout
    assert "slurm: 1 job(s) submitted" in again.stdout, "the resume runs on Slurm, as the run was made"
    assert result(gated)["status"] == "resolved"
    assert result(quick) == quick_before, "a finished trial is never run again"
    aside = gated.with_name("0.error-1")
    assert json.loads((aside / "result.json.error").read_text())["error"]["kind"] == "infra_error"


@pytest.mark.slow
def test_job_over_its_time_limit_is_labelled_with_slurms_reason(gated_root, tmp_path):
    root, flag = gated_root
    started = time.monotonic()
    done = runner(
        "--specs-root", str(root), "--framework", "toy", "--agent", "oracle", "--no-isolate",
        "--task", "arith/gated", "--executor", "slurm", "--slurm-arg", "time=1",
        "--run-id", "t", "--results-dir", str(tmp_path / "r"),
        env={"ATEBENCH_CACHE": str(tmp_path / "cache")},
        timeout=200,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    labelled = result(tmp_path / "r" / "t" / "arith__gated" / "toy" / "oracle" / "0")
    assert labelled["status"] == "error" and labelled["error"]["kind"] == "infra_error", labelled
    assert labelled["error"]["slurm"]["state"] == "TIMEOUT" and labelled["error"]["slurm"]["reason"] == "TimeLimit"
    assert "ended TIMEOUT (TimeLimit)" in labelled["error"]["message"]
    assert 60 <= time.monotonic() - started < 180


def test_sigint_cancels_every_job_of_the_run(gated_root, tmp_path):
    root, _flag = gated_root
    results_dir = tmp_path / "r"
    proc = start_runner(
        "--specs-root", str(root), "--framework", "toy", "--agent", "oracle", "--no-isolate",
        "--task", "arith/gated", "--trials", "3", "--executor", "slurm", "--run-id", "i",
        "--results-dir", str(results_dir),
        env={"ATEBENCH_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    try:
        trial = results_dir / "i" / "arith__gated" / "toy" / "oracle" / "0"
        wait_for(lambda: (trial / "trajectory.jsonl").exists(), 90, "the first job to run its trial")
        assert run_jobs("i"), "the run's jobs are in squeue while it runs"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "cancelled 3 Slurm job(s) of the run" in out, out
    assert f"Resume with: python runner.py --run-id i --resume --results-dir {results_dir}" in out
    wait_for(lambda: not run_jobs("i"), 30, "squeue to hold no job of the run")
    trials = (results_dir / "i" / "arith__gated" / "toy" / "oracle").iterdir()
    statuses = {result(t)["status"] if (t / "result.json").exists() else "not started" for t in trials}
    assert "interrupted" in statuses and statuses <= {"interrupted", "not started"}, statuses  # all resumable


def test_a_refused_submission_is_one_error_and_leaves_no_run(tmp_path, capsys):
    argv = ["--task", "smoke", "--agent", "oracle", "--executor", "slurm", "--slurm-partition", "no-such-partition"]
    assert cli.cmd_run([*argv, "--run-id", "p", "--results-dir", str(tmp_path)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: sbatch refused the probe job") and "no-such-partition" in line.lower(), line
    assert not (tmp_path / "p").exists(), "a failed probe leaves no run behind"


def test_slurm_options_need_the_slurm_executor(tmp_path, capsys):
    argv = ["--task", "smoke", "--results-dir", str(tmp_path)]
    assert cli.cmd_run([*argv, "--slurm-qos", "high", "--slurm-arg", "constraint=h100"]) == 2
    assert capsys.readouterr().err.strip() == "error: --slurm-qos, --slurm-arg: add --executor slurm, or drop them"
    assert cli.cmd_run([*argv, "--executor", "slurm", "--slurm-arg", "constraint"]) == 2
    assert "--slurm-arg 'constraint' is not KEY=VALUE" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_docker_sandbox_trials_run_inside_slurm_jobs(docker_client, tmp_path):
    """Where the engine runs: each job opens its trial's sandbox as a container of the local engine (the
    containers are counted from the engine's own create events during the run)."""
    since = time.time()
    run = runner(
        "--task", "smoke", "--framework", "reference", "--agent", "oracle,nop", "--sandbox", "docker",
        "--executor", "slurm", "--no-throughput", "--results-dir", str(tmp_path), "--run-id", "d",
        env={"ATEBENCH_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "slurm: 2 job(s) submitted: " in run.stdout and "1 resolved, 1 unresolved" in run.stdout
    assert result(tmp_path / "d" / "smoke" / "reference" / "oracle" / "0")["status"] == "resolved"
    assert result(tmp_path / "d" / "smoke" / "reference" / "nop" / "0")["status"] == "unresolved"
    created = [
        e["Actor"]["Attributes"].get("name", "")
        for e in docker_client.events(since=int(since), until=int(time.time()) + 1, decode=True,
                                      filters={"type": "container", "event": "create"})
    ]  # fmt: skip
    assert len([n for n in created if n.startswith("atebench-")]) >= 2, created
    assert not [c.name for c in docker_client.containers.list(all=True) if c.name in created], (
        "a container outlived its trial"
    )
