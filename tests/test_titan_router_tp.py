"""fix-gradient-bug/router-tp-not-reduced on TorchTitan (2 GPUs): the spec, how a host with fewer GPUs skips it,
and, with the pinned source (a clone in ATEBENCH_SRC_TORCHTITAN, else the checked sdist), the prepared tree, the
gold (solution.patch, a backport of upstream #2416), the wrong edit on the gold; with TorchTitan's extra installed
(slow): the gold's modules importing on CPU, the hidden test ids collected on CPU, and the hidden checks' fail/pass
split on CPU with titan_cpu.py's attention shim (gloo). Grading itself needs 2 CUDA GPUs:
`python runner.py validate --framework torchtitan --task fix-gradient-bug/router-tp-not-reduced --gpus 2`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import original_or_skip, skip_without_titan_deps

from bench import gpu, grading, run, sources, specs, workspace
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
    return original_or_skip(framework, module_cache, "set ATEBENCH_SRC_TORCHTITAN to a clone, or reach PyPI")


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


@pytest.mark.slow  # imports TorchTitan: its extra is installed before CI's slow run
def test_the_golds_modules_import_on_cpu(gold_tree):
    skip_without_titan_deps()
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    # TMPDIR: importing torch._inductor makes a cache folder there
    env = {**os.environ, "PYTHONPATH": str(gold_tree), "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(gold_tree.parent)}
    proc = subprocess.run([sys.executable, "-c", code, *GOLD_IMPORTS], cwd=gold_tree, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    deepep = gold_tree / "torchtitan/models/moe/moe_deepep.py"
    compile(deepep.read_text(), str(deepep), "exec")


@pytest.mark.slow  # imports TorchTitan: its extra is installed before CI's slow run
def test_the_hidden_test_ids_are_grading_tomls(gold_tree, tmp_path):
    """Collected on CPU (the GPU checks skip there, but collect): exactly the ids grading.toml names."""
    skip_without_titan_deps()
    v = variant()
    tree = tmp_path / "tree"
    workspace.copy_clean(gold_tree, tree)
    grading.place_hidden_tests(v, tree)
    env = {**os.environ, "PYTHONPATH": str(tree), "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", "--rootdir=.",
         "grader_tests/test_router_tp.py"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    collected = set(re.findall(r"^(grader_tests/\S+::\S+)$", proc.stdout, re.M))
    assert collected == set(v.grading.fail_to_pass + v.grading.pass_to_pass), proc.stdout[-3000:]


def _graded_on_cpu(tree: Path, tmp_path: Path) -> dict:
    """The hidden checks on `tree` on CPU (gloo, ATEBENCH_TITAN_TP_ON_CPU=1: titan_cpu.py's attention shim), placed
    as grading places them; the verdict against grading.toml."""
    v = variant()
    grading.place_hidden_tests(v, tree)
    env = {**os.environ, "PYTHONPATH": str(tree), "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp_path),
           "ATEBENCH_TITAN_TP_ON_CPU": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--rootdir=.",
         "grader_tests/test_router_tp.py", "--junitxml=junit.xml"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert (tree / "junit.xml").is_file(), (proc.stdout + proc.stderr)[-3000:]
    grade = grading.verdict(
        grading.parse_junit((tree / "junit.xml").read_text()), v.grading.fail_to_pass, v.grading.pass_to_pass
    )
    return {"f2p": grade.fail_to_pass, "p2p": grade.pass_to_pass, "out": proc.stdout}


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_fail_pass_split_holds_on_cpu_with_the_attention_shim(
    framework, module_cache, original, gold_tree, tmp_path
):
    """Before a GPU run: the gold passes every check, the pristine tree (the nop) fails every fail-to-pass id and
    passes the pass-to-pass ones, and the wrong edit (the gate's gradient averaged over TP: equal on the ranks, half
    the value) fails the comparisons with one device, with TP on gloo and the attention on local heads."""
    skip_without_titan_deps()
    v = variant()
    prepared = workspace.prepared_checkout(v, framework, module_cache)
    trees = {"gold": gold_tree, "nop": prepared}
    trees["wrong"] = tmp_path / "wrong-src"
    workspace.copy_clean(prepared, trees["wrong"])
    subprocess.run(["git", "init", "-q"], cwd=trees["wrong"], check=True)
    (tmp_path / "wrong.patch").write_text(sources.wrong_solution(v, prepared, original))
    subprocess.run(["git", "apply", str(tmp_path / "wrong.patch")], cwd=trees["wrong"], check=True)
    for name, source in trees.items():
        tree = tmp_path / name
        workspace.copy_clean(source, tree)
        result = _graded_on_cpu(tree, tmp_path)
        passing = {t for t, outcome in {**result["f2p"], **result["p2p"]}.items() if outcome == "passed"}
        print("\n".join(f"{name}: {line}" for line in result["out"].splitlines() if "measured:" in line))
        if name == "gold":
            assert passing == set(result["f2p"]) | set(result["p2p"]), (name, result)
        elif name == "nop":
            assert passing == set(result["p2p"]), (name, result)
        else:
            against_one = {t for t in result["f2p"] if "equals_one_gpu" in t}
            assert set(result["p2p"]) <= passing and not against_one & passing, (name, result)
