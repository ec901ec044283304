"""The CLI as users call it: a real `python runner.py` process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import REPO, write


def runner(*args, env=None, timeout=120):
    env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "runner.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def test_list_shows_tasks_frameworks_agents():
    result = runner("list")
    assert result.returncode == 0, result.stderr
    for word in ("smoke", "reference", "bundled: reference_impl", "oracle", "nop", "builtin", "replay", "docker"):
        assert word in result.stdout


def test_unknown_names_give_one_error_and_exit_2(tmp_path):
    cases = {
        ("--task", "nope"): "unknown task 'nope'; choose a task (",
        ("--framework", "deepspeed"): "unknown framework 'deepspeed'; choose one of: megatron, reference, torchtitan",
        ("--agent", "gpt"): "unknown agent 'gpt'; choose one of: builtin, oracle, nop, replay",
        ("frobnicate",): "unknown command 'frobnicate'; choose one of: run, validate, list",
    }
    for args, message in cases.items():
        result = runner(*args, "--results-dir", str(tmp_path)) if args[0] != "frobnicate" else runner(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
        assert message in result.stderr
    assert not list(tmp_path.iterdir()), "nothing may start on bad input"


def test_builtin_without_key_fails_before_anything_starts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "runner.py"),
            "--agent",
            "builtin",
            "--model",
            "anthropic/claude-sonnet-4-5",
            "--results-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2 and "ANTHROPIC_API_KEY" in result.stderr
    assert not list(tmp_path.iterdir())


def test_default_smoke_run_with_oracle(tmp_path):
    started = time.monotonic()
    result = runner(
        "--task",
        "smoke",
        "--framework",
        "reference",
        "--agent",
        "oracle",
        "--run-id",
        "s1",
        "--results-dir",
        str(tmp_path),
        env={"ATEBENCH_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 60
    assert "results" in result.stdout and "1 resolved" in result.stdout
    assert "frameworks included: reference" in result.stdout
    for phase in ("setup", "agent", "grade"):
        assert f"[1/1] smoke / reference / oracle #0: {phase} (at " in result.stdout, phase
    assert "[1/1] smoke / reference / oracle #0: resolved after " in result.stdout
    header = next(line for line in result.stdout.splitlines() if "framework" in line and "status" in line)
    assert "agent s" in header and "trial s" in header, "time columns say whose time they measure"
    assert f"next: python runner.py report s1 --results-dir {tmp_path}" in result.stdout
    data = json.loads((tmp_path / "s1" / "smoke" / "reference" / "oracle" / "0" / "result.json").read_text())
    assert data["status"] == "resolved" and data["grade"]["tests_run"] == 5 and data["exit_status"] == "completed"
    again = runner("--run-id", "s1", "--results-dir", str(tmp_path))
    assert again.returncode == 2 and "already exists; pass --resume" in again.stderr


def test_validate_smoke_matrix(tmp_path):
    result = runner(
        "validate",
        "--framework",
        "reference",
        "--task",
        "smoke",
        "--results-dir",
        str(tmp_path),
        env={"ATEBENCH_CACHE": str(tmp_path / "cache")},
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if "smoke" in line and "reference" in line and "yes" in line)
    assert row.count("unresolved") == 2 and " resolved" in row
    assert "all tasks valid" in result.stdout


def _nop_on_every_framework_without_gpus(toy_root, tmp_path):
    """`--task arith --framework all --agent nop` on a host that shows no GPU."""
    return runner(
        "--specs-root",
        str(toy_root),
        "--task",
        "arith",
        "--framework",
        "all",
        "--agent",
        "nop",
        "--results-dir",
        str(tmp_path / "r"),
        "--no-isolate",
        env={"ATEBENCH_CACHE": str(tmp_path / "c"), "CUDA_VISIBLE_DEVICES": ""},
    )


def test_framework_all_skips_what_cannot_run(toy_root, tmp_path):
    write(
        toy_root / "frameworks" / "bigiron" / "framework.toml",
        'name = "bigiron"\n[source]\nkind = "bundled"\npath = "toy_src"\n[sandbox]\ngpus = 8\n',
    )
    result = _nop_on_every_framework_without_gpus(toy_root, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "frameworks included: toy" in result.stdout
    assert "skipping framework bigiron: needs 8 GPU(s), this machine has 0" in result.stdout
    assert result.stdout.index("skipping framework bigiron") < result.stdout.index("[1/1]"), "said before trials start"
    assert "1 unresolved" in result.stdout
    named = runner(
        "--specs-root",
        str(toy_root),
        "--task",
        "arith",
        "--framework",
        "bigiron",
        "--agent",
        "nop",
        "--results-dir",
        str(tmp_path / "r2"),
        env={"CUDA_VISIBLE_DEVICES": ""},
    )
    assert named.returncode == 2 and "framework 'bigiron' cannot run here: needs 8 GPU(s)" in named.stderr


def test_framework_all_names_each_gpu_only_task_it_skips(toy_root, tmp_path):
    """A framework whose every selected task needs GPUs the host lacks: one line per task, not one for the
    framework, so a user sees which tasks did not run (Megatron's build tasks on a CPU host)."""
    write(
        toy_root / "frameworks" / "bigiron" / "framework.toml",
        'name = "bigiron"\n[source]\nkind = "bundled"\npath = "toy_src"\n[sandbox]\ngpus = 8\n',
    )
    variants = toy_root / "tasks" / "arith" / "mul" / "frameworks"
    shutil.copytree(variants / "toy", variants / "bigiron")
    result = _nop_on_every_framework_without_gpus(toy_root, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipping arith/mul on bigiron: needs 8 GPU(s), this machine has 0" in result.stdout
    assert "skipping framework bigiron" not in result.stdout
    assert "1 unresolved" in result.stdout, "the toy framework's trial still ran"


def test_help_lists_commands_and_run_options():
    result = runner("--help")
    assert result.returncode == 0, result.stderr
    for command in ("run", "validate", "list", "report", "compare", "profile"):
        assert f"\n  {command} " in result.stdout, command
    for option in (
        "--task",
        "--framework",
        "--agent",
        "--model",
        "--trials",
        "--parallel",
        "--sandbox",
        "--run-id",
        "--resume",
        "--extend",
        "--results-dir",
    ):
        assert f"  {option} " in result.stdout, option
    assert "usage: python runner.py [COMMAND] [OPTIONS]" in result.stdout
    assert "cmd_x" not in result.stdout and "COMMANDS" not in result.stdout, "help is for users, not developers"


def test_run_ids_that_are_paths_are_rejected_before_anything_starts(tmp_path):
    results_dir = tmp_path / "results"
    for command, run_id in [([], "../escape"), ([], str(tmp_path / "abs")), (["validate"], "..")]:
        result = runner(*command, "--run-id", run_id, "--results-dir", str(results_dir))
        assert result.returncode == 2, (run_id, result.stdout, result.stderr)
        assert result.stderr.startswith(f"error: run id {run_id!r} is not a plain folder name"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not results_dir.exists(), "nothing may start on bad input"


def test_malformed_run_file_on_resume_is_one_error(tmp_path):
    write(tmp_path / "broken" / "run.json", '{"args": {"task": "smo')
    result = runner("--run-id", "broken", "--resume", "--results-dir", str(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'broken' / 'run.json'}: not valid JSON (")
    assert line.endswith("restore it or start a new --run-id")


@pytest.mark.parametrize("command, what", [([], "the run folder to continue"), (["validate"], "the validate run")])
def test_resume_without_a_run_or_of_an_unknown_one_is_one_error(tmp_path, command, what):
    for extra, message in (
        ([], f"error: --resume needs --run-id ({what}"),
        (["--run-id", "nosuch"], f"error: no run 'nosuch' in {tmp_path}; check the id (ls {tmp_path})"),
    ):
        result = runner(*command, "--resume", "--results-dir", str(tmp_path), *extra)
        assert result.returncode == 2, result.stdout + result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(message), line
    assert not any(tmp_path.iterdir()), "nothing may start on bad input"


def test_report_tells_a_profile_from_a_run(tmp_path):
    write(tmp_path / "profiles" / "p1" / "profile.json", '{"profiles": []}')
    result = runner("report", str(tmp_path / "profiles" / "p1"))
    assert result.returncode == 2
    assert "is a profile (written by `runner.py profile`), not a run" in result.stderr


def test_resume_refuses_a_changed_plan_unless_extended(toy_root, tmp_path):
    results_dir = tmp_path / "results"
    env = {"ATEBENCH_CACHE": str(tmp_path / "cache")}
    base = [
        "--specs-root",
        str(toy_root),
        "--framework",
        "toy",
        "--no-isolate",
        "--results-dir",
        str(results_dir),
        "--run-id",
        "r",
    ]
    first = runner("--task", "arith/mul", "--agent", "nop", *base, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    run_file = results_dir / "r" / "run.json"
    recorded = run_file.read_bytes()

    for extra, shown in [(["--trials", "2"], "trials 1 -> 2"), (["--agent", "oracle"], "agents ['nop'] -> ['oracle']")]:
        refused = runner(*base, "--resume", *extra, env=env)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        [line] = refused.stderr.strip().splitlines()
        assert f"change run 'r''s plan ({shown})" in line and "add --extend" in line, line
        assert f"`python runner.py --run-id r --resume --results-dir {results_dir}` alone continues it" in line
        assert run_file.read_bytes() == recorded, "a refused resume changes nothing"
    model = runner(*base, "--resume", "--extend", "--model", "openai/gpt-5", env=env)
    assert (
        model.returncode == 2
        and "cannot change how run 'r' runs its trials (model None -> 'openai/gpt-5')" in model.stderr
    )

    extended = runner(*base, "--resume", "--extend", "--trials", "2", env=env)
    assert extended.returncode == 0, extended.stdout + extended.stderr
    assert "2 trial(s), 1 already finished, 1 to run" in extended.stdout
    run = json.loads(run_file.read_text())
    assert run["trials"] == ["arith__mul/toy/nop/0", "arith__mul/toy/nop/1"]
    assert run["args"]["trials"] == 2 and [a["trials"] for a in run["previous_args"]] == [1]

    again = runner(*base, "--resume", env=env)
    assert again.returncode == 0 and "2 trial(s), 2 already finished, 0 to run" in again.stdout, again.stderr
    assert json.loads(run_file.read_text())["previous_args"] == run["previous_args"], (
        "a plain resume changes no argument"
    )
    faster = runner(*base, "--resume", "--parallel", "2", env=env)
    assert faster.returncode == 0 and "0 to run" in faster.stdout, "--parallel may change on resume"


def test_run_and_validate_declare_their_shared_options_once():
    import argparse

    from bench import cli

    shared = argparse.ArgumentParser()
    cli.add_trial_options(shared, task_default="all")
    names = {a.dest for a in shared._actions} - {"help"}
    assert names == {
        "task",
        "framework",
        "parallel",
        "sandbox",
        "isolate",
        "run_id",
        "results_dir",
        "specs_root",
        "gpus",
        "executor",
        "slurm_partition",
        "slurm_account",
        "slurm_qos",
        "slurm_args",
    }
    assert names <= {a.dest for a in cli.run_parser()._actions}
    assert cli.cmd_validate(["--parallel", "0"]) == 2 and cli.cmd_run(["--gpus", "-1"]) == 2


def test_validate_share_gpus_is_checked(capsys):
    from bench import cli

    assert cli.cmd_validate(["--share-gpus", "0"]) == 2
    assert "--share-gpus must be 1 or more" in capsys.readouterr().err
    assert cli.cmd_validate(["--share-gpus", "2", "--executor", "slurm", "--task", "smoke"]) == 2
    assert "--share-gpus" in capsys.readouterr().err


def test_a_task_needing_more_gpus_is_skipped_alone_with_one_line(toy_root, tmp_path):
    """A framework whose build tasks need GPUs still runs its other tasks on a CPU host (Megatron's Q&A)."""
    import shutil

    shutil.copytree(toy_root / "tasks" / "arith" / "mul", toy_root / "tasks" / "arith" / "gpumul")
    toml = toy_root / "tasks" / "arith" / "gpumul" / "task.toml"
    toml.write_text(toml.read_text() + "[resources]\ngpus = 2\n")
    result = _nop_on_every_framework_without_gpus(toy_root, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("skipping arith/gpumul on toy: needs 2 GPU(s), this machine has 0") == 1
    assert "skipping framework toy" not in result.stdout and "1 unresolved" in result.stdout


def test_validation_matrix_caption_shows_pytest_ids_with_their_params():
    from rich.console import Console

    from bench import cli

    def row(agent, status, f2p):
        grade = {"fail_to_pass": f2p, "pass_to_pass": {}, "gpu_ladder": []}
        return {"task": "t", "framework": "f", "agent": agent, "status": status, "error": None, "grade": grade}

    rows = [
        row("oracle", "unresolved", {"tests/a.py::test_x[overrides0-unknown section [trainig]]": "missing"}),
        row("nop", "unresolved", {"tests/a.py::test_x[overrides0-unknown section [trainig]]": "failed"}),
    ]
    table, valid = cli.validation_matrix(rows)
    console = Console(width=400, record=True)
    console.print(table)
    assert not valid
    assert "tests/a.py::test_x[overrides0-unknown section [trainig]]" in console.export_text()


def test_validation_matrix_names_the_restored_tests_an_offline_source_lacks():
    # the sdist route has no tests/: a task restoring TorchTitan's own tests is graded without them, and the
    # matrix says so instead of passing it silently
    from rich.console import Console

    from bench import cli

    def row(agent, status, f2p, not_graded):
        grade = {"fail_to_pass": f2p, "pass_to_pass": {}, "gpu_ladder": [], "not_graded": not_graded}
        return {"task": "t", "framework": "f", "agent": agent, "status": status, "error": None, "grade": grade}

    absent = ["tests/unit_tests/test_parallel_dims.py"]
    rows = [
        row("oracle", "resolved", {"grader_tests/a.py::test_x": "passed"}, absent),
        row("nop", "unresolved", {"grader_tests/a.py::test_x": "failed"}, absent),
    ]
    table, valid = cli.validation_matrix(rows)
    console = Console(width=400, record=True)
    console.print(table)
    assert valid
    assert "t on f: not graded here (the source lacks them): tests/unit_tests/test_parallel_dims.py" in (
        console.export_text()
    )
    rows[0]["grade"]["not_graded"] = rows[1]["grade"]["not_graded"] = []
    table, _ = cli.validation_matrix(rows)
    console = Console(width=400, record=True)
    console.print(table)
    assert "not graded here" not in console.export_text()


def test_validation_matrix_blames_a_collection_error_not_grading_toml(tmp_path):
    # a hidden module that cannot import (the environment lacks a package) leaves every graded id missing on the
    # gold; the matrix names the module and the grader.log, not a misspelt id. The JUnit file is pytest's own.
    import subprocess
    import sys

    from rich.console import Console

    from bench import cli, grading

    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("import a_module_nobody_installed\n\ndef test_x():\n    pass\n")
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_a.py", "--junitxml=j.xml"],
        cwd=tmp_path,
        capture_output=True,
    )
    tests = [t.__dict__ for t in grading.parse_junit((tmp_path / "j.xml").read_text())]
    assert grading.collection_errors(tests) == ["tests.test_a"]

    def row(agent, status, outcome):
        grade = {"fail_to_pass": {"tests/test_a.py::test_x": outcome}, "pass_to_pass": {}, "gpu_ladder": []}
        return {"task": "t", "framework": "f", "agent": agent, "status": status, "error": None, "grade": grade}

    rows = [row("oracle", "unresolved", "missing"), row("nop", "unresolved", "missing")]
    rows[0]["grade"]["tests"] = tests
    table, valid = cli.validation_matrix(rows)
    console = Console(width=400, record=True)
    console.print(table)
    text = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert not valid
    assert "t on f: the hidden tests did not collect on the gold solution (tests.test_a)" in text
    assert "fix grading.toml): tests/test_a.py" not in text
    del rows[0]["grade"]["tests"]  # no collection error: a missing id is the spec's fault
    table, _ = cli.validation_matrix(rows)
    console = Console(width=400, record=True)
    console.print(table)
    assert "never ran on the gold solution (fix grading.toml): tests/test_a.py::test_x" in " ".join(
        console.export_text().split()
    )
