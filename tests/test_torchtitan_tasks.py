"""TorchTitan's task versions: specs, preparation on the pinned source (git clone via ATEBENCH_SRC_TORCHTITAN,
else the sdist route), and oracle/nop/wrong end to end (slow; needs `pip install -e '.[torchtitan]'`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from bench import sources, specs, workspace

REPO = Path(__file__).resolve().parents[1]
# Build tasks only: Q&A (answer keys) and operate tasks (produced output patches) have their own test files.
TASKS = sorted(
    t
    for t in specs.list_tasks()
    if "torchtitan" in specs.load_task(t).frameworks() and specs.load_task(t).family not in ("qa", "operate")
)
DEPS = ("torch", "triton", "torchdata", "datasets", "tyro", "transformers", "tensorboard")


def variant(task_id: str) -> specs.TaskVariant:
    return specs.load_task(task_id).variant("torchtitan")


@pytest.fixture(scope="module")
def framework():
    return specs.load_framework("torchtitan")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("atebench-cache")


@pytest.fixture(scope="module")
def original(framework, cache) -> Path:
    try:
        return workspace.original_source(framework, cache)
    except (sources.SourceError, workspace.WorkspaceError) as error:
        pytest.skip(f"no TorchTitan source here (set ATEBENCH_SRC_TORCHTITAN to a clone, or reach PyPI): {error}")


def test_there_is_a_torchtitan_task():
    assert "add-new-model/qwen3_moe" in TASKS


@pytest.mark.parametrize("task_id", TASKS)
def test_spec_grades_hidden_tests_only_and_ships_a_wrong_edit_of_the_gold(task_id):
    v = variant(task_id)
    assert v.prepare_script is not None and v.solution_patch is None
    assert v.wrong_patch is not None and v.wrong_patch.name.endswith(sources.ON_GOLD_SUFFIX), (
        "TorchTitan's code is not kept here: a wrong solution is a small edit of the gold (*.on-gold.patch)"
    )
    assert v.grading.tests_target == "grader_tests" and v.grading.fail_to_pass
    for test_id in v.grading.fail_to_pass + v.grading.pass_to_pass:
        path = test_id.split("::")[0]
        assert path.startswith("grader_tests/") and (v.tests_dir / path.removeprefix("grader_tests/")).is_file(), (
            test_id
        )
    assert "{framework}" in v.task.instruction_template


@pytest.mark.parametrize("task_id", TASKS)
def test_prepared_tree_has_no_hidden_tests_and_the_wrong_edit_applies(task_id, framework, cache, original):
    v = variant(task_id)
    prepared = workspace.prepared_checkout(v, framework, cache)
    assert not (prepared / "grader_tests").exists()
    patch = sources.wrong_solution(v, prepared, workspace.original_source(framework, cache))
    assert patch.strip() and "grader_tests/" not in patch
    gold = workspace.gold_patch(v, framework, cache)
    assert gold.strip() and "grader_tests/" not in gold and gold != patch


@pytest.mark.slow
@pytest.mark.parametrize("task_id", TASKS)
def test_validate_oracle_resolves_nop_and_wrong_fail(task_id, original, tmp_path):
    absent = [name for name in DEPS if importlib.util.find_spec(name) is None]
    if absent:
        pytest.skip(
            f"TorchTitan's dependencies are not installed ({', '.join(absent)}): pip install -e '.[torchtitan]'"
        )
    proc = subprocess.run(
        [
            sys.executable,
            "runner.py",
            "validate",
            "--framework",
            "torchtitan",
            "--task",
            task_id,
            "--results-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0 and "all tasks valid" in proc.stdout, (proc.stdout + proc.stderr)[-4000:]


@pytest.mark.parametrize("task_id", TASKS)
def test_shared_support_files_are_graded_beside_the_hidden_tests(task_id):
    v = variant(task_id)
    placed = v.support_files()
    assert placed and all(source.is_file() for source in placed.values())
    assert set(placed) <= set(v.hidden_test_paths())
    assert not set(placed.values()) & set(v.tests_dir.rglob("*")), "a support file copied into the task's tests/"


def test_a_missing_support_file_is_named(tmp_path):
    task = tmp_path / "tasks" / "t"
    (task / "frameworks" / "fw" / "tests").mkdir(parents=True)
    (tmp_path / "frameworks" / "fw").mkdir(parents=True)
    (task / "task.toml").write_text('description = "t"\n')
    (task / "instruction.md").write_text("x {framework}\n")
    (task / "frameworks" / "fw" / "grading.toml").write_text(
        'command = "pytest"\nfail_to_pass = ["grader_tests/test_a.py::test_a"]\nsupport = ["grader_support/h.py"]\n'
    )
    with pytest.raises(specs.SpecError, match="support names 'grader_support/h.py', which is not a file"):
        specs.load_task("t", tmp_path).variant("fw")
    (tmp_path / "frameworks" / "fw" / "grader_support").mkdir()
    (tmp_path / "frameworks" / "fw" / "grader_support" / "h.py").write_text("")
    assert specs.load_task("t", tmp_path).variant("fw").support_files() == {
        "tests/h.py": tmp_path / "frameworks" / "fw" / "grader_support" / "h.py"
    }
