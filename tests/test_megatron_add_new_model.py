"""add-new-model/mixtral on Megatron-LM: Mixtral enters Megatron through its checkpoint converter (the agent writes
tools/checkpoint/loader_mixtral_hf.py). Checked here without the source: the variant's shape (a one-GPU task whose
gold is that one file, a wrong patch on the gold, hidden test ids that exist, the converter not restored over the
agent's work); with a clone of the pin (ATEBENCH_SRC_MEGATRON): what prepare.py removes and repairs, and that the
gold and the wrong patch apply; with a GPU too: `validate` as a user runs it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cuda_and_megatron_source, patch_files

from bench import gpu, sources, specs

REPO = Path(__file__).resolve().parents[1]
TASK = "add-new-model/mixtral"
LOADER = "tools/checkpoint/loader_mixtral_hf.py"


def variant() -> specs.TaskVariant:
    return specs.load_task(TASK).variant("megatron")


def test_variant_is_a_one_gpu_task_whose_gold_is_the_loader_alone():
    v = variant()
    assert gpu.gpus_per_trial(specs.load_framework("megatron"), v.task.spec) == 1
    assert patch_files(v.solution_patch.read_text()) == [LOADER]
    assert v.wrong_patch.name.endswith(sources.ON_GOLD_SUFFIX), "the wrong loader is an edit of the gold's"
    assert patch_files(v.wrong_patch.read_text()) == [LOADER]


def test_hidden_ids_exist_and_the_converter_is_not_restored_over_the_agents_work():
    v = variant()
    tests = (v.tests_dir / "test_mixtral.py").read_text()
    for test_id in v.grading.fail_to_pass + v.grading.pass_to_pass:
        path, name = test_id.split("::")
        assert path == "grader_tests/test_mixtral.py" and f"def {name}(" in tests, test_id
    restored = v.grading.restore_from_original
    assert not [p for p in restored if p.startswith("tools/")], "restoring tools/ would undo prepare's saver repairs"
    assert {"pretrain_gpt.py", "megatron/training/checkpointing.py", "megatron/core/models/gpt/gpt_model.py"} <= set(
        restored
    )


def test_prepare_pins_the_launcher_module_it_imports():
    """The prepared-checkout cache key hashes prepare.py, not grader_support/: the pin must match the file."""
    text = (variant().dir / "prepare.py").read_text()
    digest = hashlib.sha256((REPO / "frameworks/megatron/grader_support/megatron_run.py").read_bytes()).hexdigest()
    assert f'MEGATRON_RUN_SHA256 = "{digest}"' in text


def _megatron_clone() -> Path | None:
    src = os.environ.get("ATEBENCH_SRC_MEGATRON")
    return Path(src) if src and Path(src).is_dir() else None


needs_source = pytest.mark.skipif(
    _megatron_clone() is None,
    reason="MEGATRON SOURCE TESTS SKIPPED: set ATEBENCH_SRC_MEGATRON to a clone of the pin (f8837c04) to run them",
)


def _git(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, capture_output=True, text=True
    )


@needs_source
@pytest.mark.timeout(600)
def test_prepare_removes_mixtral_repairs_the_saver_and_the_patches_apply(tmp_path):
    if not shutil.which("g++"):
        pytest.skip("PREPARE TEST SKIPPED: g++ is needed to build Megatron's dataset helper")
    v = variant()
    tree = tmp_path / "tree"
    sources.export_checkout(_megatron_clone(), specs.load_framework("megatron").source.commit, tree)
    proc = subprocess.run(
        [sys.executable, str(v.dir / "prepare.py"), str(tree)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tree / LOADER).exists() and not (tree / "examples" / "mixtral").exists()
    assert (tree / "task_assets/mixtral/config.json").is_file()
    assert (tree / "task_assets/mixtral/full-size/config.json").is_file()
    schema = (tree / "tools/checkpoint/schema_core.py").read_text()
    assert "class CoreMoELocalSchema" in schema and "Only support TE setter for MOE" not in schema
    saver = (tree / "tools/checkpoint/saver_base.py").read_text()
    assert 'if self.args.saver_transformer_impl == "transformer_engine":' in saver
    assert "mpu._EXPERT_TENSOR_PARALLEL_GROUP = " in saver
    assert list((tree / "megatron/core/datasets").glob("helpers_cpp*.so")), "the dataset helper was not built"
    assert _git("init", "-q", cwd=tree).returncode == 0
    applied = _git("apply", str(v.solution_patch), cwd=tree)
    assert applied.returncode == 0, applied.stderr
    assert _git("apply", "--check", str(v.wrong_patch), cwd=tree).returncode == 0, "the wrong patch must fit the gold"


@pytest.mark.gpu
@pytest.mark.skipif(
    not (cuda_and_megatron_source() and _megatron_clone() is not None),
    reason="GPU TESTS SKIPPED: Megatron's add-new-model needs a CUDA GPU, ATEBENCH_SRC_MEGATRON (a clone of the pin) "
    "and transformers in the machine's Python",
)
@pytest.mark.timeout(900)
def test_megatron_mixtral_is_valid_on_a_gpu(tmp_path):
    """`validate --framework megatron --task add-new-model/mixtral --gpus 1` as a user runs it: oracle resolves, nop
    and wrong fail (record: docs/validation/2026-12-01-megatron-add-new-model-h200.md)."""
    proc = subprocess.run(
        [sys.executable, "runner.py", "validate", "--framework", "megatron", "--task", TASK, "--gpus", "1"]
        + ["--share-gpus", "3", "--parallel", "3", "--results-dir", str(tmp_path), "--run-id", "megatron-anm"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert proc.returncode == 0 and "all tasks valid" in proc.stdout, (proc.stdout + proc.stderr)[-4000:]
