"""Grading: hidden tests run on a copy of the agent's final tree, verdict from JUnit XML.

Why JUnit XML and not printed text: an agent can print "PASSED"; it cannot forge the XML the test
runner writes after the hidden tests (copied in last, over any agent copies) have run. Zero tests run
is an error, never a pass.
"""

from __future__ import annotations

import fnmatch
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.specs import TaskVariant
from bench.types import Sandbox
from bench.workspace import copy_clean

JUNIT_FILE = ".atebench-junit.xml"
TEST_FILE_PATTERNS = ("test_*.py", "*_test.py", "conftest.py", "tests/*", "*/tests/*")


@dataclass
class TestOutcome:
    name: str  # "<classname>::<name>" as in the JUnit file, e.g. "tests.test_x.TestA::test_b[1]"
    outcome: str  # passed | failed | error | skipped
    duration_s: float = 0.0


@dataclass
class Grade:
    resolved: bool
    tests_run: int = 0
    tests: list[TestOutcome] = field(default_factory=list)
    fail_to_pass: dict[str, str] = field(default_factory=dict)
    pass_to_pass: dict[str, str] = field(default_factory=dict)
    modified_test_files: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def junit_id(pytest_id: str) -> str:
    """`tests/test_x.py::TestA::test_b[1]` -> `tests.test_x.TestA::test_b[1]` (the JUnit spelling)."""
    parts = pytest_id.split("::")
    module = parts[0].removesuffix(".py").replace("/", ".")
    return ".".join([module, *parts[1:-1]]) + "::" + parts[-1] if len(parts) > 1 else module


def parse_junit(xml_text: str) -> list[TestOutcome]:
    root = ET.fromstring(xml_text)
    outcomes = []
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        outcome = ("error" if "error" in tags else "failed" if "failure" in tags
                   else "skipped" if "skipped" in tags else "passed")
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcomes.append(TestOutcome(name=name, outcome=outcome, duration_s=float(case.get("time") or 0.0)))
    return outcomes


def verdict(outcomes: list[TestOutcome], fail_to_pass: list[str], pass_to_pass: list[str]) -> Grade:
    by_name: dict[str, str] = {}
    for test in outcomes:
        previous = by_name.get(test.name)
        by_name[test.name] = test.outcome if previous in (None, "passed") else previous
    f2p = {test: by_name.get(junit_id(test), "missing") for test in fail_to_pass}
    p2p = {test: by_name.get(junit_id(test), "missing") for test in pass_to_pass}
    resolved = all(v == "passed" for v in (*f2p.values(), *p2p.values()))
    return Grade(resolved=resolved, tests_run=len(outcomes), tests=outcomes, fail_to_pass=f2p, pass_to_pass=p2p)


def modified_test_files(changed: list[str], hidden: list[str]) -> list[str]:
    """Changed paths that are test files: the hidden tests' paths or anything named like a test."""
    hidden_set = set(hidden)
    return sorted(p for p in changed if p in hidden_set
                  or any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(Path(p).name, pat) for pat in TEST_FILE_PATTERNS))


def restore_original_tests(variant: TaskVariant, original: Path | None, tree: Path) -> None:
    """Copy the framework's own test files named in grading.toml from the original source over `tree`."""
    paths = variant.grading.restore_from_original
    if paths and original is None:
        raise ValueError("grading.toml restore_from_original needs the original framework source")
    for rel in paths:
        source = original / rel
        if not source.is_file():
            raise FileNotFoundError(f"{variant.dir.name}/grading.toml: restore_from_original names {rel!r}, which the "
                                    f"framework's original checkout does not have; fix the path")
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, tree / rel)


def gpu_ladder_ids(variant: TaskVariant, gpus: int) -> list[str]:
    """grading.toml's gpu_fail_to_pass, expanded over the task's GPU ladder steps that `gpus` GPUs cover."""
    steps = [n for n in variant.task.spec.resources.gpu_ladder if n <= gpus]
    return [test.format(n=n) for n in steps for test in variant.grading.gpu_fail_to_pass]


def grade(variant: TaskVariant, final_tree: Path, changed: list[str], open_sandbox: Callable[[Path], Sandbox],
          log_path: Path, original: Path | None = None, gpus: int = 0) -> Grade:
    """Copy final_tree, put the hidden tests in, run the grading command in a fresh sandbox, judge.

    `original` is the unprepared framework source, needed when grading.toml restores its own tests;
    `gpus` is how many GPUs the grading sandbox holds (their GPU-ladder tests join FAIL_TO_PASS)."""
    modified = modified_test_files(changed, variant.graded_test_paths())
    timeout = variant.task.spec.grading.timeout_s
    with tempfile.TemporaryDirectory(prefix="atebench-grade-") as scratch:
        tree = Path(scratch) / "tree"
        copy_clean(final_tree, tree)
        (tree / JUNIT_FILE).unlink(missing_ok=True)
        if variant.tests_dir.is_dir():
            shutil.copytree(variant.tests_dir, tree / variant.grading.tests_target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        restore_original_tests(variant, original, tree)
        sandbox = open_sandbox(tree)
        try:
            command = f"{variant.grading.command} --junitxml={sandbox.workdir}/{JUNIT_FILE}"
            result = sandbox.execute(command, timeout=timeout)
        finally:
            sandbox.close()
        log_path.write_text(f"$ {command}\n[exit {result.exit_code}, {result.duration_s:.1f}s"
                            f"{', timed out' if result.timed_out else ''}]\n{result.output}")
        if result.timed_out:
            return Grade(resolved=False, modified_test_files=modified,
                         error=f"grading timed out after {timeout:g}s (task.toml grading.timeout_s); see grader.log")
        junit = tree / JUNIT_FILE
        if not junit.is_file():
            return Grade(resolved=False, modified_test_files=modified,
                         error=f"the grading command wrote no JUnit XML (exit {result.exit_code}); it must run pytest "
                               "and accept --junitxml; see grader.log")
        try:
            outcomes = parse_junit(junit.read_text())
        except ET.ParseError as e:
            return Grade(resolved=False, modified_test_files=modified, error=f"unreadable JUnit XML: {e}")
    if not outcomes:
        return Grade(resolved=False, modified_test_files=modified,
                     error=f"no tests were executed (exit {result.exit_code}); a run without tests is not a pass; "
                           "see grader.log")
    judged = verdict(outcomes, [*variant.grading.fail_to_pass, *gpu_ladder_ids(variant, gpus)],
                     variant.grading.pass_to_pass)
    judged.modified_test_files = modified
    return judged
