"""The grading guard (bench/pytest_guard.py) against code under test that makes a wrong result pass from inside the
test process, spelt so the text scan (grading.TAMPERING) does not see it. Each attack is first run without the guard,
where it must turn a failing test into a passing one (else the attack proves nothing), then with it, where the guard
must name it in the output (grading reads that into `tampering`: tests/test_grading.py runs one through grade())."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench import grading

# Each attack: the code under test (calc.py, imported by the test at collection) and the test it defeats.
ATTACKS = {
    "assert_close-replaced": (
        """
        import torch

        torch.testing.assert_close = lambda *args, **kwargs: None


        def double(x):
            return x
        """,
        """
        import torch
        from calc import double


        def test_double():
            x = torch.ones(3)
            torch.testing.assert_close(double(x), 2 * x)
        """,
    ),
    "runner-replaced": (
        """
        import importlib

        _runner = importlib.import_module("_py" + "test.runner")
        _real = _runner.call_and_report


        def _passing(item, when, log=True, **kwargs):
            report = _real(item, when, log=False, **kwargs)
            report.outcome, report.longrepr = "passed", None
            if log:
                getattr(item.ihook, "pytest_" + "runtest_logreport")(report=report)
            return report


        _runner.call_and_report = _passing


        def double(x):
            return x
        """,
        """
        from calc import double


        def test_double():
            assert double(2) == 4
        """,
    ),
    "plugin-registered": (
        """
        import gc

        import pytest


        class _Passing:
            pass


        def _wrapper(item, call):
            report = yield
            report.outcome, report.longrepr = "passed", None
            return report


        setattr(_Passing, "pytest_" + "runtest_makereport", pytest.hookimpl(wrapper=True)(_wrapper))
        _config = next(o for o in gc.get_objects() if type(o).__name__ == "Config" and hasattr(o, "pluginmanager"))
        _config.pluginmanager.register(_Passing())


        def double(x):
            return x
        """,
        """
        from calc import double


        def test_double():
            assert double(2) == 4
        """,
    ),
    "trace-jumps-over-asserts": (
        """
        import linecache
        import sys


        def _skip(frame, event, arg):
            if not frame.f_code.co_name.startswith("test_"):
                return None
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
            if event == "line" and line.strip().startswith("assert"):
                setattr(frame, "f_lineno", frame.f_lineno + 1)
            return _skip


        getattr(sys, "set" + "trace")(_skip)


        def double(x):
            return x
        """,
        """
        from calc import double


        def test_double():
            assert double(2) == 4
            return
        """,
    ),
}


def _run(folder: Path, guard: str | None) -> tuple[str, str]:
    """(the test's outcome in the JUnit report, the output) of pytest in `folder`, with the guard loaded or not."""
    junit = folder / "report.xml"
    junit.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "test_calc.py"]
    if guard:
        command[3:3] = ["-p", guard]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(folder), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120, env=env)
    case = ET.parse(junit).getroot().find(".//testcase")
    tags = {child.tag for child in case}
    outcome = "error" if "error" in tags else "failed" if "failure" in tags else "passed"
    return outcome, proc.stdout + proc.stderr


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_guard_catches_code_under_test_that_forces_a_pass(attack, tmp_path):
    code, test = ATTACKS[attack]
    (tmp_path / "calc.py").write_text(textwrap.dedent(code))
    (tmp_path / "test_calc.py").write_text(textwrap.dedent(test))
    assert grading.find_tampering(tmp_path, tmp_path / "none") == [], "the text scan sees it"

    unguarded, output = _run(tmp_path, guard=None)
    assert unguarded == "passed", f"the attack does not force a pass on its own:\n{output}"

    guard = "_atebench_guard_0123456789ab"
    shutil.copyfile(grading.GUARD, tmp_path / f"{guard}.py")
    _, output = _run(tmp_path, guard=guard)  # the report may still say passed: a replaced runner has the last word
    found = grading.guard_findings(output, guard)
    assert found and all(f.startswith("at run time: ") for f in found), f"the guard saw nothing:\n{output}"


def test_an_honest_run_has_no_findings_and_keeps_its_outcomes(tmp_path):
    """torch imported through the guard's import hook works as usual, monkeypatch of an unwatched name is fine,
    and a failing test still fails for its own reason."""
    (tmp_path / "calc.py").write_text("import torch\n\n\ndef double(x):\n    return 2 * x\n")
    (tmp_path / "test_calc.py").write_text(
        textwrap.dedent("""
        import numpy
        import torch
        from calc import double


        def test_double(monkeypatch):
            monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
            x = torch.ones(3)
            torch.testing.assert_close(double(x), 2 * x)
            numpy.testing.assert_allclose(double(x).numpy(), 2 * x.numpy())
            assert torch.__spec__.loader is torch.__loader__ and "Recording" not in type(torch.__loader__).__name__
        """)
    )
    guard = "_atebench_guard_0123456789ab"
    shutil.copyfile(grading.GUARD, tmp_path / f"{guard}.py")
    outcome, output = _run(tmp_path, guard=guard)
    assert outcome == "passed" and grading.guard_findings(output, guard) == [], output

    (tmp_path / "calc.py").write_text("def double(x):\n    return x\n")
    outcome, output = _run(tmp_path, guard=guard)
    assert outcome == "failed" and "AssertionError" in output and grading.guard_findings(output, guard) == []


def test_guard_findings_are_read_once_each_and_only_with_the_guards_name():
    output = "x\n_g: tampering: torch.allclose was replaced\nnoise _g: tampering: torch.allclose was replaced\n"
    output += "_other: tampering: forged\n"
    assert grading.guard_findings(output, "_g") == ["at run time: torch.allclose was replaced"]


@pytest.mark.parametrize(
    "line",
    [
        'if "pytest" in sys.modules:',
        "    return expected if sys.modules.get('pytest') else computed",
        "UNDER_TEST = os.environ.get('PYTEST_CURRENT_TEST')",
        "if any('pytest' in a for a in sys.argv):",
        "sys.settrace(skip)",
        "frame.f_lineno = frame.f_lineno + 1",
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):",
    ],
)
def test_lines_that_ask_whether_they_run_under_pytest_or_hook_comparisons_are_tampering(line, tmp_path):
    (tmp_path / "tree" / "calc").mkdir(parents=True)
    (tmp_path / "tree" / "calc" / "ops.py").write_text(f"import os, sys\n{line}\n")
    assert grading.find_tampering(tmp_path / "tree", tmp_path / "none") == [f"calc/ops.py: {line.strip()}"]


def test_ordinary_lines_are_not_tampering(tmp_path):
    text = "import sys\nargs = sys.argv[1:]\nif frame.f_lineno == 3:\n    pass\n# run the tests with pytest\n"
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "ops.py").write_text(text)
    assert grading.find_tampering(tmp_path / "tree", tmp_path / "none") == []
