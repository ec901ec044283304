"""The trust properties one at a time (docs/harness.md, "Threat model"); test_attacks.py tries them all at once.

No silent downgrade to plain bash, caches and hidden tests verified by content before use, test
configuration undone before grading, shadowing modules removed, every secret-named host variable
redacted, workspace files that cannot be diffed left out without losing the trial, and unsafe spec paths
refused.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO, write

from bench import grading, keys, run, specs, workspace
from bench.agents import AgentSpec, make_spec
from bench.run import RunConfig, RunError, execute, make_plan
from bench.sandbox.local import LocalSandbox


def _load(root):
    task = specs.load_task("arith/mul", root)
    return task.variant("toy"), specs.load_framework("toy", root)


def test_missing_bubblewrap_is_one_clear_error_never_plain_bash(toy_root, tmp_path, monkeypatch):
    monkeypatch.setattr(run, "bwrap_available", lambda: False)
    cfg = RunConfig(
        task="arith/mul",
        framework="toy",
        agents=["nop"],
        run_id="x",
        specs_root=str(toy_root),
        results_dir=str(tmp_path / "r"),
    )
    with pytest.raises(RunError, match="bubblewrap.*apt-get install bubblewrap.*--sandbox docker.*--no-isolate"):
        make_plan(cfg, {"nop": make_spec("nop")})
    assert not (tmp_path / "r").exists()


def test_no_isolate_warns_on_every_run(toy_root, tmp_path):
    env = {**os.environ, "ATEBENCH_CACHE": str(tmp_path / "c")}
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "runner.py"),
            "--specs-root",
            str(toy_root),
            "--task",
            "arith/mul",
            "--framework",
            "toy",
            "--agent",
            "nop",
            "--no-isolate",
            "--results-dir",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING: --no-isolate" in result.stdout and "trusted agents only" in result.stdout


def test_a_changed_cache_entry_is_rebuilt_not_used(toy_root, cache, tmp_path):
    variant, framework = _load(toy_root)
    prepared = workspace.prepared_checkout(variant, framework)
    (prepared / "calc" / "ops.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
    )
    with pytest.warns(UserWarning, match="was changed after it was built"):
        again = workspace.prepared_checkout(variant, framework)
    assert "raise NotImplementedError" in (again / "calc" / "ops.py").read_text(), "a poisoned cache must not be used"
    original = workspace.original_source(framework)
    (original / "calc" / "ops.py").write_text("poisoned\n")
    with pytest.warns(UserWarning, match="was changed after it was built"):
        assert "return a * b" in (workspace.original_source(framework) / "calc" / "ops.py").read_text()


def _grade(variant, framework, work, tmp_path):
    prepared = workspace.prepared_checkout(variant, framework)
    diff = workspace.tree_diff(prepared, work)
    opener = lambda tree: LocalSandbox(tree, env=framework.sandbox.env)  # noqa: E731
    return grading.grade(variant, work, diff.files, opener, tmp_path / "grader.log", baseline=prepared)


def test_hidden_tests_changed_during_a_run_are_refused(toy_root, cache, tmp_path):
    variant, framework = _load(toy_root)
    work = workspace.create_workspace(variant, framework, tmp_path / "ws")
    (variant.tests_dir / "test_ops.py").write_text("def test_mul():\n    pass\n\n\ndef test_add():\n    pass\n")
    judged = _grade(variant, framework, work, tmp_path)
    assert not judged.resolved and "changed on disk after the run started" in judged.error


def test_changed_test_configuration_is_restored_and_recorded(toy_root, cache, tmp_path):
    write(toy_root / "toy_src" / "setup.cfg", "[metadata]\nname = toy\n")
    variant, framework = _load(toy_root)
    work = workspace.create_workspace(variant, framework, tmp_path / "ws")
    write(work / "setup.cfg", "[metadata]\nname = toy\n[tool:pytest]\naddopts = -k test_add\n")  # mul deselected
    write(work / "json.py", "raise SystemExit('shadowed the standard library')\n")
    write(work / "calc" / "helper.py", "VALUE = 1\n")  # an ordinary new module stays
    judged = _grade(variant, framework, work, tmp_path)
    assert not judged.resolved and judged.error is None
    assert judged.fail_to_pass == {"tests/test_ops.py::test_mul": "failed"}, "the agent's addopts must not apply"
    assert judged.test_infrastructure_changes == [
        "setup.cfg: changed by the agent, restored for grading",
        "json.py: added by the agent, shadows the installed module 'json'; removed for grading",
    ]
    assert (work / "setup.cfg").read_text().endswith("-k test_add\n"), "the agent's own tree is not touched"


def test_every_secret_named_host_variable_is_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-canary-1234567890")
    monkeypatch.setenv("DB_PASSWORD", "pw-canary-0987654321")
    monkeypatch.setenv("HARMLESS", "not-a-secret-value")
    folder = tmp_path / "trial"
    write(folder / "agent.diff", "+token = 'tok-canary-1234567890'\n")
    write(folder / "sub" / "grader.log", "password pw-canary-0987654321 and not-a-secret-value\n")
    (folder / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    assert sorted(keys.redact_files(folder)) == ["agent.diff", "grader.log"]
    assert "tok-canary" not in (folder / "agent.diff").read_text()
    assert (folder / "sub" / "grader.log").read_text() == "password [REDACTED] and not-a-secret-value\n"


def test_a_fifo_and_a_huge_file_in_the_workspace_do_not_stop_the_trial(toy_root, cache, tmp_path, monkeypatch):
    monkeypatch.setattr(workspace, "MAX_DIFF_FILE_BYTES", 1000)

    class Hoarder:
        name = "hoarder"

        def run(self, ctx):
            from bench.types import AgentOutcome

            ctx.sandbox.execute("mkfifo pipe; head -c 5000 /dev/zero > big.bin; echo small > small.txt")
            return AgentOutcome(exit_status="completed")

    cfg = RunConfig(
        task="arith/mul",
        framework="toy",
        agents=["hoarder"],
        run_id="h",
        specs_root=str(toy_root),
        results_dir=str(tmp_path / "r"),
        measure_throughput=False,
    )
    [row] = execute(cfg, make_plan(cfg, {"hoarder": AgentSpec("hoarder", lambda trial: Hoarder())}))
    assert row["status"] == "unresolved" and row["error"] is None
    diff = (tmp_path / "r" / "h" / "arith__mul" / "toy" / "hoarder" / "0" / "agent.diff").read_text()
    assert "small.txt" in diff and "big.bin" not in diff
    assert any("big.bin" in note and "pipe" in note for note in row["notes"])


@pytest.mark.parametrize(
    "field, value",
    [
        ("tests_target", "../outside"),
        ("restore_from_original", ["/etc/passwd"]),
        ("fail_to_pass", ["../../x.py::test_a"]),
    ],
)
def test_spec_paths_that_leave_the_checkout_are_refused(toy_root, field, value):
    grading_toml = toy_root / "tasks" / "arith" / "mul" / "frameworks" / "toy" / "grading.toml"
    lines = [line for line in grading_toml.read_text().splitlines() if not line.startswith(field)]
    rendered = f'"{value}"' if isinstance(value, str) else "[" + ", ".join(f'"{v}"' for v in value) + "]"
    grading_toml.write_text("\n".join([f"{field} = {rendered}", *lines]) + "\n")
    with pytest.raises(specs.SpecError, match=f"grading.toml.*{field}.*(contains '..'|absolute)"):
        specs.load_task("arith/mul", toy_root).variant("toy")


def test_a_missing_bundled_source_is_reported_before_any_trial(toy_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ATEBENCH_SRC_TOY", str(tmp_path / "nowhere"))
    cfg = RunConfig(
        task="arith/mul",
        framework="toy",
        agents=["nop"],
        run_id="x",
        specs_root=str(toy_root),
        results_dir=str(tmp_path / "r"),
    )
    with pytest.raises(RunError, match="bundled source folder .*nowhere does not exist"):
        make_plan(cfg, {"nop": make_spec("nop")})


def test_validate_names_graded_ids_that_never_ran_on_the_gold():
    from bench.cli import validation_matrix

    def row(agent, status, f2p):
        return {
            "task": "arith/mul",
            "framework": "toy",
            "agent": agent,
            "status": status,
            "error": None,
            "grade": {"fail_to_pass": f2p, "pass_to_pass": {}},
        }

    table, valid = validation_matrix(
        [
            row("oracle", "resolved", {"tests/test_ops.py::test_mul": "passed"}),
            row("nop", "unresolved", {"tests/test_ops.py::test_mul": "failed"}),
        ]
    )
    assert valid and not table.caption
    table, valid = validation_matrix(
        [
            row(
                "oracle",
                "unresolved",
                {"tests/test_ops.py::test_mul": "passed", "tests/test_ops.py::test_mul[typo]": "missing"},
            ),
            row("nop", "unresolved", {"tests/test_ops.py::test_mul": "failed"}),
        ]
    )
    assert not valid and "never ran on the gold" in table.caption and "test_mul[typo]" in table.caption
