"""The operate family on the reference framework (and the source-free parts of its TorchTitan and Megatron-LM
variants): what tests/test_tasks_reference.py does not cover.

Operate tasks differ from the build families: the answer is output files, not the original checkout, so
each ships a solution.patch made by its gold producer (tasks/operate/make_patches.py). Checked here: the
specs, the prepared workspace (the run's inputs, none of the outputs), the patches (they apply and write
only the outputs), and, in the slow run, that the gold producer still makes the shipped trace.
getting-started is the odd one: its answer is a script (setup_env.sh) run by the grader in a bare sandbox;
its own tests are at the end.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import cuda_and_megatron_source, patch_files

from bench import specs, workspace
from bench.sandbox import SandboxError
from bench.sandbox.bare import bare_python

REPO = Path(__file__).resolve().parents[1]
TASKS = {
    "operate/heavy-kernels": {"inputs": ["runs/profile/train.toml"], "outputs": ["heavy_kernels.csv"]},
    "operate/routing-trace": {
        "inputs": [
            "runs/routing/train.toml",
            "runs/routing/checkpoint/config.json",
            "runs/routing/checkpoint/model.safetensors",
        ],
        "outputs": [f"routing_trace/step_{n}.npz" for n in range(1, 5)],
    },
}


@pytest.fixture(scope="module")
def framework():
    return specs.load_framework("reference")


def variant(task_id: str) -> specs.TaskVariant:
    return specs.load_task(task_id).variant("reference")


GETTING_STARTED = "operate/getting-started"


def test_every_operate_task_is_covered_here():
    assert specs.select_tasks("operate") == sorted([*TASKS, GETTING_STARTED])


@pytest.mark.parametrize("task_id", sorted(TASKS))
def test_spec_ships_produced_patches_and_restores_what_the_grader_runs(task_id):
    v = variant(task_id)
    assert v.task.family == "operate" and v.task.spec.resources.gpus == 0
    assert not v.task.spec.measure_throughput, "an operate task changes no training speed"
    assert v.task.spec.grading.timeout_s <= 300
    assert v.solution_patch is not None, "the answer is output files: ship solution.patch (make_patches.py)"
    assert v.wrong_patch is not None and (v.dir / "gold" / "solve.py").is_file()
    assert v.grading.tests_target == "grader_tests" and v.tests_dir.is_dir()
    for test_id in v.grading.fail_to_pass + v.grading.pass_to_pass:
        path = test_id.split("::")[0]
        assert (v.tests_dir / path.removeprefix("grader_tests/")).is_file(), f"{test_id}: no such hidden test file"
    for rel in v.grading.restore_from_original:
        assert (REPO / "reference_impl" / rel).is_file(), f"restore_from_original names {rel}, not in reftrain"
    assert "reftrain/train.py" in v.grading.restore_from_original, "the grader's reference must run the original step"
    assert "{framework}" in v.task.instruction_template


TORCHTITAN = ["operate/heavy-kernels", "operate/routing-trace"]


@pytest.mark.parametrize("task_id", TORCHTITAN)
def test_torchtitan_variant_ships_produced_patches_and_restores_pinned_files(task_id):
    """Without the source: the spec, its patches (outputs only) and the restored paths exist at the pin."""
    v = specs.load_task(task_id).variant("torchtitan")
    assert v.solution_patch is not None and v.wrong_patch is not None and (v.dir / "gold" / "solve.py").is_file()
    for patch in (v.solution_patch, v.wrong_patch):
        assert patch_files(patch.read_text()) == sorted(TASKS[task_id]["outputs"]), f"{patch.name} writes other files"
    assert v.grading.tests_target == "grader_tests" and v.task.spec.resources.gpus == 0
    for test_id in v.grading.fail_to_pass + v.grading.pass_to_pass:
        assert (v.tests_dir / test_id.split("::")[0].removeprefix("grader_tests/")).is_file(), test_id
    manifest = (REPO / "frameworks/torchtitan/source-manifest.txt").read_text().split()
    missing = [rel for rel in v.grading.restore_from_original if rel not in manifest]
    assert not missing, f"restore_from_original names files not in TorchTitan at the pin: {missing}"
    assert "torchtitan/train.py" in v.grading.restore_from_original, "the reference must run the pinned trainer"


@pytest.mark.parametrize("task_id", sorted(TASKS))
def test_workspace_has_the_inputs_none_of_the_outputs_and_the_patches_write_only_outputs(
    task_id, framework, module_cache, tmp_path
):
    v = variant(task_id)
    work = workspace.create_workspace(v, framework, tmp_path / "ws", module_cache)
    for rel in TASKS[task_id]["inputs"]:
        assert (work / rel).is_file(), f"prepare.py did not write {rel}"
    for rel in TASKS[task_id]["outputs"]:
        assert not (work / rel).exists(), f"the workspace already holds the answer {rel}"
    assert not (work / "grader_tests").exists()
    for patch in (v.solution_patch, v.wrong_patch):
        assert patch_files(patch.read_text()) == sorted(TASKS[task_id]["outputs"]), f"{patch.name} writes other files"
        proc = subprocess.run(["git", "apply", "--check", str(patch)], cwd=work, capture_output=True, text=True)
        assert proc.returncode == 0, (
            f"{patch.name} no longer applies: {proc.stderr} (rerun tasks/operate/make_patches.py)"
        )
    assert v.solution_patch.read_text() != v.wrong_patch.read_text()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_routing_trace_gold_producer_still_makes_the_shipped_trace(framework, module_cache, tmp_path):
    """A change to reftrain's init, data order or router moves the trace: rerun make_patches.py then."""
    v = variant("operate/routing-trace")
    shipped = workspace.create_workspace(v, framework, tmp_path / "shipped", module_cache)
    subprocess.run(["git", "apply", str(v.solution_patch)], cwd=shipped, check=True)
    fresh = workspace.create_workspace(v, framework, tmp_path / "fresh", module_cache)
    threads = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}  # the task's resources.cpus, as make_patches.py
    env = {**os.environ, **threads, "PYTHONPATH": str(fresh), "TMPDIR": str(tmp_path)}  # torch's caches stay here
    proc = subprocess.run(
        [sys.executable, str(v.dir / "gold" / "solve.py")], cwd=fresh, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for rel in TASKS["operate/routing-trace"]["outputs"]:
        with np.load(shipped / rel) as a, np.load(fresh / rel) as b:
            for key in ("layers", "tokens", "expert_ids"):
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{rel}: {key}")
            np.testing.assert_allclose(a["gate_weights"], b["gate_weights"], rtol=0, atol=1e-6, err_msg=rel)


MEGATRON = ["operate/heavy-kernels", "operate/routing-trace"]
MEGATRON_INPUTS = {"operate/heavy-kernels": "runs/profile", "operate/routing-trace": "runs/routing"}


def _megatron_run_module():
    sys.path.insert(0, str(REPO / "frameworks/megatron/grader_support"))
    try:
        import megatron_run
    finally:
        sys.path.pop(0)
    return megatron_run


@pytest.mark.parametrize("task_id", MEGATRON)
def test_megatron_variant_is_a_gpu_task_with_produced_patches_of_outputs_only(task_id):
    """Without the source: Megatron's variant holds its trial's GPU (framework sandbox.gpus), ships patches of the
    outputs only, names hidden test files that exist, and restores the modules its reference run goes through."""
    from bench import gpu

    v = specs.load_task(task_id).variant("megatron")
    assert gpu.gpus_per_trial(specs.load_framework("megatron"), v.task.spec) == 1
    assert v.solution_patch is not None and v.wrong_patch is not None and (v.dir / "gold" / "solve.py").is_file()
    for patch in (v.solution_patch, v.wrong_patch):
        assert patch_files(patch.read_text()) == sorted(TASKS[task_id]["outputs"]), f"{patch.name} writes other files"
    assert v.solution_patch.read_text() != v.wrong_patch.read_text()
    for test_id in v.grading.fail_to_pass + v.grading.pass_to_pass:
        assert (v.tests_dir / test_id.split("::")[0].removeprefix("grader_tests/")).is_file(), test_id
    assert {"pretrain_gpt.py", "megatron/training/training.py"} <= set(v.grading.restore_from_original)
    assert v.grading.support == ["grader_support/megatron_run.py"]


def test_megatron_prepare_steps_pin_the_run_modules_they_import():
    """prepare.py's DIGESTS must match the run modules (the prepared-checkout cache key hashes prepare.py only)."""
    megatron_run = _megatron_run_module()
    for task_id, module in (("operate/routing-trace", "routing_run.py"), ("operate/heavy-kernels", "profile_run.py")):
        folder = REPO / "tasks" / task_id / "frameworks" / "megatron"
        text = (folder / "prepare.py").read_text()
        for path in (folder / "tests" / module, Path(megatron_run.__file__)):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert f'"{path.name}": "{digest}"' in text, (
                f"{folder / 'prepare.py'}: DIGESTS lacks {path.name}'s {digest}"
            )


FAKE_PRETRAIN = """import json, sys
import megatron.core.datasets.utils as u
u.compile_helpers()  # a no-op when the helper is built, else this fake one raises
json.dump({"argv": sys.argv, "cwd": __import__("os").getcwd()}, open("launched.json", "w"))
"""
FAKE_UTILS = "def compile_helpers():\n    raise RuntimeError('compile_helpers ran although the helper is built')\n"


@pytest.mark.parametrize("built", [True, False])
def test_megatron_launcher_passes_the_config_as_flags_and_skips_the_compile_only_when_built(tmp_path, built):
    """launch.py, as the agent gets it, against a stand-in checkout: [args] become pretrain_gpt.py's flags in order
    (true: a bare flag), extra command-line flags follow, and Megatron's helper compile is skipped only when
    the prepared checkout holds the built helper."""
    megatron_run = _megatron_run_module()
    root = tmp_path / "checkout"
    datasets = root / "megatron" / "core" / "datasets"
    datasets.mkdir(parents=True)
    for folder in (root / "megatron", root / "megatron" / "core", datasets):
        (folder / "__init__.py").write_text("")
    (datasets / "utils.py").write_text(FAKE_UTILS)
    if built:
        (datasets / "helpers_cpp.cpython-312-x86_64-linux-gnu.so").write_bytes(b"")
    (root / "pretrain_gpt.py").write_text(FAKE_PRETRAIN)
    config = megatron_run.run_config("# header", "train-iters = 4\nbf16 = true\n")
    megatron_run.write_run(root / "runs" / "profile", config)
    launch = root / "runs" / "profile" / "launch.py"
    assert "runs/profile/launch.py" in launch.read_text()
    proc = subprocess.run(
        [sys.executable, str(launch), "--train-iters", "7"], cwd=root, capture_output=True, text=True, timeout=60
    )
    if not built:
        assert proc.returncode != 0 and "compile_helpers ran" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    argv = json.loads((root / "launched.json").read_text())["argv"]
    assert argv[0].endswith("pretrain_gpt.py")
    assert argv[1:5] == ["--transformer-impl", "local", "--num-layers", "3"]
    assert "--swiglu" in argv and argv[argv.index("--swiglu") + 1].startswith("--"), "true must be a bare flag"
    assert argv[-5:] == ["--train-iters", "4", "--bf16", "--train-iters", "7"], "extra flags must follow the config"


def test_megatron_run_config_refuses_malformed_toml():
    megatron_run = _megatron_run_module()
    with pytest.raises(Exception, match="Expected|Invalid|Unclosed"):
        megatron_run.run_config("# header", "train-iters = \n")


@pytest.mark.gpu
@pytest.mark.skipif(
    not cuda_and_megatron_source(),
    reason="GPU TESTS SKIPPED: Megatron's operate tasks need a CUDA GPU and ATEBENCH_SRC_MEGATRON (a clone of the pin)",
)
@pytest.mark.timeout(1200)
def test_megatron_operate_tasks_are_valid_on_a_gpu(tmp_path):
    """`validate --framework megatron --task operate --gpus 1` as a user runs it: oracle resolves, nop and wrong fail
    (records: docs/validation/2026-12-01-megatron-operate-h200.md, ...-megatron-getting-started-h200.md). On a host
    without network, getting-started's wheels come from $ATEBENCH_WHEELS (scripts/wheels_from_installed.py)."""
    proc = subprocess.run(
        [sys.executable, "runner.py", "validate", "--framework", "megatron", "--task", "operate", "--gpus", "1"]
        + ["--share-gpus", "6", "--parallel", "6", "--results-dir", str(tmp_path), "--run-id", "megatron-operate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert proc.returncode == 0 and "all tasks valid" in proc.stdout, (proc.stdout + proc.stderr)[-4000:]


@pytest.mark.parametrize(
    "task_id, checks", [("operate/routing-trace", "routing_checks.py"), ("operate/heavy-kernels", "kernel_checks.py")]
)
def test_every_variant_grades_with_the_tasks_one_copy_of_its_checks(task_id, checks):
    """The checks live once, in tasks/<task>/checks/ (grading.toml task_support): each variant places that one file
    beside its hidden tests, and keeps no check of its own but the fixture that computes its framework's reference."""
    task = specs.load_task(task_id)
    shared = task.dir / "checks" / checks
    check_names = {line[4:].split("(")[0] for line in shared.read_text().splitlines() if line.startswith("def test_")}
    for framework in task.frameworks():
        v = task.variant(framework)
        assert v.support_files()[f"grader_tests/{checks}"] == shared
        own = (v.tests_dir / f"test_{task_id.split('/')[1].replace('-', '_')}.py").read_text()
        assert not [name for name in check_names if f"def {name}(" in own], f"{framework} redefines a shared check"
        assert {
            f"grader_tests/{next(iter(v.tests_dir.glob('test_*.py'))).name}::{name}" for name in check_names
        } <= set(v.grading.fail_to_pass)


# ---- getting-started -----------------------------------------------------------------------------


def hidden_module(v: specs.TaskVariant):
    """The hidden test module itself (stdlib and pytest, the shared checks and the variant's helpers), for the
    constants it grades with; imported as the grader does, with its support files beside it."""
    folders = [str(v.tests_dir), *{str(path.parent) for path in v.support_files().values()}]
    sys.path[:0] = folders
    try:
        spec = importlib.util.spec_from_file_location(f"hidden_{v.framework}", v.tests_dir / "test_getting_started.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        del sys.path[: len(folders)]
    return module


def test_getting_started_spec_is_bare_and_grades_the_frameworks_requirements():
    v = variant(GETTING_STARTED)
    assert v.task.spec.resources.python == "bare" and v.task.spec.resources.gpus == 0
    assert not v.task.spec.measure_throughput
    assert "$ATEBENCH_WHEELS" in v.task.instruction_template and "setup_env.sh" in v.task.instruction_template
    pyproject = tomllib.loads((REPO / "reference_impl" / "pyproject.toml").read_text())
    declared = [re.split(r"[<>=!~ \[;]", req, maxsplit=1)[0] for req in pyproject["project"]["dependencies"]]
    assert list(hidden_module(v).REQUIREMENTS) == declared, "the hidden test must check reftrain's dependencies"
    ids = {t.split("::")[1] for t in v.grading.fail_to_pass}
    assert {f"test_the_requirement_imports_from_the_venv[{m}]" for m in declared} <= ids
    for rel in v.grading.restore_from_original:
        assert (REPO / "reference_impl" / rel).is_file(), f"restore_from_original names {rel}, not in reftrain"
    assert {"reftrain/train.py", hidden_module(v).EXAMPLE} <= set(v.grading.restore_from_original)


@pytest.mark.parametrize("name", ["reference", "torchtitan", "megatron"])
def test_getting_started_variants_grade_with_the_shared_checks(name):
    """The checks live once (checks/setup_checks.py, grading.toml task_support); a variant supplies only its
    requirements, its run and its log format, and checks its own prepared run; every shared check is graded."""
    task = specs.load_task(GETTING_STARTED)
    v = task.variant(name)
    shared = task.dir / "checks" / "setup_checks.py"
    assert v.support_files()["grader_tests/setup_checks.py"] == shared
    checks = {line[4:].split("(")[0] for line in shared.read_text().splitlines() if line.startswith("def test_")}
    own = (v.tests_dir / "test_getting_started.py").read_text()
    assert not [check for check in checks if f"def {check}(" in own], f"{name} redefines a shared check"
    graded = {t.split("::")[1].split("[")[0] for t in v.grading.fail_to_pass + v.grading.pass_to_pass}
    assert checks <= graded, f"shared checks not graded on {name}: {sorted(checks - graded)}"
    module = hidden_module(v)
    for fixture in ("requirement", "example_command", "step_line"):
        assert callable(getattr(module, fixture)), f"{name}'s hidden test defines no {fixture!r} fixture"


def test_getting_started_workspace_has_the_run_script_and_the_patches_write_only_setup_env(
    framework, module_cache, tmp_path
):
    v = variant(GETTING_STARTED)
    work = workspace.create_workspace(v, framework, tmp_path / "ws", module_cache)
    assert (work / "runs/getting-started/run.sh").read_text() == hidden_module(v).RUN_SH
    assert not (work / "setup_env.sh").exists() and not (work / ".venv").exists()
    assert not (work / "grader_tests").exists()
    for patch in (v.solution_patch, v.wrong_patch):
        assert patch_files(patch.read_text()) == ["setup_env.sh"], f"{patch.name} writes other files"
        proc = subprocess.run(["git", "apply", "--check", str(patch)], cwd=work, capture_output=True, text=True)
        assert proc.returncode == 0, f"{patch.name} no longer applies: {proc.stderr}"
    assert "--no-index" in v.solution_patch.read_text() and "-e ." in v.solution_patch.read_text()


def test_getting_started_on_torchtitan_grades_its_requirements_and_restores_pinned_files():
    """Without the source: the spec, its patches (setup_env.sh only), the requirements the hidden test checks
    (torch, triton, then the pinned pyproject's dependencies) and the restored paths at the pin."""
    v = specs.load_task(GETTING_STARTED).variant("torchtitan")
    for patch in (v.solution_patch, v.wrong_patch):
        assert patch_files(patch.read_text()) == ["setup_env.sh"], f"{patch.name} writes other files"
    assert "triton" in v.solution_patch.read_text() and "triton" not in v.wrong_patch.read_text().split("pip")[-1]
    spec = importlib.util.spec_from_file_location("example_run", v.tests_dir / "example_run.py")
    example_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example_run)
    requirements = hidden_module(v).REQUIREMENTS
    manifest_text = (REPO / "frameworks/torchtitan/source-manifest.txt").read_text()
    pinned_pyproject = "2a5b6a074f973c25392222fe5bc98d79c40caef04202c1007d8aee434d707a85  pyproject.toml"
    assert pinned_pyproject in manifest_text, "a new pin: check its pyproject.toml dependencies, then this digest"
    declared = ["torchdata", "datasets", "tokenizers", "tomli", "fsspec", "tyro", "tensorboard", "einops", "PIL"]
    assert list(requirements) == ["torch", "triton", *declared], "torchtitan v0.2.2's pyproject dependencies"
    ids = {t.split("::")[1] for t in v.grading.fail_to_pass}
    assert {f"test_the_requirement_imports_from_the_venv[{m}]" for m in requirements} <= ids
    manifest = (REPO / "frameworks/torchtitan/source-manifest.txt").read_text().split()
    missing = [rel for rel in v.grading.restore_from_original if rel not in manifest]
    assert not missing, f"restore_from_original names files not in TorchTitan at the pin: {missing}"
    assert {"torchtitan/train.py", "torchtitan/models/moe/kernels.py"} <= set(v.grading.restore_from_original)
    assert set(example_run.TEXT_FILES) == {"run.sh", "launch.py", "train.toml"}
    pinned = re.search(r'EXAMPLE_RUN_SHA256 = "(\w+)"', (v.dir / "prepare.py").read_text()).group(1)
    assert pinned == hashlib.sha256((v.tests_dir / "example_run.py").read_bytes()).hexdigest()


def test_getting_started_on_megatron_pins_its_run_and_grades_what_pretrain_gpt_imports():
    """Without the source: the patches write setup_env.sh only (the wrong one installs torch alone), the hidden test
    checks torch, numpy, packaging and einops, and prepare.py pins the run module and the launcher module."""
    v = specs.load_task(GETTING_STARTED).variant("megatron")
    for patch in (v.solution_patch, v.wrong_patch):
        assert patch_files(patch.read_text()) == ["setup_env.sh"], f"{patch.name} writes other files"
    assert "einops" in v.solution_patch.read_text().split("pip install")[-1]
    assert v.wrong_patch.read_text().rstrip().endswith('"$ATEBENCH_WHEELS" torch')
    module = hidden_module(v)
    assert module.REQUIREMENTS == ("torch", "numpy", "packaging", "einops")
    ids = {t.split("::")[1] for t in v.grading.fail_to_pass}
    assert {f"test_the_requirement_imports_from_the_venv[{m}]" for m in module.REQUIREMENTS} <= ids
    assert set(module.example_run.TEXT_FILES) == {"run.sh", "launch.py", "train.toml"}
    text = (v.dir / "prepare.py").read_text()
    for constant, path in (
        ("EXAMPLE_RUN_SHA256", v.tests_dir / "example_run.py"),
        ("MEGATRON_RUN_SHA256", REPO / "frameworks/megatron/grader_support/megatron_run.py"),
    ):
        assert f'{constant} = "{hashlib.sha256(path.read_bytes()).hexdigest()}"' in text, constant
    assert {"pretrain_gpt.py", "megatron/training/training.py"} <= set(v.grading.restore_from_original)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name, forgotten", [("reference", "tokenizers"), ("torchtitan", "triton")])
def test_getting_started_validates_end_to_end(name, forgotten, tmp_path):
    """runner.py validate: the oracle's setup_env.sh builds .venv offline in the bare grading sandbox and the
    run reaches step 5; the untouched checkout fails every promise; the wrong script installs torch but forgets
    a requirement (`forgotten`), which fails that import and the run. 1.5-2 minutes each on 2 cores, with the
    harness's cache: the framework's source, the wheel mirror of its packages (downloaded once) and the bare
    interpreter (made once) come from there."""
    try:  # the mirror the bare sandbox offers, made as validate makes it: a host without the registry cannot
        bare_python(name, specs.load_framework(name).sandbox.python_packages, log=lambda message: None)
    except SandboxError as error:
        if "could not download wheels" not in str(error):
            raise
        pytest.skip(f"OFFLINE HOST: {str(error).splitlines()[0]}")
    command = [sys.executable, "runner.py", "validate", "--framework", name, "--task", GETTING_STARTED]
    command += ["--results-dir", str(tmp_path / "results"), "--run-id", "v"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1700)
    assert proc.returncode == 0 and "all tasks valid" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    grades = {
        path.parents[1].name: json.loads(path.read_text())["grade"]
        for path in (tmp_path / "results" / "v").rglob("result.json")
    }
    wrong = {k.split("::")[1]: v for k, v in grades["wrong"]["fail_to_pass"].items()}
    assert wrong["test_the_requirement_imports_from_the_venv[torch]"] == "passed", "the wrong patch installs torch"
    assert wrong[f"test_the_requirement_imports_from_the_venv[{forgotten}]"] != "passed"
    assert wrong["test_the_example_run_reaches_step_5"] != "passed"
