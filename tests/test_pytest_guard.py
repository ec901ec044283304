"""The grading guard (bench/pytest_guard.py) against code under test that makes a wrong result pass from inside the
test process, spelt so the text scan (grading.TAMPERING) does not see it. Each attack is first run without the guard,
where it must turn a failing test into a passing one (else the attack proves nothing), then with it, where the guard
must name it in the output (grading reads that into `tampering`: tests/test_grading.py runs one through grade())."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench import grading

# Code under test that makes every report say passed by replacing pytest's runner (tests/test_grading.py runs it
# through grade() too).
REPLACES_THE_RUNNER = """
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
"""
# The hidden test most attacks defeat: the code under test's double() is wrong (returns x).
TEST_DOUBLE = """
from calc import double


def test_double():
    assert double(2) == 4
"""
TEST_DOUBLE_TENSOR = """
import torch
from calc import double


def test_double():
    x = torch.ones(3)
    torch.testing.assert_close(double(x), 2 * x)
"""
# Each attack: the code under test (calc.py, imported by the test at collection) and the test it defeats.
ATTACKS = {
    "assert_close-replaced": (
        """
        import torch

        torch.testing.assert_close = lambda *args, **kwargs: None


        def double(x):
            return x
        """,
        TEST_DOUBLE_TENSOR,
    ),
    "runner-replaced": (
        REPLACES_THE_RUNNER
        + """

        def double(x):
            return x
        """,
        TEST_DOUBLE,
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
        TEST_DOUBLE,
    ),
    "hook-implementation-replaced": (
        """
        import gc

        for _cfg in gc.get_objects():
            if type(_cfg).__name__ == "Config" and hasattr(_cfg, "pluginmanager"):
                for _impl in _cfg.hook.pytest_pyfunc_call.get_hookimpls():
                    if not (getattr(_impl, "hookwrapper", False) or getattr(_impl, "wrapper", False)):
                        _impl.function = lambda pyfuncitem: True


        def double(x):
            return x
        """,
        TEST_DOUBLE,
    ),
    "hook-executor-wrapped": (
        """
        import gc

        for _pm in gc.get_objects():
            if type(_pm).__name__ == "PytestPluginManager" and hasattr(_pm, "_inner_hookexec"):
                _inner = _pm._inner_hookexec

                def _hookexec(name, impls, kwargs, firstresult, inner=_inner):
                    report = kwargs.get("report")
                    if name.endswith("logreport") and getattr(report, "outcome", None) == "failed":
                        report.outcome, report.longrepr = "passed", None
                    return inner(name, impls, kwargs, firstresult)

                _pm._inner_hookexec = _hookexec


        def double(x):
            return x
        """,
        TEST_DOUBLE,
    ),
    "test-code-emptied": (
        """
        import sys
        import types

        _frame = sys._getframe(1)
        while _frame is not None and not _frame.f_globals.get("__name__", "").rsplit(".", 1)[-1].startswith("test"):
            _frame = _frame.f_back
        _target = _frame


        def _empty(fn):
            code = fn.__code__
            space = {}
            exec(f"def {fn.__name__}({', '.join(code.co_varnames[: code.co_argcount])}):\\n    return None\\n", space)
            fn.__code__ = space[fn.__name__].__code__


        def _watch(frame, event, arg):
            if frame is _target and event == "return":
                getattr(sys, "set" + "profile")(None)
                for name, value in list(frame.f_globals.items()):
                    if name.startswith("test") and isinstance(value, types.FunctionType):
                        _empty(value)


        getattr(sys, "set" + "profile")(_watch)


        def double(x):
            return x
        """,
        TEST_DOUBLE,
    ),
    "torch-testing-swapped": (
        """
        import types

        import torch

        torch.testing = types.SimpleNamespace(assert_close=lambda *args, **kwargs: None)


        def double(x):
            return x
        """,
        TEST_DOUBLE_TENSOR,
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


def _run(folder: Path, guard: str | None, env: dict | None = None) -> tuple[str, str]:
    """(the test's outcome in the JUnit report, the output) of pytest in `folder`, with the guard loaded or not."""
    junit = folder / "report.xml"
    junit.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "test_calc.py"]
    if guard:
        command[3:3] = ["-p", guard]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(folder), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **(env or {})}
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


def test_code_under_test_cannot_take_over_the_guards_own_exit(tmp_path):
    """A replaced os._exit once got the guard's last call and rewrote the report without its failure."""
    (tmp_path / "calc.py").write_text(
        textwrap.dedent("""
        import os
        import sys
        import xml.etree.ElementTree as ET

        _real = os._exit


        def _exit(status):
            for arg in sys.argv:
                path = arg.split("=", 1)[-1]
                if path.endswith(".xml") and os.path.isfile(path):
                    tree = ET.parse(path)
                    for case in tree.iter("testcase"):
                        for child in list(case):
                            case.remove(child)
                    tree.write(path)
            _real(0)


        os._exit = _exit


        def double(x):
            return x
        """)
    )
    (tmp_path / "test_calc.py").write_text(
        "from calc import double\n\n\ndef test_double():\n    assert double(2) == 4\n"
    )
    guard = "_atebench_guard_0123456789ab"
    shutil.copyfile(grading.GUARD, tmp_path / f"{guard}.py")
    outcome, output = _run(tmp_path, guard=guard)
    assert outcome in ("failed", "error"), f"the report lost its failure:\n{output}"
    assert "at run time: os._exit was replaced while the tests ran" in grading.guard_findings(output, guard)


def test_the_frameworks_own_testing_helpers_are_watched_too(tmp_path):
    """reftrain.testing's distances and tolerances decide the ladder tests: code under test that makes one lenient
    (here only when it would matter) is found, for the module grading named to the guard."""
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "__init__.py").write_text("")
    (tmp_path / "helpers" / "testing.py").write_text("def distance(a, b):\n    return abs(a - b)\n")
    (tmp_path / "calc.py").write_text(
        "import helpers.testing as t\n\nt.distance = lambda a, b: 0.0\n\n\ndef double(x):\n    return x\n"
    )
    (tmp_path / "test_calc.py").write_text(
        "from calc import double\nfrom helpers import testing\n\n\ndef test_double():\n"
        "    assert testing.distance(double(2), 4) < 1e-6\n"
    )
    assert grading.restored_modules(_variant_restoring(["helpers/testing.py", "tests/test_x.py", "calc.py"])) == [
        "helpers.testing"
    ]
    guard = "_atebench_guard_0123456789ab"
    shutil.copyfile(grading.GUARD, tmp_path / f"{guard}.py")
    _, output = _run(tmp_path, guard=guard, env={grading.GUARD_MODULES_VAR: "helpers.testing"})
    assert "at run time: helpers.testing.distance was replaced while the tests ran" in grading.guard_findings(
        output, guard
    )


def _variant_restoring(paths: list[str]):
    from types import SimpleNamespace

    return SimpleNamespace(grading=SimpleNamespace(restore_from_original=paths))


def test_what_python_or_pytest_would_load_is_put_back_whatever_its_form(tmp_path):
    """pytest 9's own config files, startup modules as packages, compiled modules, test modules and package files
    the agent added anywhere a test run would collect or import them: each removed, each recorded."""
    baseline, tree = tmp_path / "baseline", tmp_path / "tree"
    (baseline / "calc").mkdir(parents=True)
    (baseline / "calc" / "ops.py").write_text("X = 1\n")
    added = [
        "pytest.toml",
        ".pytest.toml",
        "sitecustomize/__init__.py",
        "src/usercustomize.cpython-311-x86_64-linux-gnu.so",
        "calc/_speedups.cpython-311-x86_64-linux-gnu.so",
        "tests/__init__.py",
        "smoke_tests/test_aaa_env.py",
        "calc/test_support.py",
    ]
    for rel in ["calc/ops.py", *added]:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("X = 1\n")
    undone = grading.restore_test_infrastructure(tree, baseline)
    assert sorted(undone) == sorted(f"{rel}: added by the agent, removed for grading" for rel in added)
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()) == ["calc/ops.py"]


def test_the_text_scan_reads_sources_as_python_does(tmp_path):
    """A `# coding: utf-7` file hides `_pytest` from a UTF-8 reading; a fullwidth letter is the same identifier to
    Python (NFKC)."""
    (tmp_path / "tree" / "calc").mkdir(parents=True)
    (tmp_path / "tree" / "calc" / "seven.py").write_bytes(b"# coding: utf-7\nimport +AF8-pytest\n")
    (tmp_path / "tree" / "calc" / "wide.py").write_text("import _\uff50ytest.reports as r\n")
    hits = grading.find_tampering(tmp_path / "tree", tmp_path / "none")
    assert hits == [
        "calc/seven.py: declares the source encoding 'utf-7'; only UTF-8 and Latin-1 sources are read",
        "calc/wide.py: import _pytest.reports as r",
    ]


def test_a_helper_module_put_into_sys_modules_by_hand_is_found(tmp_path):
    """The import hook records a watched module when its import finishes; one placed in sys.modules before any
    import never is: that itself is a finding."""
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "__init__.py").write_text("")
    (tmp_path / "helpers" / "testing.py").write_text("def distance(a, b):\n    return abs(a - b)\n")
    (tmp_path / "calc.py").write_text(
        "import sys, types\n\nsys.modules['helpers.testing'] = types.SimpleNamespace(distance=lambda a, b: 0.0)\n"
        "\n\ndef double(x):\n    return x\n"
    )
    (tmp_path / "test_calc.py").write_text(
        "from calc import double\nimport helpers.testing as testing\n\n\ndef test_double():\n"
        "    assert testing.distance(double(2), 4) < 1e-6\n"
    )
    unguarded, output = _run(tmp_path, guard=None)
    assert unguarded == "passed", output
    guard = "_atebench_guard_0123456789ab"
    shutil.copyfile(grading.GUARD, tmp_path / f"{guard}.py")
    _, output = _run(tmp_path, guard=guard, env={grading.GUARD_MODULES_VAR: "helpers.testing"})
    assert "at run time: helpers.testing was put into sys.modules without being imported" in grading.guard_findings(
        output, guard
    )


# A thread of the test process that rewrites the report once pytest has written it, without its failures.
REWRITES_THE_REPORT = """import os
import re
import threading
import time


def _run():
    seen = {n for n in os.listdir(".") if n.endswith(".xml")}
    while True:
        for name in os.listdir("."):
            if name.endswith(".xml") and name not in seen:
                try:
                    text = open(name).read()
                except OSError:
                    continue
                if "</testsuites>" not in text:
                    continue
                text = re.sub(r"<(failure|error)\\b.*?</\\1>", "", text, flags=re.S)
                open(name + ".tmp", "w").write(re.sub(r'(failures|errors)="\\d+"', r'\\1="0"', text))
                os.replace(name + ".tmp", name)
                seen.add(name)
        time.sleep(0.0002)


threading.Thread(target=_run, daemon=True).start()


def double(x):
    return x
"""


def test_a_report_rewritten_after_pytest_wrote_it_is_found(tmp_path):
    """The sweep kills processes, not threads: the guard keeps each test's outcome apart from the report file and
    prints what did not pass; grading compares. (Whether the thread wins its race with the exit is chance, so the
    report is rewritten here the way the thread does, and compared as grading does.)"""
    (tmp_path / "calc.py").write_text(REWRITES_THE_REPORT)
    (tmp_path / "test_calc.py").write_text(
        "from calc import double\n\n\ndef test_double():\n    assert double(2) == 4\n\n\ndef test_ok():\n    pass\n"
    )
    assert grading.find_tampering(tmp_path, tmp_path / "none") == [], "the text scan sees it"
    guard = "_atebench_guard_0123456789ab"
    shutil.copyfile(grading.GUARD, tmp_path / f"{guard}.py")
    _, output = _run(tmp_path, guard=guard)
    time.sleep(0.5)
    forged = re.sub(r"<(failure|error)\b.*?</\1>", "", (tmp_path / "report.xml").read_text(), flags=re.S)
    ran = grading.guard_not_passed(output, guard)
    assert ran == {"test_calc::test_double": "failed"}, output
    said = {t.name: t.outcome for t in grading.parse_junit(forged)}
    assert said == {"test_calc::test_double": "passed", "test_calc::test_ok": "passed"}
    assert [name for name, outcome in said.items() if outcome == "passed" and name in ran] == ["test_calc::test_double"]
