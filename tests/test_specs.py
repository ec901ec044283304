"""Spec loading: the shipped specs are valid, and a wrong spec gets one error naming file, field, fix."""

from __future__ import annotations

import ast
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import make_toy_root, write

from bench import specs, workspace

TORCHTITAN = textwrap.dedent("""
    name = "torchtitan"
    description = "PyTorch-native training platform"
    [source]
    kind = "git"
    url = "https://github.com/pytorch/torchtitan"
    commit = "0123456789abcdef0123456789abcdef01234567"
    [sandbox]
    setup = ["pip install -e ."]
    gpus = 8
    [commands]
    test = "python -m pytest -q tests/unit_tests"
    throughput = "python scripts/atebench_throughput.py"
""")


def test_shipped_specs_load():
    reference = specs.load_framework("reference")
    assert reference.source.kind == "bundled" and reference.bundled_path().is_dir()
    smoke = specs.load_task("smoke")
    assert smoke.family == "smoke" and "reference" in smoke.frameworks()
    variant = smoke.variant("reference")
    assert variant.grading.fail_to_pass and variant.prepare_script and variant.solution_patch and variant.wrong_patch
    assert "{framework}" not in smoke.instruction("reference")


# pytest names a test case after its parameters; a string parameter over this many characters is named one way
# by pytest < 9.2 (the string) and another by pytest >= 9.2 (argname and index), so an id grading.toml lists
# would go missing on a machine with the other pytest (it did on a GPU machine's pytest 9.0.3).
PYTEST_LONG_ID = 100
GRADED_TEST_FILES = ("tasks/**/*.py", "frameworks/*/grader_support/*.py", "reference_impl/tests/*.py")


def _long_auto_ids(path: Path) -> list[int]:
    """The lines of every parametrize value in `path` that pytest would name differently across versions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        is_parametrize = isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "parametrize"
        if not is_parametrize or any(k.arg == "ids" for k in node.keywords) or len(node.args) < 2:
            continue
        if not isinstance(node.args[1], ast.List | ast.Tuple):
            continue
        for case in node.args[1].elts:
            if isinstance(case, ast.Call) and any(k.arg == "id" for k in case.keywords):
                continue  # pytest.param(..., id=...)
            values = case.elts if isinstance(case, ast.Tuple | ast.List) else [case]
            found += [
                value.lineno
                for value in values
                if isinstance(value, ast.Constant) and isinstance(value.value, str | bytes)
                if len(value.value) > PYTEST_LONG_ID
            ]
    return found


def test_no_graded_test_id_depends_on_the_pytest_version():
    files = sorted({f for pattern in GRADED_TEST_FILES for f in specs.REPO_ROOT.glob(pattern)})
    assert len(files) > 50, "the scan found too few test files to mean anything"
    found = [f"{path.relative_to(specs.REPO_ROOT)}:{line}" for path in files for line in _long_auto_ids(path)]
    assert not found, (
        f"parametrize values over {PYTEST_LONG_ID} characters get a pytest-version-dependent test id: {found}; "
        "give them an explicit id (pytest.param(..., id=...) or ids=[...]) and update the grading.toml lists"
    )


def test_the_long_id_scan_finds_a_long_string_and_honours_explicit_ids(tmp_path):
    long = "x" * (PYTEST_LONG_ID + 1)
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import pytest\n"
        f"@pytest.mark.parametrize('a, b', [(1, 'short'), ([2], {long!r})])\n"
        "def test_a(a, b): pass\n"
        f"@pytest.mark.parametrize('b', [pytest.param({long!r}, id='named'), {long!r}])\n"
        "def test_b(b): pass\n"
        f"@pytest.mark.parametrize('b', [{long!r}], ids=['named'])\n"
        "def test_c(b): pass\n"
    )
    assert _long_auto_ids(sample) == [2, 4]


@pytest.mark.parametrize(
    "field, rel, home",
    [("support", "grader_support/h.py", "frameworks/fw"), ("task_support", "checks/c.py", "tasks/t")],
)
def test_a_missing_support_file_is_named_and_a_present_one_goes_beside_the_hidden_tests(tmp_path, field, rel, home):
    """grading.toml's `support` (a framework's grader_support/) and `task_support` (the task's own checks)."""
    variant_dir = tmp_path / "tasks" / "t" / "frameworks" / "fw"
    (variant_dir / "tests").mkdir(parents=True)
    (tmp_path / "frameworks" / "fw").mkdir(parents=True)
    (tmp_path / "tasks" / "t" / "task.toml").write_text('description = "t"\n')
    (tmp_path / "tasks" / "t" / "instruction.md").write_text("x {framework}\n")
    (variant_dir / "grading.toml").write_text(
        f'command = "pytest"\nfail_to_pass = ["tests/test_a.py::test_a"]\n{field} = ["{rel}"]\n'
    )
    with pytest.raises(specs.SpecError, match=f"{field} names '{rel}', which is not a file under {home}; fix the path"):
        specs.load_task("t", tmp_path).variant("fw")
    source = tmp_path / home / rel
    source.parent.mkdir(parents=True)
    source.write_text("")
    assert specs.load_task("t", tmp_path).variant("fw").support_files() == {f"tests/{source.name}": source}


def test_nested_task_ids_and_family_selection(toy_root):
    make_toy_root(toy_root, task_id="arith/div")
    assert specs.list_tasks(toy_root) == ["arith/div", "arith/mul"]
    task = specs.load_task("arith/mul", toy_root)
    assert task.family == "arith" and task.frameworks() == ["toy"]
    assert specs.select_tasks("arith", toy_root) == ["arith/div", "arith/mul"]
    assert specs.select_tasks("arith/div", toy_root) == ["arith/div"]
    with pytest.raises(specs.SpecError, match="unknown task 'geometry'.*arith/div, arith/mul.*family \\(arith\\)"):
        specs.select_tasks("geometry", toy_root)


def test_unknown_field_names_file_field_and_fix(toy_root):
    path = toy_root / "tasks" / "arith" / "mul" / "task.toml"
    path.write_text(path.read_text().replace("turns = 5", "turns = 5\nturnz = 9"))
    with pytest.raises(specs.SpecError) as error:
        specs.load_task("arith/mul", toy_root)
    message = str(error.value)
    assert "tasks/arith/mul/task.toml" in message and "limits.turnz" in message and "remove it" in message
    assert message.count("\n") == 0


def test_wrong_type_and_missing_field(toy_root):
    grading = toy_root / "tasks" / "arith" / "mul" / "frameworks" / "toy" / "grading.toml"
    grading.write_text('fail_to_pass = ["tests/test_ops.py::test_mul"]\n')
    task = specs.load_task("arith/mul", toy_root)
    with pytest.raises(specs.SpecError, match="grading.toml: missing required field 'command'; add it"):
        task.variant("toy")
    fw = toy_root / "frameworks" / "toy" / "framework.toml"
    fw.write_text(fw.read_text().replace("[sandbox]", '[sandbox]\ngpus = "many"'))
    with pytest.raises(specs.SpecError, match="framework.toml: field 'sandbox.gpus'.*fix the value"):
        specs.load_framework("toy", toy_root)


def test_unknown_framework_lists_choices(toy_root):
    with pytest.raises(specs.SpecError, match="unknown framework 'megatron'; choose one of: toy"):
        specs.load_framework("megatron", toy_root)
    task = specs.load_task("arith/mul", toy_root)
    with pytest.raises(specs.SpecError, match="no version for framework 'reference'.*supports: toy"):
        task.variant("reference")


def test_git_spec_validates_and_needs_full_sha(tmp_path):
    write(tmp_path / "frameworks" / "torchtitan" / "framework.toml", TORCHTITAN)
    spec = specs.load_framework("torchtitan", tmp_path)
    assert spec.source.kind == "git" and spec.sandbox.gpus == 8
    write(
        tmp_path / "frameworks" / "torchtitan" / "framework.toml",
        TORCHTITAN.replace("0123456789abcdef0123456789abcdef01234567", "d84e83dc"),
    )
    with pytest.raises(specs.SpecError, match="full 40-character lowercase hex SHA"):
        specs.load_framework("torchtitan", tmp_path)


def _git(*args, cwd):
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_git_source_checked_out_at_pinned_sha(tmp_path, cache, monkeypatch):
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    _git("init", "-q", "-b", "main", cwd=upstream)
    write(upstream / "model.py", "VERSION = 1\n")
    _git("add", "-A", cwd=upstream)
    _git("commit", "-qm", "one", cwd=upstream)
    pinned = _git("rev-parse", "HEAD", cwd=upstream)
    write(upstream / "model.py", "VERSION = 2\n")
    _git("commit", "-qam", "two", cwd=upstream)
    bare = tmp_path / "mirror.git"
    _git("clone", "-q", "--bare", str(upstream), str(bare), cwd=tmp_path)

    write(
        tmp_path / "specs" / "frameworks" / "torchtitan" / "framework.toml",
        TORCHTITAN.replace("0123456789abcdef0123456789abcdef01234567", pinned),
    )
    spec = specs.load_framework("torchtitan", tmp_path / "specs")
    monkeypatch.setenv("ATEBENCH_SRC_TORCHTITAN", str(bare))
    source = workspace.original_source(spec)
    assert (source / "model.py").read_text() == "VERSION = 1\n"
    assert not (source / ".git").exists()
    assert workspace.source_version(spec) == pinned[:12]


def test_resources_python_names_file_field_and_choices(toy_root):
    path = toy_root / "tasks" / "arith" / "mul" / "task.toml"
    text = path.read_text()
    assert specs.load_task("arith/mul", toy_root).spec.resources.python == "harness", "the default"
    path.write_text(text + '[resources]\npython = "bare"\n')
    assert specs.load_task("arith/mul", toy_root).spec.resources.python == "bare"
    path.write_text(text + '[resources]\npython = "system"\n')
    with pytest.raises(specs.SpecError) as error:
        specs.load_task("arith/mul", toy_root)
    message = str(error.value)
    assert "tasks/arith/mul/task.toml" in message and "'resources.python'" in message
    assert "'harness' or 'bare'" in message and message.count("\n") == 0


def test_framework_gpus_naming_a_framework_without_a_version_is_refused(toy_root):
    path = toy_root / "tasks" / "arith" / "mul" / "task.toml"
    text = path.read_text()
    path.write_text(text + "[resources]\nframework_gpus = { toy = 2 }\n")
    assert specs.load_task("arith/mul", toy_root).spec.resources.framework_gpus == {"toy": 2}
    path.write_text(text + "[resources]\nframework_gpus = { megatorn = 2 }\n")
    with pytest.raises(specs.SpecError) as error:
        specs.load_task("arith/mul", toy_root)
    message = str(error.value)
    assert "tasks/arith/mul/task.toml" in message and "framework_gpus" in message and "'megatorn'" in message
    assert "it has: toy" in message
