"""The CLI as users call it: a real `python runner.py` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from conftest import REPO, write


def runner(*args, env=None, timeout=120):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(REPO / "runner.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def test_list_shows_tasks_frameworks_agents():
    result = runner("list")
    assert result.returncode == 0, result.stderr
    for word in ("smoke", "reference", "bundled: reference_impl", "oracle", "nop", "builtin", "replay", "docker"):
        assert word in result.stdout


def test_unknown_names_give_one_error_and_exit_2(tmp_path):
    cases = {("--task", "nope"): "unknown task 'nope'; choose a task (",
             ("--framework", "megatron"): "unknown framework 'megatron'; choose one of: reference",
             ("--agent", "gpt"): "unknown agent 'gpt'; choose one of: builtin, oracle, nop, replay",
             ("frobnicate",): "unknown command 'frobnicate'; choose one of: run, validate, list"}
    for args, message in cases.items():
        result = runner(*args, "--results-dir", str(tmp_path)) if args[0] != "frobnicate" else runner(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
        assert message in result.stderr
    assert not list(tmp_path.iterdir()), "nothing may start on bad input"


def test_builtin_without_key_fails_before_anything_starts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    result = subprocess.run([sys.executable, str(REPO / "runner.py"), "--agent", "builtin", "--model",
                             "anthropic/claude-sonnet-4-5", "--results-dir", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and "ANTHROPIC_API_KEY" in result.stderr
    assert not list(tmp_path.iterdir())


def test_default_smoke_run_with_oracle(tmp_path):
    started = time.monotonic()
    result = runner("--task", "smoke", "--framework", "reference", "--agent", "oracle", "--run-id", "s1",
                    "--results-dir", str(tmp_path), env={"ATEBENCH_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 60
    assert "results" in result.stdout and "1 resolved" in result.stdout
    data = json.loads((tmp_path / "s1" / "smoke" / "reference" / "oracle" / "0" / "result.json").read_text())
    assert data["status"] == "resolved" and data["grade"]["tests_run"] == 5 and data["exit_status"] == "completed"
    again = runner("--run-id", "s1", "--results-dir", str(tmp_path))
    assert again.returncode == 2 and "already exists; pass --resume" in again.stderr


def test_validate_smoke_matrix(tmp_path):
    result = runner("validate", "--framework", "reference", "--task", "smoke", "--results-dir", str(tmp_path),
                    env={"ATEBENCH_CACHE": str(tmp_path / "cache")}, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if "smoke" in line and "reference" in line and "yes" in line)
    assert row.count("unresolved") == 2 and " resolved" in row
    assert "all tasks valid" in result.stdout


def test_framework_all_skips_what_cannot_run(toy_root, tmp_path):
    write(toy_root / "frameworks" / "bigiron" / "framework.toml",
          'name = "bigiron"\n[source]\nkind = "bundled"\npath = "toy_src"\n[sandbox]\ngpus = 8\n')
    result = runner("--specs-root", str(toy_root), "--task", "arith", "--framework", "all", "--agent", "nop",
                    "--results-dir", str(tmp_path / "r"), "--no-isolate", env={"ATEBENCH_CACHE": str(tmp_path / "c"),
                                                                               "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipping framework bigiron: needs 8 GPU(s), this machine has 0" in result.stdout
    assert "1 unresolved" in result.stdout
    named = runner("--specs-root", str(toy_root), "--task", "arith", "--framework", "bigiron", "--agent", "nop",
                   "--results-dir", str(tmp_path / "r2"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert named.returncode == 2 and "framework 'bigiron' cannot run here: needs 8 GPU(s)" in named.stderr
