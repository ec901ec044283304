"""Grading: hidden tests run on a copy of the agent's final tree, verdict from JUnit XML.

Why JUnit XML and not printed text: an agent can print "PASSED"; it cannot forge the XML the test
runner writes after the hidden tests (copied in last, over any agent copies) have run. Zero tests run
is an error, never a pass.

The threat: an agent that cannot solve the task changes what the tests see instead. So the graded copy
gets back, from the checkout the agent started from, every file that configures the test run (conftest
files, pytest/tox/setup.cfg/pyproject settings, sitecustomize, .pth files, package metadata that pytest
loads plugins from); modules the agent added that would shadow an installed one are removed; pytest
runs with plugin autoloading off and no PYTEST_ADDOPTS; every such change is recorded on the grade.
Code under test still runs inside the test process and could patch pytest or the comparisons in memory: added
lines that reach into the test runner are flagged as tampering, and the guard plugin (bench/pytest_guard.py) checks
at run time what the tests compare with and what reports them; either finding leaves the trial unresolved
(docs/harness.md says what remains).
"""

from __future__ import annotations

import fnmatch
import importlib.machinery
import importlib.util
import io
import os
import re
import shutil
import sys
import tempfile
import tokenize
import unicodedata
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import sources
from bench.keys import redact
from bench.specs import TaskVariant, fingerprint, load_framework
from bench.types import Sandbox
from bench.workspace import copy_clean, place_file, place_tree

JUNIT_FILE = ".atebench-junit.xml"
TEST_FILE_PATTERNS = ("test_*.py", "*_test.py", "conftest.py", "tests/*", "*/tests/*")
# Files that configure how pytest or Python start, by name or suffix; restored to the starting checkout.
TEST_INFRA_NAMES = (
    "conftest.py",
    "pytest.ini",
    ".pytest.ini",
    "tox.ini",
    "setup.cfg",
    "pyproject.toml",
    "pytest.toml",  # pytest 9 reads these before any other configuration file
    ".pytest.toml",
)
TEST_INFRA_SUFFIXES = (".pth", ".dist-info", ".egg-info", ".egg-link")
STARTUP_MODULES = (
    "sitecustomize",
    "usercustomize",
)  # as a .py, a package or a compiled module: Python runs them at start
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")  # code no scan can read: an added one is removed, a changed one restored
# Added lines in non-test files that reach into the test runner or its report.
# Also lines that ask whether they run under pytest (to behave differently there), trace hooks, which can jump over
# an assert, and tensor subclass hooks, through which a result can compare equal to anything (no task asks for one);
# the guard plugin catches at run time what a line spelt differently still does to the comparisons.
TAMPERING = re.compile(
    r"\b_pytest\b|\bpytest_(?:runtest|collect|configure|sessionfinish|report|make|"
    r"terminal|load_initial|plugin|addoption|cmdline|unconfigure)\w*|junit|"
    r"\bPYTEST_[A-Z_]+|\bsys\.(?:modules|argv)\b.*\bpytest\b|\bpytest\b.*\bsys\.(?:modules|argv)\b|"
    r"\bsettrace\b|\.f_lineno\s*=(?!=)|\b__torch_(?:function|dispatch)__\b|" + re.escape(JUNIT_FILE)
)
# The harness's pytest plugin (bench/pytest_guard.py), put into the graded tree under a fresh name: it checks that the
# code under test left what the tests compare with and the test runner alone, kills what that code left running
# before the report is written (with SWEEP_VAR set: only in an isolated sandbox, whose /proc holds nothing else),
# and ends the process once the report is written. What it finds it prints as "<its name>: tampering: <what>".
GUARD = Path(__file__).with_name("pytest_guard.py")
SWEEP_VAR = "ATEBENCH_GUARD_SWEEP"
GUARD_MODULES_VAR = "ATEBENCH_GUARD_MODULES"  # the restored framework modules whose names the guard watches too
# The environment of the grading command: no plugin the agent could have registered, no extra options.
GRADING_PRELUDE = "export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1; unset PYTEST_ADDOPTS PYTEST_PLUGINS PYTHONSTARTUP; "


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
    test_infrastructure_changes: list[str] = field(default_factory=list)  # what grading undid, and how
    tampering: list[str] = field(default_factory=list)  # "path: line" the agent added that reaches into pytest
    facts: dict[str, str] = field(default_factory=dict)  # tasks graded by answer: fact id -> "found" or why not
    answer_problems: list[str] = field(default_factory=list)  # what fails a whole answer (bench/answers.py)
    not_graded: list[str] = field(default_factory=list)  # restore_from_original files this source lacks (sdist)
    gpu_ladder: list[str] = field(default_factory=list)  # the GPU ladder ids graded (in fail_to_pass): must pass
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
        outcome = (
            "error"
            if "error" in tags
            else "failed"
            if "failure" in tags
            else "skipped"
            if "skipped" in tags
            else "passed"
        )
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


def missing_ids(fail_to_pass: dict[str, str], pass_to_pass: dict[str, str]) -> list[str]:
    """Graded ids that never ran. On an agent's tree that is its failure (a model it did not register is
    not parametrized, a module it broke does not collect); on the gold tree it is a spec error, which
    `validate` reports by name."""
    return [test for test, v in (*fail_to_pass.items(), *pass_to_pass.items()) if v == "missing"]


def collection_errors(tests: list[dict]) -> list[str]:
    """Modules pytest could not collect, from a grade's `tests` (JUnit writes a collection error as an erroring
    testcase with no class: `::tests.unit_tests.test_x`). On the gold tree that is the environment (an import it
    lacks) or a broken hidden module, not a misspelt id."""
    return [t["name"].removeprefix("::") for t in tests if t["name"].startswith("::") and t["outcome"] == "error"]


def wrong_reason_to_fail(grade: dict) -> str | None:
    """Why an untouched checkout (the nop agent) failed for the wrong reason, or None. It must fail every
    fail-to-pass test (else one passes without a fix) and pass every pass-to-pass test (else the prepare
    step broke the checkout, or a P2P id really needs the fix and belongs in fail_to_pass).
    GPU ladder steps are exempt from the first rule: they must pass on the gold, but a rung need not see the
    bug (one GPU cannot show a gradient that is wrong only across ranks); the CPU ids carry the detection."""
    ladder = set(grade.get("gpu_ladder") or [])
    passing = sorted(t for t, v in grade.get("fail_to_pass", {}).items() if v == "passed" and t not in ladder)
    if passing:
        return f"fail-to-pass test(s) pass without a fix: {', '.join(passing[:3])}"
    broken = sorted(t for t, v in grade.get("pass_to_pass", {}).items() if v != "passed")
    if broken:
        return f"pass-to-pass test(s) fail on the prepared checkout: {', '.join(broken[:3])}"
    return None


def modified_test_files(changed: list[str], hidden: list[str]) -> list[str]:
    """Changed paths that are test files: the hidden tests' paths or anything named like a test."""
    hidden_set = set(hidden)
    return sorted(p for p in changed if p in hidden_set or _is_test_file(p))


ABSENT_TEST_MODULE = """import pytest

pytest.skip({reason!r}, allow_module_level=True)
"""


def restore_original_tests(variant: TaskVariant, original: Path | None, tree: Path) -> list[str]:
    """Copy the framework's own test files named in grading.toml from the original source over `tree`.

    Returns those the original lacks although the pinned git tree has them (its manifest lists them): the
    offline sdist copy (bench/sources.py) ships no tests/. A module-level skip saying so stands in each one's
    place, and grade() leaves their ids out; any other absent file is a spec error."""
    paths = variant.grading.restore_from_original
    if paths and original is None:
        raise ValueError("grading.toml restore_from_original needs the original framework source")
    absent = []
    for rel in paths:
        source = original / rel
        if not source.is_file() and rel in _absent_git_files(variant, original):
            reason = f"{rel}: this {variant.framework} source (sdist route) lacks the git tree's tests; not graded"
            with tempfile.TemporaryDirectory(prefix="atebench-absent-") as scratch:
                stand_in = Path(scratch) / "stand_in.py"
                stand_in.write_text(ABSENT_TEST_MODULE.format(reason=reason))
                place_file(stand_in, tree, rel)  # never through a link the agent left on the way
            absent.append(rel)
        elif not source.is_file():
            raise FileNotFoundError(
                f"{variant.dir.name}/grading.toml: restore_from_original names {rel!r}, which the "
                f"framework's original checkout does not have; fix the path"
            )
        else:
            place_file(source, tree, rel)
    return absent


def _absent_git_files(variant: TaskVariant, original: Path) -> list[str]:
    """Files of the framework's pinned git tree (source manifest) that `original` lacks."""
    if variant.framework_dir is None:
        return []
    framework = load_framework(variant.framework, variant.framework_dir.parents[1])
    return sources.missing_from(framework, original)


def _is_test_infra(rel: str) -> bool:
    parts = rel.split("/")
    return (
        parts[-1] in TEST_INFRA_NAMES
        or parts[-1].endswith(TEST_INFRA_SUFFIXES)
        or any(part.endswith(TEST_INFRA_SUFFIXES) for part in parts[:-1])
        or any(part.split(".")[0] in STARTUP_MODULES for part in parts)
        or parts[-1].endswith(COMPILED_SUFFIXES)
        or ".so." in parts[-1]
    )


def _is_test_file(rel: str) -> bool:
    return any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel.rsplit("/", 1)[-1], pat) for pat in TEST_FILE_PATTERNS)


def _same_file(ours: Path, theirs: Path) -> bool:
    """Same bytes; sizes first, so a huge (or sparse) file the agent left is never read."""
    if ours.is_symlink() or theirs.is_symlink():
        return ours.is_symlink() and theirs.is_symlink() and os.readlink(ours) == os.readlink(theirs)
    return ours.stat().st_size == theirs.stat().st_size and ours.read_bytes() == theirs.read_bytes()


def restore_test_infrastructure(tree: Path, baseline: Path) -> list[str]:
    """Put every test-configuration file and every test file of `tree` back as it is in `baseline`; returns what
    was undone. Test files too: the hidden tests and the framework's own (restore_from_original) decide, and a test
    module the agent added would otherwise be collected and run its code inside the test process."""
    undone = []
    paths = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file() or p.is_symlink()}
    paths |= {p.relative_to(baseline).as_posix() for p in baseline.rglob("*") if p.is_file() or p.is_symlink()}
    for rel in sorted(r for r in paths if _is_test_infra(r) or _is_test_file(r)):
        ours, theirs = tree / rel, baseline / rel
        if not (theirs.is_file() or theirs.is_symlink()):
            ours.unlink()
            undone.append(f"{rel}: added by the agent, removed for grading")
        elif not (ours.is_file() or ours.is_symlink()):
            place_file(theirs, tree, rel)
            undone.append(f"{rel}: deleted by the agent, restored for grading")
        elif not _same_file(ours, theirs):
            place_file(theirs, tree, rel)
            undone.append(f"{rel}: changed by the agent, restored for grading")
    return undone


def remove_shadowing_modules(tree: Path, baseline: Path) -> list[str]:
    """Delete top-level modules the agent added that would shadow the standard library or an installed
    package (e.g. a `pytest.py` at the root, imported instead of pytest when the root is on the path)."""
    removed = []
    for entry in sorted(tree.iterdir()):
        name = (
            entry.name.split(".")[0]
            if entry.is_file() and entry.suffix in (".py", ".so", ".pyc")
            else entry.name
            if entry.is_dir() and (entry / "__init__.py").exists()
            else None
        )
        # a top-level name only: find_spec of a dotted name imports its parent, here on the host (a folder named
        # `this.x` would print the Zen of Python); a name that is no identifier is no module anyway, and a dunder
        # name (`__main__`) is Python's own
        if not name or not name.isidentifier() or name.startswith("__") or (baseline / entry.name).exists():
            continue
        if name in sys.stdlib_module_names or _installed(name):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(
                f"{entry.name}: added by the agent, shadows the installed module {name!r}; removed for grading"
            )
    return removed


def _installed(name: str) -> bool:
    """Whether `name` is an installed top-level module, looked up on the Python path without the runner's own
    folder (its `scripts/` or `docs/` are no installed packages) and without importing anything."""
    here = {"", os.getcwd(), str(Path(__file__).resolve().parents[1])}
    try:
        return importlib.machinery.PathFinder.find_spec(name, [p for p in sys.path if p not in here]) is not None
    except (ImportError, ValueError):
        return False


def remove_added_beside_hidden_tests(variant: TaskVariant, tree: Path, baseline: Path) -> list[str]:
    """Files the agent put in the folder the hidden tests go to (`tests_target`): pytest puts that folder first on
    the path, so an added `grader_tests/reftrain/` would be imported instead of the framework the grading restored."""
    target = tree / variant.grading.tests_target
    removed = []
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        target.unlink()
        return [f"{variant.grading.tests_target}: added by the agent, removed for grading"]
    for path in sorted(p for p in target.rglob("*") if p.is_file() or p.is_symlink()) if target.is_dir() else []:
        rel = path.relative_to(tree).as_posix()
        if not (baseline / rel).is_file():
            path.unlink()
            removed.append(f"{rel}: added by the agent beside the hidden tests, removed for grading")
    return removed


# The graded copy of an agent's tree: a file over the first, or past the second in all, is left out (and listed), so
# sparse files the agent made cannot fill the runner's disk when copied out in full.
MAX_GRADED_FILE_BYTES = 2 * 2**30
MAX_GRADED_BYTES = 16 * 2**30
TAMPERING_SUFFIXES = (".py", ".sh")  # code the grading runs: the framework's modules, a task's setup_env.sh
MAX_SCANNED_BYTES = 4 * 2**20  # a larger Python or shell file is not read: it counts as tampering, unread


def find_tampering(tree: Path, baseline: Path) -> list[str]:
    """Lines the agent added to non-test Python or shell files that reach into the test runner or its report.

    Every such file of the graded tree is read, not only those the diff names (an agent's `.gitignore` once kept
    a file out of it), and a link inside the tree is read as the file it names (a link `hook.py -> hook.txt` is
    Python to the importer). A link that leaves the tree names nothing the agent wrote and is not read."""
    hits = []
    root = tree.resolve()
    for path in sorted(p for p in tree.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(tree).as_posix()
        if not rel.endswith(TAMPERING_SUFFIXES) or _is_test_file(rel):
            continue
        target = path.resolve() if path.is_symlink() else path
        if not target.is_relative_to(root) or not target.is_file():
            continue
        old = baseline / rel
        if not path.is_symlink() and (old.is_file() and not old.is_symlink()) and _same_file(path, old):
            continue
        size = target.stat().st_size
        if size > MAX_SCANNED_BYTES:
            hits.append(f"{rel}: {size} bytes, too large to read (limit {MAX_SCANNED_BYTES}); not taken as clean")
            continue
        text, encoding = _source_text(target)
        if encoding not in READABLE_ENCODINGS:
            hits.append(f"{rel}: declares the source encoding {encoding!r}; only UTF-8 and Latin-1 sources are read")
            continue
        before = set(_source_text(old)[0].splitlines()) if old.is_file() else set()
        for line in text.splitlines():
            if line not in before and TAMPERING.search(line):
                hits.append(f"{rel}: {line.strip()[:200]}")
    return hits


READABLE_ENCODINGS = ("utf-8", "utf-8-sig", "ascii", "latin-1", "iso-8859-1", "iso-latin-1")


def _source_text(path: Path) -> tuple[str, str]:
    """(text, encoding) of a source file as Python reads it: in the encoding its coding cookie declares (a
    `# coding: utf-7` file hides `_pytest` from a UTF-8 reading), with identifiers NFKC-normalised as Python
    normalises them (a fullwidth letter in `import _ｐytest` is the same name)."""
    data = path.read_bytes()
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        encoding = "utf-8"
    text = data.decode(encoding if encoding in READABLE_ENCODINGS else "utf-8", errors="replace")
    return unicodedata.normalize("NFKC", text), encoding


def restored_modules(variant: TaskVariant) -> list[str]:
    """The framework's own testing helpers that grading restores from the original source (a `testing.py` module,
    as reftrain.testing, whose distances and tolerances the tests call), as dotted names: the code under test must
    not replace their functions either. Only these: the hidden tests' own CPU shims replace functions of other
    restored modules on purpose, and the guard cannot tell who replaced a name."""
    return sorted(
        rel.removesuffix(".py").replace("/", ".")
        for rel in variant.grading.restore_from_original
        if rel.endswith("/testing.py") and all(p.isidentifier() for p in rel[:-3].split("/"))
    )


def guard_not_passed(output: str, guard: str) -> dict[str, str]:
    """The tests the guard saw fail, error or skip while the run went (JUnit name -> outcome): a report that says
    one of them passed was changed after pytest wrote it (by a thread of the test process, say)."""
    marker = f"{guard}: not passed: "
    found = {}
    for line in output.splitlines():
        if marker in line:
            outcome, _, nodeid = line.split(marker, 1)[1].strip().partition(" ")
            found.setdefault(junit_id(nodeid), outcome)
    return found


def guard_findings(output: str, guard: str) -> list[str]:
    """What the guard plugin (bench/pytest_guard.py, loaded as `guard`) saw the code under test change while the tests
    ran, from the grading command's output: each once, as "at run time: <what>"."""
    marker = f"{guard}: tampering: "
    found = [line.split(marker, 1)[1].strip() for line in output.splitlines() if marker in line]
    return [f"at run time: {what}" for what in dict.fromkeys(found)]


def place_hidden_tests(variant: TaskVariant, tree: Path) -> None:
    """The hidden tests at grading.toml's tests_target, and the shared helpers (`support`) beside them."""
    if variant.tests_dir.is_dir():
        place_tree(variant.tests_dir, tree, variant.grading.tests_target)
    for rel, source in variant.support_files().items():
        place_file(source, tree, rel)


def gpu_ladder_ids(variant: TaskVariant, gpus: int) -> list[str]:
    """grading.toml's gpu_fail_to_pass, expanded over the task's GPU ladder steps that `gpus` GPUs cover."""
    steps = [n for n in variant.task.spec.resources.gpu_ladder if n <= gpus]
    return [test.format(n=n) for n in steps for test in variant.grading.gpu_fail_to_pass]


def grade(
    variant: TaskVariant,
    final_tree: Path,
    changed: list[str],
    open_sandbox: Callable[[Path], Sandbox],
    log_path: Path,
    baseline: Path,
    original: Path | None = None,
    gpus: int = 0,
) -> Grade:
    """Copy final_tree, undo test-infrastructure changes, put the hidden tests in, run the grading command in
    a fresh sandbox, judge.

    `baseline` is the checkout the agent started from; `original` is the unprepared framework source, needed
    when grading.toml restores its own tests; `gpus` is how many GPUs the grading sandbox holds (their
    GPU-ladder tests join FAIL_TO_PASS)."""
    modified = modified_test_files(changed, variant.graded_test_paths())
    timeout = variant.task.spec.grading.timeout_s
    if fingerprint(variant.tests_dir) != variant.tests_fingerprint:
        return Grade(
            resolved=False,
            modified_test_files=modified,
            error=f"the hidden tests in {variant.tests_dir} changed on disk after the run started; "
            "grading refuses them (see docs/harness.md, threat model)",
        )
    with tempfile.TemporaryDirectory(prefix="atebench-grade-") as scratch:
        tree = Path(scratch) / "tree"
        left_out = copy_clean(final_tree, tree, max_file_bytes=MAX_GRADED_FILE_BYTES, max_total_bytes=MAX_GRADED_BYTES)
        junit = tree / JUNIT_FILE
        if junit.is_dir() and not junit.is_symlink():
            shutil.rmtree(junit)
        elif junit.exists() or junit.is_symlink():
            junit.unlink()
        undone = restore_test_infrastructure(tree, baseline) + remove_shadowing_modules(tree, baseline)
        undone += remove_added_beside_hidden_tests(variant, tree, baseline)
        undone += [
            f"{rel}: left out of the graded copy (not a regular file, over a size limit, or too deep)"
            for rel in left_out
        ]
        tampering = find_tampering(tree, baseline)
        place_hidden_tests(variant, tree)
        absent = restore_original_tests(variant, original, tree)
        guard = f"_atebench_guard_{uuid.uuid4().hex[:12]}"
        shutil.copyfile(GUARD, tree / f"{guard}.py")
        sandbox = open_sandbox(tree)
        try:
            command = f"{variant.grading.command} -p {guard} --junitxml={sandbox.workdir}/{JUNIT_FILE}"
            guard_path = f'export PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{sandbox.workdir}"; '
            # the sweep needs a sandbox whose /proc is its own: not the trusted --no-isolate local one
            sweep = f"export {SWEEP_VAR}=1; " if getattr(sandbox, "isolated", True) else ""
            sweep += f"export {GUARD_MODULES_VAR}={','.join(restored_modules(variant))}; "
            result = sandbox.execute(GRADING_PRELUDE + sweep + guard_path + command, timeout=timeout)
        finally:
            sandbox.close()  # kills whatever the code under test left running before the report is read
        log_path.write_text(
            redact(
                f"$ {command}\n[exit {result.exit_code}, {result.duration_s:.1f}s"
                f"{', timed out' if result.timed_out else ''}]\n{result.output}"
            )
        )
        tampering += guard_findings(result.output, guard)
        base = Grade(
            resolved=False, modified_test_files=modified, test_infrastructure_changes=undone, tampering=tampering
        )
        if result.timed_out:
            base.error = f"grading timed out after {timeout:g}s (task.toml grading.timeout_s); see grader.log"
            return base
        if not junit.is_file() or junit.is_symlink():
            base.error = (
                f"the grading command wrote no JUnit XML (exit {result.exit_code}); it must run pytest "
                "and accept --junitxml; see grader.log"
            )
            return base
        try:
            outcomes = parse_junit(junit.read_text())
        except ET.ParseError as e:
            base.error = f"unreadable JUnit XML: {e}"
            return base
        ran = guard_not_passed(result.output, guard)
        tampering += [
            f"at run time: the report says {t.name} passed; the run had it {ran[t.name]}"
            for t in outcomes
            if t.outcome == "passed" and t.name in ran
        ]
    if not outcomes:
        base.error = (
            f"no tests were executed (exit {result.exit_code}); a run without tests is not a pass; see grader.log"
        )
        return base

    def graded(ids: list[str]) -> list[str]:
        return [test for test in ids if test.split("::")[0] not in absent]

    ladder = graded(gpu_ladder_ids(variant, gpus))
    judged = verdict(outcomes, graded([*variant.grading.fail_to_pass, *ladder]), graded(variant.grading.pass_to_pass))
    judged.not_graded, judged.gpu_ladder = absent, ladder
    judged.modified_test_files, judged.test_infrastructure_changes, judged.tampering = modified, undone, tampering
    if tampering:
        judged.resolved = False
    return judged
