"""TorchTitan's task versions: specs, preparation on the pinned source (git clone via ATEBENCH_SRC_TORCHTITAN,
else the sdist route), and oracle/nop/wrong end to end (slow; needs `pip install -e '.[torchtitan]'`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import original_or_skip, skip_without_titan_deps

from bench import gpu, grading, sources, specs, workspace
from bench.report import task_category

REPO = Path(__file__).resolve().parents[1]
# The CPU build tasks (a prepared tree, hidden tests, a gold and a wrong edit); Q&A keys are checked in
# tests/test_answers.py, operate tasks in tests/test_tasks_operate.py, and the 2-GPU router-tp-not-reduced
# (a real bug: its gold is solution.patch) in tests/test_titan_router_tp.py.
TASKS = sorted(
    t
    for t in specs.list_tasks()
    if "torchtitan" in specs.load_task(t).frameworks()
    and task_category(specs.load_task(t).family) == "build"
    and gpu.gpus_per_trial(specs.load_framework("torchtitan"), specs.load_task(t).spec) == 0
)


def variant(task_id: str) -> specs.TaskVariant:
    return specs.load_task(task_id).variant("torchtitan")


@pytest.fixture(scope="module")
def framework():
    return specs.load_framework("torchtitan")


@pytest.fixture(scope="module")
def original(framework, module_cache) -> Path:
    return original_or_skip(framework, module_cache, "set ATEBENCH_SRC_TORCHTITAN to a clone, or reach PyPI")


def test_there_is_a_torchtitan_task():
    assert "add-new-model/qwen3_moe" in TASKS


@pytest.mark.parametrize("task_id", ["add-new-model/qwen3_moe", "enable-ep"])
def test_the_reference_and_torchtitan_share_the_task_and_its_instruction(task_id):
    """`--framework all` runs both side by side; the framework-specific facts are lines of one instruction."""
    task = specs.load_task(task_id)
    assert {"reference", "torchtitan"} <= set(task.frameworks())
    assert all(task.variant(name).grading.fail_to_pass for name in ("reference", "torchtitan"))
    assert "- TorchTitan:" in task.instruction_template


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
        hidden = path.startswith("grader_tests/") and (v.tests_dir / path.removeprefix("grader_tests/")).is_file()
        assert hidden or path in v.grading.restore_from_original, test_id
    assert "{framework}" in v.task.instruction_template


@pytest.mark.parametrize("task_id", TASKS)
def test_prepared_tree_has_no_hidden_tests_and_the_wrong_edit_applies(task_id, framework, module_cache, original):
    v = variant(task_id)
    prepared = workspace.prepared_checkout(v, framework, module_cache)
    assert not (prepared / "grader_tests").exists()
    patch = sources.wrong_solution(v, prepared, workspace.original_source(framework, module_cache))
    assert patch.strip() and "grader_tests/" not in patch
    gold = workspace.gold_patch(v, framework, module_cache)
    assert gold.strip() and "grader_tests/" not in gold and gold != patch


@pytest.mark.slow  # with the extra installed (.ci/run installs it before the slow run)
@pytest.mark.parametrize("task_id", [t for t in TASKS if variant(t).grading.gpu_fail_to_pass])
def test_every_gpu_rung_is_collected_by_the_hidden_module(task_id, original, tmp_path):
    """On CPU the rungs skip, so a rung id nothing collects (an import of a name the GPU module lacks, a renamed
    test) would only show on a GPU trial: collected here, every rung of the task's ladder, beside the support files,
    on the pinned source (collection imports the framework only)."""
    skip_without_titan_deps()
    v = variant(task_id)
    tree = tmp_path / "tree"
    workspace.copy_clean(original, tree)
    grading.place_hidden_tests(v, tree)
    rungs = grading.gpu_ladder_ids(v, max(v.task.spec.resources.gpu_ladder))
    modules = sorted({t.split("::")[0] for t in rungs})
    env = {**os.environ, "PYTHONPATH": str(tree), "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", "--rootdir=.", *modules],
        cwd=tree, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    collected = set(re.findall(r"^(grader_tests/\S+::\S+)$", proc.stdout, re.M))
    assert rungs and set(rungs) <= collected, (sorted(set(rungs) - collected), proc.stdout[-2000:])


TITAN_FULL = {"enable-ep"}
"""Tasks whose end-to-end validation does not fit CI's ~20 minutes for TorchTitan on 2 cores beside the others
(enable-ep alone takes 7-8 of them; the other five about 11-12): marked titan_full (`python -m pytest -m
titan_full tests/test_torchtitan_tasks.py`); their latest full result is in docs/validation/."""


@pytest.mark.slow
@pytest.mark.timeout(1800)  # one task's oracle, nop and wrong runs: 2-8 minutes on 2 busy cores
@pytest.mark.parametrize(
    "task_id", [pytest.param(t, marks=pytest.mark.titan_full) if t in TITAN_FULL else t for t in TASKS]
)
def test_validate_oracle_resolves_nop_and_wrong_fail(task_id, original, tmp_path):
    skip_without_titan_deps()
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


def test_restored_framework_tests_absent_from_the_sdist_are_skipped_visibly_and_not_graded(tmp_path):
    """The sdist ships no tests/: enable-ep's restored test_parallel_dims becomes a module-level skip that says
    why, and its ids leave grading; a path the pinned tree does not have is still a spec error."""
    v = variant("enable-ep")
    sdist_like, tree = tmp_path / "original", tmp_path / "tree"
    (sdist_like / "torchtitan").mkdir(parents=True)
    tree.mkdir()
    assert grading.restore_original_tests(v, sdist_like, tree) == ["tests/unit_tests/test_parallel_dims.py"]
    stub = (tree / "tests/unit_tests/test_parallel_dims.py").read_text()
    assert "allow_module_level=True" in stub and "sdist route" in stub
    typo = v.model_copy(
        update={"grading": v.grading.model_copy(update={"restore_from_original": ["tests/unit_tests/test_nope.py"]})}
    )
    with pytest.raises(FileNotFoundError, match="test_nope.py"):
        grading.restore_original_tests(typo, sdist_like, tree)
