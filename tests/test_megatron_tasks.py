"""Megatron-LM's build tasks (enable-ep, the four fix-gradient-bug injections): specs, the 2-GPU requirement and
how a host with fewer GPUs skips them, the pure parts of the shared machinery (frameworks/megatron/grader_support/
megatron_parallel.py, on CPU torch), and preparation on the pinned source (ATEBENCH_SRC_MEGATRON, a clone of the
pin; skipped without it). Grading itself needs 2 CUDA GPUs: docs/frameworks/megatron.md has the commands."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import original_or_skip

from bench import gpu, run, sources, specs, workspace
from bench.agents import AgentOptions, make_specs

REPO = Path(__file__).resolve().parents[1]
SUPPORT = REPO / "frameworks" / "megatron" / "grader_support"
TASKS = [
    "enable-ep",
    "fix-gradient-bug/alltoall-backward-scaled",
    "fix-gradient-bug/router-grad-not-reduced",
    "fix-gradient-bug/loss-normalised-per-rank",
    "fix-gradient-bug/grad-norm-local",
]
INJECTED = {  # the one file each fix-gradient-bug prepare step edits (besides the dataset helper it builds)
    "fix-gradient-bug/alltoall-backward-scaled": "megatron/core/tensor_parallel/mappings.py",
    "fix-gradient-bug/router-grad-not-reduced": "megatron/core/transformer/moe/router.py",
    "fix-gradient-bug/loss-normalised-per-rank": "megatron/core/distributed/finalize_model_grads.py",
    "fix-gradient-bug/grad-norm-local": "megatron/core/optimizer/__init__.py",
}


def variant(task_id: str) -> specs.TaskVariant:
    return specs.load_task(task_id).variant("megatron")


@pytest.fixture(scope="module")
def mp():
    sys.path.insert(0, str(SUPPORT))
    try:
        import megatron_parallel
    finally:
        sys.path.remove(str(SUPPORT))
    return megatron_parallel


# ---- specs ----------------------------------------------------------------------------------------------


def test_every_megatron_build_task_is_listed():
    assert set(TASKS) <= {t for t in specs.list_tasks() if "megatron" in specs.load_task(t).frameworks()}


@pytest.mark.parametrize("task_id", TASKS)
def test_megatron_holds_two_gpus_where_the_other_frameworks_hold_none(task_id):
    task = specs.load_task(task_id)
    assert gpu.gpus_per_trial(specs.load_framework("megatron"), task.spec) == 2
    for name in task.frameworks():
        if name != "megatron":
            assert gpu.gpus_per_trial(specs.load_framework(name), task.spec) == 0, name


@pytest.mark.parametrize("task_id", TASKS)
def test_spec_grades_hidden_and_restored_tests_and_ships_a_wrong_edit_of_the_gold(task_id):
    v = variant(task_id)
    assert v.prepare_script is not None and v.solution_patch is None
    assert v.wrong_patch is not None and v.wrong_patch.name.endswith(sources.ON_GOLD_SUFFIX)
    assert v.grading.tests_target == "grader_tests" and not v.grading.gpu_fail_to_pass
    assert "grader_support/megatron_parallel.py" in v.grading.support
    hidden = set(v.hidden_test_paths())
    for test_id in v.grading.fail_to_pass + v.grading.pass_to_pass:
        path = test_id.split("::")[0]
        assert path in hidden or path in v.grading.restore_from_original, test_id
    assert "- Megatron-LM:" in v.task.instruction_template


@pytest.mark.parametrize("gpus, reason", [([], "needs 2 GPU(s), this machine has 0"), ([0], "has 1")])
def test_a_host_with_fewer_than_two_gpus_skips_each_task_with_one_line(monkeypatch, gpus, reason):
    """`--framework all` keeps Megatron's Q&A tasks (no GPU) and names every 2-GPU task it leaves out."""
    monkeypatch.setattr(run, "detect_gpus", lambda: list(gpus))
    cfg = run.RunConfig(task="all", framework="all", agents=["oracle"], trials=1, run_id="plan", isolate=False)
    plan = run.make_plan(cfg, make_specs(["oracle"], AgentOptions()))
    for task_id in TASKS:
        lines = [line for line in plan.skipped if line.startswith(f"skipping {task_id} on megatron:")]
        assert len(lines) == 1 and reason in lines[0], (task_id, lines)
    assert any(t.framework.name == "megatron" for t in plan.trials), "Megatron's Q&A tasks still run"


@pytest.mark.parametrize("executor", ["local", "slurm"])
def test_gpus_below_what_a_task_needs_skips_it_with_one_line(monkeypatch, executor):
    """`--gpus 1` on a host with one GPU: Megatron's 2-GPU tasks would run with their 2-GPU checks skipped (and a
    validation call them invalid); they are left out, named, and the 1-GPU tasks run."""
    monkeypatch.setattr(run, "detect_gpus", lambda: [0])
    cfg = run.RunConfig(
        task="all", framework="megatron", agents=["oracle"], run_id="plan", isolate=False, gpus=1, executor=executor
    )
    plan = run.make_plan(cfg, make_specs(["oracle"], AgentOptions()))
    for task_id in TASKS:
        lines = [line for line in plan.skipped if line.startswith(f"skipping {task_id} on megatron:")]
        assert lines == [f"skipping {task_id} on megatron: needs 2 GPU(s) a trial, --gpus gives it 1"], lines
    assert {t.variant.task.id for t in plan.trials} >= {"add-new-model/mixtral", "operate/routing-trace"}


def test_validate_on_a_cpu_host_says_megatron_needs_two_gpus(monkeypatch):
    monkeypatch.setattr(run, "detect_gpus", lambda: [])
    cfg = run.RunConfig(
        task="enable-ep", framework="megatron", agents=["oracle"], trials=1, run_id="plan", isolate=False
    )
    with pytest.raises(run.RunError, match="framework 'megatron' cannot run here: needs 2 GPU"):
        run.make_plan(cfg, make_specs(["oracle"], AgentOptions()))


# ---- the machinery's pure parts ---------------------------------------------------------------------------


def test_an_experts_global_name_is_its_index_over_all_ranks(mp):
    local = "decoder.layers.1.mlp.experts.local_experts.2.linear_fc1.weight"
    assert mp.global_name(local, 0, 4) == local
    assert mp.global_name(local, 1, 4) == "decoder.layers.1.mlp.experts.local_experts.6.linear_fc1.weight"
    assert mp.global_name("decoder.layers.1.mlp.router.weight", 1, 4) == "decoder.layers.1.mlp.router.weight"


def test_a_parameters_values_depend_on_its_name_and_shape_only(mp):
    a = mp.global_value("decoder.layers.1.mlp.router.weight", [8, 64])
    assert torch.equal(a, mp.global_value("decoder.layers.1.mlp.router.weight", [8, 64]))
    assert not torch.equal(a, mp.global_value("decoder.layers.2.mlp.router.weight", [8, 64]))
    assert abs(a.std().item() - 0.02) < 0.005
    assert abs(mp.global_value("decoder.final_layernorm.weight", [64]).mean().item() - 1) < 0.05


def test_tensor_parallel_slices_merge_back_and_differing_replicas_are_named(mp):
    full = torch.arange(24.0).reshape(4, 6)
    shards = [(1, rank, 2) for rank in range(2)]
    records = [
        {"grads": {"w": mp.local_slice(full, s), "norm": torch.ones(3)}, "layout": {"w": s, "norm": None}}
        for s in shards
    ]
    merged, mismatches = mp.merge(records)
    assert torch.equal(merged["w"], full) and not mismatches
    records[1]["grads"]["norm"] = torch.full((3,), 0.5)
    _, mismatches = mp.merge(records)
    assert len(mismatches) == 1 and mismatches[0].startswith("norm: rank 1")
    _, mismatches = mp.merge(records[:1])
    assert any("no rank holds some of its 2 shards" in line for line in mismatches)


def test_comparisons_accept_rounding_and_name_what_differs(mp):
    want = {"a": torch.ones(4), "b": torch.zeros(2)}
    worst, _, problems = mp.worst_relative({"a": torch.ones(4) * (1 + 1e-7), "b": torch.zeros(2)}, want)
    assert worst < 1e-6 and not problems
    worst, where, _ = mp.worst_relative({"a": torch.ones(4) / 2, "b": torch.zeros(2)}, want)
    assert where == "a" and worst == pytest.approx(0.5)
    _, _, problems = mp.worst_relative({"a": torch.ones(3)}, want)
    assert problems == ["b: only in the reference", "a: shape (3,), reference (4,)"]
    reference = {0: [{"iteration": 1, "lm loss": 10.0, "grad norm": 2.0}]}
    run = {
        0: [{"iteration": 1, "lm loss": 10.0, "grad norm": 2.0}],
        1: [{"iteration": 1, "lm loss": 10.0, "grad norm": 1.5}],
    }
    assert mp.metric_mismatches(run, reference, "lm loss", 1e-5) == []
    assert mp.metric_mismatches(run, reference, "grad norm", 1e-5) == [
        "rank 1 iteration 1: grad norm 1.5, reference 2.0"
    ]


def test_padding_is_uneven_between_the_data_parallel_ranks_and_keeps_loss_tokens(mp):
    lengths = [mp.pad_length(i, 64) for i in range(8)]
    assert all(1 <= n <= 32 for n in lengths)
    assert sum(lengths[i] for i in (0, 1, 4, 5)) != sum(lengths[i] for i in (2, 3, 6, 7))  # rank 0 / 1 at dp = 2


def test_a_run_that_kept_megatrons_own_weights_is_a_failure_that_names_the_hook(mp):
    # the layouts compare runs from the grader's weights; a run whose hook never filled them (Megatron built its
    # optimizer some other way) must fail, not compare Megatron's layout-dependent initialisations
    assert mp.Run("dp2", 0, "").failure() == ""
    message = mp.Run("ep2", 0, "", unfilled=[0, 1]).failure()
    assert "ep2" in message and "[0, 1]" in message and "get_megatron_optimizer" in message
    assert mp.Run("ep2", 1, "Traceback (most recent call last):\nboom").failure().startswith("ep2 exited 1")


def test_flags_become_pretrain_gpts_command_line(mp):
    assert mp.flag_list({"bf16": True, "fp16": False, "lr": 1e-4, "load": None}) == ["--bf16", "--lr", "0.0001"]
    argv = mp.flag_list(mp.BASE_FLAGS)
    assert "--transformer-impl" in argv and "--deterministic-mode" in argv and "--swiglu" not in argv


# ---- preparation on the pinned source ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def framework():
    return specs.load_framework("megatron")


@pytest.fixture(scope="module")
def original(framework, module_cache) -> Path:
    if not shutil.which("g++") or importlib.util.find_spec("pybind11") is None:
        pytest.skip("preparing a Megatron task builds its dataset helper: needs g++ and pybind11 here")
    return original_or_skip(framework, module_cache, "set ATEBENCH_SRC_MEGATRON to a clone of the pin")


@pytest.mark.parametrize("task_id", TASKS)
def test_prepared_tree_restores_only_untouched_files_and_the_wrong_edit_applies(
    task_id, framework, module_cache, original
):
    v = variant(task_id)
    prepared = workspace.prepared_checkout(v, framework, module_cache)
    assert not (prepared / "grader_tests").exists()
    assert list((prepared / "megatron/core/datasets").glob("helpers_cpp*.so")), "the dataset helper is not built"
    for rel in v.grading.restore_from_original:  # Megatron's own tests may be trimmed; its code must be untouched,
        if not rel.startswith("tests/"):  # or restoring it would hand the agent what it was meant to write
            assert (prepared / rel).read_bytes() == (original / rel).read_bytes(), rel
    gold = workspace.gold_patch(v, framework, module_cache)
    wrong = sources.wrong_solution(v, prepared, original)
    assert gold.strip() and wrong.strip() and gold != wrong and "grader_tests/" not in gold + wrong
    if task_id in INJECTED:
        changed = sorted({line[6:] for line in gold.splitlines() if line.startswith("+++ b/")})
        assert changed == [INJECTED[task_id]], changed


def test_the_pins_pretrain_path_goes_through_what_the_hooks_wrap(original):
    # pretrain_gpt.py at the pin builds its model through a config container's builder, never through
    # training.get_model (a hook there never ran: measured on two H200s); the weights hook wraps
    # training.get_megatron_optimizer, looked up in the module when setup_model_and_optimizer calls it
    training = (original / "megatron/training/training.py").read_text()
    setup = training[training.index("def setup_model_and_optimizer(") :]
    setup = setup[: setup.index("\ndef ")]
    assert "optimizer = get_megatron_optimizer(\n            config,\n            model," in setup
    assert "from megatron.core.optimizer import" in training and "get_megatron_optimizer" in training
    assert "train_step(" in training[training.index("def train(") :]
    norm = (original / "megatron/core/transformer/torch_norm.py").read_text()
    assert "class WrappedTorchNorm" in norm and "sequence parallel not supported by torch LayerNorm" in norm


def test_enable_ep_removes_the_dispatcher_and_refuses_ep_above_one(framework, module_cache, original):
    prepared = workspace.prepared_checkout(variant("enable-ep"), framework, module_cache)
    dispatcher = (prepared / "megatron/core/transformer/moe/token_dispatcher.py").read_text()
    assert "MoEAlltoAllTokenDispatcher" not in dispatcher and "class MoEAllGatherTokenDispatcher" in dispatcher
    refusal = "expert parallelism is not supported; set it to 1"
    assert refusal in (prepared / "megatron/core/transformer/moe/moe_layer.py").read_text()
    assert refusal in (prepared / "megatron/training/arguments.py").read_text()
    assert not (prepared / "tests/unit_tests/transformer/moe/test_a2a_token_dispatcher.py").exists()
    assert '"alltoall"' not in (prepared / "tests/unit_tests/transformer/moe/test_moe_layer.py").read_text()
    assert "def all_to_all(" in (prepared / "megatron/core/tensor_parallel/mappings.py").read_text()
