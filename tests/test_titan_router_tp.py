"""fix-gradient-bug/router-tp-not-reduced on TorchTitan (2 GPUs): the spec, how a host with fewer GPUs skips it,
and, with the pinned source (ATEBENCH_SRC_TORCHTITAN, a clone of the pin; skipped without it), the prepared tree,
the gold (solution.patch, a backport of upstream #2416), the wrong edit on the gold, the gold's modules importing on
CPU, and the hidden test ids collected on CPU (where every GPU check skips). Grading itself needs 2 CUDA GPUs:
`python runner.py validate --framework torchtitan --task fix-gradient-bug/router-tp-not-reduced --gpus 2`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import original_or_skip

from bench import gpu, run, sources, specs, workspace
from bench.agents import AgentOptions, make_specs

TASK = "fix-gradient-bug/router-tp-not-reduced"
REPO = Path(__file__).resolve().parents[1]
GOLD_FILES = [  # what the backport changes (grading.toml explains each)
    "torchtitan/distributed/__init__.py",
    "torchtitan/distributed/expert_parallel.py",
    "torchtitan/models/gpt_oss/infra/parallelize.py",
    "torchtitan/models/llama4/infra/parallelize.py",
    "torchtitan/models/moe/moe.py",
    "torchtitan/models/moe/moe_deepep.py",
]
GOLD_IMPORTS = [  # moe_deepep.py needs the deep_ep package even pristine: it is compiled, not imported
    "torchtitan.distributed",
    "torchtitan.distributed.expert_parallel",
    "torchtitan.models.moe.moe",
    "torchtitan.models.llama4.infra.parallelize",
    "torchtitan.models.qwen3.infra.parallelize",
    "torchtitan.models.deepseek_v3.infra.parallelize",
    "torchtitan.models.gpt_oss.infra.parallelize",
    "torchtitan.experiments.transformers_modeling_backend.infra.parallelize",
]


def variant() -> specs.TaskVariant:
    return specs.load_task(TASK).variant("torchtitan")


def test_the_task_exists_for_torchtitan_only_and_holds_two_gpus():
    task = specs.load_task(TASK)
    assert task.frameworks() == ["torchtitan"]
    assert gpu.gpus_per_trial(specs.load_framework("torchtitan"), task.spec) == 2


def test_spec_ships_a_gold_patch_a_wrong_edit_of_it_and_hidden_tests_only():
    v = variant()
    assert v.prepare_script is not None and v.solution_patch is not None
    assert v.wrong_patch is not None and v.wrong_patch.name.endswith(sources.ON_GOLD_SUFFIX)
    assert v.grading.tests_target == "grader_tests" and v.grading.fail_to_pass and v.grading.pass_to_pass
    hidden = set(v.hidden_test_paths())
    assert {"grader_tests/titan_case.py", "grader_tests/titan_tp_layout.py"} <= hidden
    for test_id in v.grading.fail_to_pass + v.grading.pass_to_pass:
        assert test_id.split("::")[0] in hidden, test_id
    assert "CUDA_VISIBLE_DEVICES" not in v.grading.command, "this grader runs on the GPUs; it must not hide them"
    assert "{framework}" in v.task.instruction_template


@pytest.mark.parametrize("gpus, reason", [([], "needs 2 GPU(s), this machine has 0"), ([0], "has 1")])
def test_a_host_with_fewer_than_two_gpus_skips_the_task_with_one_line(monkeypatch, gpus, reason):
    monkeypatch.setattr(run, "detect_gpus", lambda: list(gpus))
    cfg = run.RunConfig(task="all", framework="torchtitan", agents=["oracle"], trials=1, run_id="plan", isolate=False)
    plan = run.make_plan(cfg, make_specs(["oracle"], AgentOptions()))
    lines = [line for line in plan.skipped if line.startswith(f"skipping {TASK} on torchtitan:")]
    assert len(lines) == 1 and reason in lines[0], lines
    assert any(t.framework.name == "torchtitan" for t in plan.trials), "the CPU TorchTitan tasks still run"


def test_validate_of_this_task_on_a_cpu_host_says_it_needs_two_gpus(monkeypatch):
    monkeypatch.setattr(run, "detect_gpus", lambda: [])
    cfg = run.RunConfig(task=TASK, framework="torchtitan", agents=["oracle"], trials=1, run_id="plan", isolate=False)
    with pytest.raises(run.RunError, match="framework 'torchtitan' cannot run here: needs 2 GPU"):
        run.make_plan(cfg, make_specs(["oracle"], AgentOptions()))


# ---- on the pinned source ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def framework():
    return specs.load_framework("torchtitan")


@pytest.fixture(scope="module")
def original(framework, module_cache) -> Path:
    if not os.environ.get("ATEBENCH_SRC_TORCHTITAN"):
        pytest.skip("set ATEBENCH_SRC_TORCHTITAN to a clone of TorchTitan's pin (v0.2.2) to prepare this task")
    return original_or_skip(framework, module_cache, "ATEBENCH_SRC_TORCHTITAN must name a clone of the pin")


@pytest.fixture(scope="module")
def gold_tree(framework, module_cache, original, tmp_path_factory) -> Path:
    """The prepared tree with solution.patch applied (git apply, as the oracle does)."""
    prepared = workspace.prepared_checkout(variant(), framework, module_cache)
    tree = tmp_path_factory.mktemp("gold") / "tree"
    workspace.copy_clean(prepared, tree)
    subprocess.run(["git", "init", "-q"], cwd=tree, check=True)
    proc = subprocess.run(["git", "apply", str(variant().solution_patch)], cwd=tree, capture_output=True, text=True)
    assert proc.returncode == 0, f"solution.patch does not apply to the prepared tree: {proc.stderr[-2000:]}"
    return tree


def test_the_prepared_tree_is_the_pristine_pin_and_the_gold_and_wrong_edits_apply(framework, module_cache, original):
    v = variant()
    prepared = workspace.prepared_checkout(v, framework, module_cache)
    assert not (prepared / "grader_tests").exists()
    for rel in GOLD_FILES:  # nothing injected: the bug is the pin's own
        assert (prepared / rel).read_bytes() == (original / rel).read_bytes(), rel
    gold = workspace.gold_patch(v, framework, module_cache)
    changed = sorted({line[6:] for line in gold.splitlines() if line.startswith("+++ b/")})
    assert changed == GOLD_FILES, changed
    wrong = sources.wrong_solution(v, prepared, original)
    assert wrong.strip() and wrong != gold and "grader_tests/" not in gold + wrong


def test_the_golds_modules_import_on_cpu(gold_tree):
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    # TMPDIR: importing torch._inductor makes a cache folder there
    env = {**os.environ, "PYTHONPATH": str(gold_tree), "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(gold_tree.parent)}
    proc = subprocess.run([sys.executable, "-c", code, *GOLD_IMPORTS], cwd=gold_tree, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    deepep = gold_tree / "torchtitan/models/moe/moe_deepep.py"
    compile(deepep.read_text(), str(deepep), "exec")


def test_the_hidden_test_ids_are_grading_tomls(gold_tree, tmp_path):
    """Collected on CPU (the GPU checks skip there, but collect): exactly the ids grading.toml names."""
    v = variant()
    tree = tmp_path / "tree"
    workspace.copy_clean(gold_tree, tree)
    for rel, source in {**{p: v.tests_dir / Path(p).relative_to("grader_tests") for p in v.hidden_test_paths()
                           if (v.tests_dir / Path(p).relative_to("grader_tests")).is_file()},
                        **v.support_files()}.items():  # fmt: skip
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(Path(source).read_bytes())
    env = {**os.environ, "PYTHONPATH": str(tree), "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", "--rootdir=.",
         "grader_tests/test_router_tp.py"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    collected = set(re.findall(r"^(grader_tests/\S+::\S+)$", proc.stdout, re.M))
    assert collected == set(v.grading.fail_to_pass + v.grading.pass_to_pass), proc.stdout[-3000:]
