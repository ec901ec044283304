"""Grading: real pytest in a real sandbox, verdicts from JUnit XML, hidden tests always win."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import make_toy_root, write

from bench import grading, specs, workspace
from bench.sandbox.local import LocalSandbox, bwrap_available
from tests.test_pytest_guard import REPLACES_THE_RUNNER as RUNNER_PATCH

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_ops" name="test_mul" time="0.010"/>
<testcase classname="tests.test_ops" name="test_add" time="0.002"><failure message="boom"/></testcase>
<testcase classname="tests.test_ops.TestX" name="test_p[1-a]" time="0"><skipped message="no"/></testcase>
<testcase classname="tests.test_ops" name="test_setup" time="0"><error message="fixture"/></testcase>
</testsuite></testsuites>"""


def test_parse_junit_outcomes():
    outcomes = {t.name: t.outcome for t in grading.parse_junit(JUNIT)}
    assert outcomes == {
        "tests.test_ops::test_mul": "passed",
        "tests.test_ops::test_add": "failed",
        "tests.test_ops.TestX::test_p[1-a]": "skipped",
        "tests.test_ops::test_setup": "error",
    }


def test_pytest_ids_map_to_junit_names():
    assert grading.junit_id("tests/test_ops.py::test_mul") == "tests.test_ops::test_mul"
    assert grading.junit_id("a/b/test_c.py::TestX::test_p[1-a]") == "a.b.test_c.TestX::test_p[1-a]"


def test_verdict_f2p_p2p():
    outcomes = grading.parse_junit(JUNIT)
    judged = grading.verdict(outcomes, ["tests/test_ops.py::test_mul"], [])
    assert judged.resolved and judged.fail_to_pass == {"tests/test_ops.py::test_mul": "passed"}
    judged = grading.verdict(outcomes, ["tests/test_ops.py::test_mul"], ["tests/test_ops.py::test_add"])
    assert not judged.resolved and judged.pass_to_pass == {"tests/test_ops.py::test_add": "failed"}
    judged = grading.verdict(outcomes, ["tests/test_ops.py::test_gone"], [])
    assert not judged.resolved and judged.fail_to_pass == {"tests/test_ops.py::test_gone": "missing"}
    assert judged.error is None and grading.missing_ids(judged.fail_to_pass, judged.pass_to_pass) == [
        "tests/test_ops.py::test_gone"
    ]
    assert judged.tests_run == 4


def _setup(root: Path, tmp_path: Path):
    task = specs.load_task("arith/mul", root)
    variant, framework = task.variant("toy"), specs.load_framework("toy", root)
    work = workspace.create_workspace(variant, framework, tmp_path / "ws")
    prepared = workspace.prepared_checkout(variant, framework)
    return variant, framework, work, prepared


def _grade(variant, framework, work, prepared, tmp_path):
    diff = workspace.tree_diff(prepared, work)
    opener = lambda tree: LocalSandbox(tree, env=framework.sandbox.env, isolate=False)  # noqa: E731
    return grading.grade(variant, work, diff.files, opener, tmp_path / "grader.log", baseline=prepared)


def test_gold_resolves_and_unchanged_does_not(toy_root, cache, tmp_path):
    variant, framework, work, prepared = _setup(toy_root, tmp_path)
    before = _grade(variant, framework, work, prepared, tmp_path)
    assert not before.resolved and before.error is None
    assert before.fail_to_pass == {"tests/test_ops.py::test_mul": "failed"}
    assert before.pass_to_pass == {"tests/test_ops.py::test_add": "passed"}
    subprocess.run(
        ["git", "apply", "-"], input=workspace.gold_patch(variant, framework), text=True, cwd=work, check=True
    )
    after = _grade(variant, framework, work, prepared, tmp_path)
    assert after.resolved and after.tests_run == 2 and after.modified_test_files == []
    assert "2 passed" in (tmp_path / "grader.log").read_text()


def test_agent_copy_of_hidden_tests_is_overwritten_and_flagged(toy_root, cache, tmp_path):
    variant, framework, work, prepared = _setup(toy_root, tmp_path)
    write(work / "tests" / "test_ops.py", "def test_mul():\n    pass\n\n\ndef test_add():\n    pass\n")
    write(
        work / grading.JUNIT_FILE,
        '<testsuites><testsuite><testcase classname="tests.test_ops" name="test_mul"/></testsuite></testsuites>',
    )
    judged = _grade(variant, framework, work, prepared, tmp_path)
    assert not judged.resolved, "the agent's trivial copy of the hidden test must not count"
    assert judged.modified_test_files == ["tests/test_ops.py"]
    assert judged.fail_to_pass == {"tests/test_ops.py::test_mul": "failed"}


def test_printed_pass_without_tests_is_an_error(tmp_path, cache):
    root = make_toy_root(
        tmp_path / "specs", grading_command="echo '2 passed'; python -m pytest -q tests -k nothing_matches"
    )
    variant, framework, work, prepared = _setup(root, tmp_path)
    judged = _grade(variant, framework, work, prepared, tmp_path)
    assert not judged.resolved and "no tests were executed" in judged.error


def test_command_without_junit_is_an_error(tmp_path, cache):
    root = make_toy_root(tmp_path / "specs", grading_command="echo all tests PASSED; true")
    variant, framework, work, prepared = _setup(root, tmp_path)
    judged = _grade(variant, framework, work, prepared, tmp_path)
    assert not judged.resolved and "wrote no JUnit XML" in judged.error


def test_grading_timeout_is_labelled(tmp_path, cache):
    root = make_toy_root(tmp_path / "specs", grading_command="sleep 30; python -m pytest -q tests", grading_timeout_s=1)
    variant, framework, work, prepared = _setup(root, tmp_path)
    judged = _grade(variant, framework, work, prepared, tmp_path)
    assert not judged.resolved and judged.error.startswith("grading timed out after 1s")


@pytest.mark.parametrize(
    "path,flagged",
    [("tests/test_new.py", True), ("pkg/conftest.py", True), ("pkg/ops_test.py", True), ("calc/ops.py", False)],
)
def test_modified_test_file_patterns(path, flagged):
    assert (grading.modified_test_files([path], []) == [path]) is flagged


OWN_SUITE = (
    "from calc.ops import add, mul\n\n\ndef test_add_own():\n    assert add(2, 3) == 5\n\n\n"
    "def test_mul_own():\n    assert mul(2, 3) == 6\n"
)


def _own_suite_root(tmp_path: Path) -> Path:
    """A toy framework whose own tests grade the task: prepare drops test_mul_own, grading restores it."""
    root = make_toy_root(tmp_path / "own", task_id="arith/own")
    write(root / "toy_src" / "tests" / "test_own.py", OWN_SUITE)
    variant = root / "tasks" / "arith" / "own" / "frameworks" / "toy"
    for hidden in (variant / "tests").iterdir():
        hidden.unlink()
    (variant / "tests").rmdir()
    prepare = (variant / "prepare.py").read_text()
    write(
        variant / "prepare.py",
        prepare + "\nown = Path(sys.argv[1]) / 'tests' / 'test_own.py'\n"
        "own.write_text(own.read_text().split('\\n\\n\\ndef test_mul_own')[0] + '\\n')\n",
    )
    write(
        variant / "grading.toml",
        'command = "python -m pytest -q -p no:cacheprovider tests"\n'
        'restore_from_original = ["tests/test_own.py"]\n'
        'fail_to_pass = ["tests/test_own.py::test_mul_own"]\n'
        'pass_to_pass = ["tests/test_own.py::test_add_own"]\n',
    )
    return root


def test_framework_own_tests_restored_from_original(tmp_path, cache):
    root = _own_suite_root(tmp_path)
    variant = specs.load_task("arith/own", root).variant("toy")
    framework = specs.load_framework("toy", root)
    work = workspace.create_workspace(variant, framework, tmp_path / "ws")
    prepared = workspace.prepared_checkout(variant, framework)
    assert "test_mul_own" not in (work / "tests" / "test_own.py").read_text(), "prepare must hide the model's tests"
    original = workspace.original_source(framework)
    opener = lambda tree: LocalSandbox(tree, env=framework.sandbox.env, isolate=False)  # noqa: E731

    def judge():
        diff = workspace.tree_diff(prepared, work)
        return grading.grade(
            variant, work, diff.files, opener, tmp_path / "grader.log", baseline=prepared, original=original
        )

    before = judge()
    assert not before.resolved and before.error is None
    assert before.fail_to_pass == {"tests/test_own.py::test_mul_own": "failed"}
    # The agent weakens its copy of the framework's test: the original is restored and the edit flagged.
    write(work / "tests" / "test_own.py", "def test_mul_own():\n    pass\n\n\ndef test_add_own():\n    pass\n")
    cheated = judge()
    assert not cheated.resolved and cheated.modified_test_files == ["tests/test_own.py"]
    subprocess.run(["git", "checkout", "--", "tests/test_own.py"], cwd=work, check=True)
    subprocess.run(
        ["git", "apply", "-"], input=workspace.gold_patch(variant, framework), text=True, cwd=work, check=True
    )
    after = judge()
    assert after.resolved, after
    assert after.pass_to_pass == {"tests/test_own.py::test_add_own": "passed"}


def test_restore_of_a_missing_original_file_is_one_clear_error(tmp_path, cache):
    root = _own_suite_root(tmp_path)
    grading_toml = root / "tasks" / "arith" / "own" / "frameworks" / "toy" / "grading.toml"
    grading_toml.write_text(grading_toml.read_text().replace('tests/test_own.py"]\nfail', 'tests/test_gone.py"]\nfail'))
    variant = specs.load_task("arith/own", root).variant("toy")
    framework = specs.load_framework("toy", root)
    work = workspace.create_workspace(variant, framework, tmp_path / "ws")
    with pytest.raises(FileNotFoundError, match="restore_from_original names 'tests/test_gone.py'"):
        grading.grade(
            variant,
            work,
            [],
            lambda tree: LocalSandbox(tree, isolate=False),
            tmp_path / "g.log",
            baseline=workspace.prepared_checkout(variant, framework),
            original=workspace.original_source(framework),
        )


def test_gpu_ladder_tests_join_fail_to_pass_only_for_the_gpus_a_trial_holds(toy_root, cache, tmp_path):
    task_dir = toy_root / "tasks" / "arith" / "mul"
    (task_dir / "task.toml").write_text(
        (task_dir / "task.toml").read_text() + "\n[resources]\ngpu_ladder = [1, 2, 4]\n"
    )
    grading_toml = task_dir / "frameworks" / "toy" / "grading.toml"
    grading_toml.write_text(
        grading_toml.read_text() + 'gpu_fail_to_pass = ["tests/test_ops.py::test_mul_gpu[world{n}]"]\n'
    )
    variant, framework, work, prepared = _setup(toy_root, tmp_path)
    assert grading.gpu_ladder_ids(variant, 0) == []
    assert grading.gpu_ladder_ids(variant, 2) == [
        "tests/test_ops.py::test_mul_gpu[world1]",
        "tests/test_ops.py::test_mul_gpu[world2]",
    ]
    subprocess.run(
        ["git", "apply", "-"], input=workspace.gold_patch(variant, framework), text=True, cwd=work, check=True
    )
    diff = workspace.tree_diff(prepared, work)
    opener = lambda tree: LocalSandbox(tree, env=framework.sandbox.env, isolate=False)  # noqa: E731
    on_cpu = grading.grade(variant, work, diff.files, opener, tmp_path / "cpu.log", baseline=prepared)
    assert on_cpu.resolved and "tests/test_ops.py::test_mul_gpu[world1]" not in on_cpu.fail_to_pass
    on_gpus = grading.grade(variant, work, diff.files, opener, tmp_path / "gpu.log", baseline=prepared, gpus=2)
    assert not on_gpus.resolved, "a GPU ladder step the trial covers must be graded (here: the test is missing)"
    assert on_gpus.fail_to_pass["tests/test_ops.py::test_mul_gpu[world2]"] == "missing"
    assert grading.missing_ids(on_gpus.fail_to_pass, on_gpus.pass_to_pass) == [
        "tests/test_ops.py::test_mul_gpu[world1]",
        "tests/test_ops.py::test_mul_gpu[world2]",
    ]
    assert "tests/test_ops.py::test_mul_gpu[world4]" not in on_gpus.fail_to_pass


def test_nop_must_fail_every_cpu_fail_to_pass_but_a_gpu_ladder_rung_may_pass():
    from bench.grading import wrong_reason_to_fail

    rung = "tests/test_ladder.py::test_ladder_gpu[world1]"
    grade = {
        "fail_to_pass": {"tests/t.py::test_fix": "failed", rung: "passed"},
        "pass_to_pass": {"tests/t.py::test_old": "passed"},
        "gpu_ladder": [rung],
    }
    assert wrong_reason_to_fail(grade) is None
    assert "pass without a fix: tests/t.py::test_fix" in wrong_reason_to_fail(
        {**grade, "fail_to_pass": {**grade["fail_to_pass"], "tests/t.py::test_fix": "passed"}}
    )
    assert "pass without a fix" in wrong_reason_to_fail({**grade, "gpu_ladder": []})
    assert "fail on the prepared checkout" in wrong_reason_to_fail(
        {**grade, "pass_to_pass": {"tests/t.py::test_old": "failed"}}
    )


def test_added_python_and_shell_lines_that_reach_into_the_report_are_tampering(tmp_path):
    """getting-started's grading runs the agent's setup_env.sh inside the test process's sandbox: a shell line
    that rewrites the report counts as a Python one does; other files and unchanged lines do not."""
    baseline, tree = tmp_path / "baseline", tmp_path / "tree"
    write(baseline / "calc" / "ops.py", "REPORT = 'junit'\n")
    write(tree / "calc" / "ops.py", "REPORT = 'junit'\nimport _pytest\n")
    write(tree / "setup_env.sh", f"python3 -m venv .venv\n(sleep 5; cp forged.xml {grading.JUNIT_FILE}) &\n")
    write(tree / "notes.txt", "junit\n")
    hits = grading.find_tampering(tree, baseline)
    assert hits == ["calc/ops.py: import _pytest", f"setup_env.sh: (sleep 5; cp forged.xml {grading.JUNIT_FILE}) &"]


FORGED_REPORT = (
    '<testsuites><testsuite><testcase classname="tests.test_ops" name="test_mul"/>'
    '<testcase classname="tests.test_ops" name="test_add"/></testsuite></testsuites>'
)
# Code under test that forges the report without a word the tampering scan knows: at import it starts a detached
# process (its own session) that waits for any .xml file in the tree's root and keeps overwriting it with a report
# of passing tests, until something kills it.
LEAVES_A_FORGER = f"""import os, subprocess, sys

_CODE = '''import glob, os, time
payload = bytes.fromhex({FORGED_REPORT.encode().hex()!r})
start = time.time()
while time.time() - start < 120:
    for path in glob.glob("*.xml") + glob.glob(".*.xml"):
        try:
            if os.path.getsize(path) and open(path, "rb").read() != payload:
                open(path, "wb").write(payload)
        except OSError:
            continue
    time.sleep(0.001)
'''
if not os.environ.get("FORGER"):
    subprocess.Popen([sys.executable, "-c", _CODE], start_new_session=True, env={{**os.environ, "FORGER": "1"}},
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def add(a, b):
    return a + b


def mul(a, b):
    return a + b
"""


@pytest.mark.skipif(not bwrap_available(), reason="BUBBLEWRAP TESTS SKIPPED: bwrap is not installed")
def test_a_daemon_left_by_the_code_under_test_cannot_rewrite_the_report(toy_root, cache, tmp_path):
    """The guard kills what the tested code left running before pytest writes its report (isolated sandbox)."""
    variant, framework, work, prepared = _setup(toy_root, tmp_path)
    write(work / "calc" / "ops.py", LEAVES_A_FORGER)
    diff = workspace.tree_diff(prepared, work)
    judged = grading.grade(
        variant,
        work,
        diff.files,
        lambda tree: LocalSandbox(tree, env=framework.sandbox.env, isolate=True),
        tmp_path / "grader.log",
        baseline=prepared,
    )
    assert judged.tampering == [], "the forger must pass the text scan: the sweep is what stops it"
    assert not judged.resolved, "a forged report was taken"
    assert judged.fail_to_pass == {"tests/test_ops.py::test_mul": "failed"}


# Code under test that makes every report say passed by replacing pytest's runner, spelt so the text scan misses it.
REPLACES_THE_RUNNER = (
    textwrap.dedent(RUNNER_PATCH)
    + """

def add(a, b):
    return a + b


def mul(a, b):
    return a + b
"""
)


def test_code_under_test_that_replaces_the_runner_is_tampering_though_the_report_says_passed(toy_root, cache, tmp_path):
    """The report is forged (test_mul passes with a wrong mul); the guard's finding is what fails the trial."""
    variant, framework, work, prepared = _setup(toy_root, tmp_path)
    write(work / "calc" / "ops.py", REPLACES_THE_RUNNER)
    judged = _grade(variant, framework, work, prepared, tmp_path)
    assert judged.fail_to_pass == {"tests/test_ops.py::test_mul": "passed"}, "the attack did not forge the report"
    assert judged.tampering == ["at run time: _pytest.runner.call_and_report was replaced while the tests ran"]
    assert not judged.resolved


def test_files_added_beside_the_hidden_tests_are_removed(tmp_path, cache):
    """pytest puts the hidden tests' folder first on the path: a package the agent put there (`grader_tests/calc/`)
    was imported instead of the tree's own calc, which the hidden tests test."""
    root = make_toy_root(tmp_path / "specs", grading_command="python -m pytest -q -p no:cacheprovider grader_tests")
    toml = root / "tasks" / "arith" / "mul" / "frameworks" / "toy" / "grading.toml"
    text = toml.read_text().replace('"tests/test_ops', '"grader_tests/test_ops')
    toml.write_text('tests_target = "grader_tests"\n' + text)
    variant, framework, work, prepared = _setup(root, tmp_path)
    write(work / "grader_tests" / "calc" / "__init__.py", "")
    write(work / "grader_tests" / "calc" / "ops.py", OPS_RIGHT)
    judged = _grade(variant, framework, work, prepared, tmp_path)
    assert judged.fail_to_pass == {"grader_tests/test_ops.py::test_mul": "failed"}, "the shadow package was imported"
    assert "grader_tests/calc/ops.py: added by the agent beside the hidden tests, removed for grading" in (
        judged.test_infrastructure_changes
    )


OPS_RIGHT = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"


def test_odd_top_level_names_neither_crash_grading_nor_lose_honest_files(tmp_path):
    """A `__main__.py` raised in find_spec; a top-level `scripts/` package was taken for the runner's own folder;
    a leftover virtual environment under another name was scanned as the agent's code (numpy's settrace lines)."""
    baseline, tree = tmp_path / "baseline", tmp_path / "tree"
    write(baseline / "calc" / "ops.py", "X = 1\n")
    write(tree / "calc" / "ops.py", "X = 1\n")
    write(tree / "__main__.py", "print('run')\n")
    write(tree / "scripts" / "__init__.py", "")
    write(tree / "json.py", "")
    assert grading.remove_shadowing_modules(tree, baseline) == [
        "json.py: added by the agent, shadows the installed module 'json'; removed for grading"
    ]
    assert (tree / "__main__.py").is_file() and (tree / "scripts" / "__init__.py").is_file()
    work = tmp_path / "work"
    write(work / "calc" / "ops.py", "X = 1\n")
    write(work / "venv-old" / "pyvenv.cfg", "home = /usr/bin\n")
    write(work / "venv-old" / "lib" / "site.py", "import sys\nsys.settrace(None)\n")
    workspace.copy_clean(work, tmp_path / "copy")
    assert not (tmp_path / "copy" / "venv-old").exists()
