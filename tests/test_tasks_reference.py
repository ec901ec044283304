"""The task families on the reference framework: specs, preparation hygiene, patches, and end to end.

Everything runs for real: each task's prepare.py on a copy of reference_impl, the harness's workspace
(one baseline commit), `git apply` of the gold and wrong patches, and the CLI running the oracle and
nop agents with grading by the hidden tests. The end-to-end runs of the slower families are marked
`slow` (`-m "not slow"` leaves about three minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bench import specs, workspace

REPO = Path(__file__).resolve().parents[1]

REMOVED_CODE = {
    "add-new-model/mixtral": [
        "class MixtralSparseMoeBlock(nn.Module):",
        '"mixtral": ("block_sparse_moe", "w1", "w3", "w2")',
    ],
    "add-new-model/qwen3_moe": [
        "class Qwen3MoeSparseMoeBlock(nn.Module):",
        '"qwen3_moe": ("mlp", "gate_proj", "up_proj", "down_proj")',
    ],
    "add-new-model/deepseek_v2": [
        "class DeepseekV2Attention(nn.Module):",
        '"deepseek_v2": ("mlp", "gate_proj", "up_proj", "down_proj")',
    ],
    "enable-ep": [
        "dist.all_to_all_single(out, x.contiguous(), output_splits, input_splits, group=group)",
        "def shard_experts(",
    ],
    "fix-gradient-bug/router-grad-not-reduced": [
        "        fully_shard(layer, mesh=mesh.dp_ep_mesh, mp_policy=policy)\n"
    ],
    "fix-gradient-bug/loss-normalised-per-rank": ["count_tokens(labels, pm.mesh.dp_ep_group)"],
    "fix-gradient-bug/alltoall-backward-scaled": ["        return grad_in, None, None, None\n"],
    "fix-gradient-bug/grad-norm-local": ["        dist.all_reduce(sq)\n"],
}
"""Per task: text of the original code that preparation removes or breaks; none of it may be left anywhere
in the agent's workspace (no cached copy, no doc quoting it)."""

FAMILIES = {
    "add-new-model": ["add-new-model/deepseek_v2", "add-new-model/mixtral", "add-new-model/qwen3_moe"],
    "enable-ep": ["enable-ep"],
    "fix-gradient-bug": [
        "fix-gradient-bug/alltoall-backward-scaled",
        "fix-gradient-bug/grad-norm-local",
        "fix-gradient-bug/loss-normalised-per-rank",
        "fix-gradient-bug/router-grad-not-reduced",
    ],
}

ANCHOR_BREAKS = {
    "add-new-model/mixtral": (
        "reftrain/models/__init__.py",
        '    "mixtral": (MixtralConfig, MixtralForCausalLM),\n',
        '    "mixtral": (MixtralConfig,  MixtralForCausalLM),\n',
    ),
    "enable-ep": (
        "reftrain/train.py",
        "    shard_experts(model, mesh.ep_mesh)\n",
        "    shard_experts(model, mesh.ep_mesh)  # by rank\n",
    ),
    "fix-gradient-bug/grad-norm-local": (
        "reftrain/optim.py",
        "        dist.all_reduce(sq)\n",
        "        dist.all_reduce(sq, op=dist.ReduceOp.SUM)\n",
    ),
}
"""One task per family: a harmless edit of the original that moves an anchor its prepare.py relies on."""

END_TO_END = {
    "fix-gradient-bug/grad-norm-local": [pytest.mark.slow],
    "add-new-model/mixtral": [pytest.mark.slow],
    "enable-ep": [pytest.mark.slow],
}

TASKS = sorted(REMOVED_CODE)
CACHE_FILES = ("__pycache__", ".pyc", ".egg-info", ".pytest_cache", ".mypy_cache", ".ruff_cache")


@pytest.fixture(scope="module")
def framework():
    return specs.load_framework("reference")


def variant(task_id: str) -> specs.TaskVariant:
    return specs.load_task(task_id).variant("reference")


def fresh_workspace(task_id: str, framework, cache: Path, dest: Path) -> Path:
    return workspace.create_workspace(variant(task_id), framework, dest, cache)


def all_text(tree: Path) -> dict[str, str]:
    return {
        p.relative_to(tree).as_posix(): p.read_text(errors="replace")
        for p in tree.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(tree).parts
    }


# ---- specs and selection ------------------------------------------------------------------------


def on_reference(task_ids: list[str]) -> list[str]:
    """Tasks with a reference version; other frameworks' tasks (tests/test_torchtitan_tasks.py) are not ours."""
    return [t for t in task_ids if "reference" in specs.load_task(t).frameworks()]


def test_every_task_of_the_families_is_listed_and_covered_here():
    ours = sorted(on_reference([t for t in specs.list_tasks() if t.split("/")[0] in FAMILIES]))
    assert ours == TASKS, "a task was added or removed: update REMOVED_CODE and FAMILIES"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_name_selects_every_task_of_the_family(family):
    assert on_reference(specs.select_tasks(family)) == FAMILIES[family]
    for task_id in FAMILIES[family]:
        assert specs.select_tasks(task_id) == [task_id]
        assert specs.load_task(task_id).family == family


@pytest.mark.parametrize("task_id", TASKS)
def test_spec_declares_gpu_ladder_hidden_and_restored_tests_and_a_wrong_patch(task_id):
    v = variant(task_id)
    assert v.task.spec.resources.gpu_ladder == [1, 2, 4]
    assert v.task.spec.grading.timeout_s <= 420, "keep grading short: select a test subset"
    assert v.solution_patch is None, "the original checkout is the gold solution"
    assert v.wrong_patch is not None and v.prepare_script is not None
    assert not v.tests_dir.is_dir() or v.grading.tests_target == "grader_tests"
    f2p, p2p = v.grading.fail_to_pass, v.grading.pass_to_pass
    assert f2p and not set(f2p) & set(p2p) and len(set(f2p)) == len(f2p)
    restored = v.grading.restore_from_original
    assert restored, "grade with the framework's own tests (restore_from_original), not copies of them"
    for test_id in f2p + p2p + v.grading.gpu_fail_to_pass:
        path = test_id.split("::")[0]
        hidden = path.startswith("grader_tests/") and (v.tests_dir / path.removeprefix("grader_tests/")).is_file()
        assert hidden or path in restored, f"{test_id}: neither a hidden test file nor restored from the original"
    assert v.grading.gpu_fail_to_pass and all("world{n}" in t for t in v.grading.gpu_fail_to_pass)
    own_tests = {p.name for p in (REPO / "reference_impl" / "tests").iterdir()}
    copies = [p.name for p in v.tests_dir.rglob("*") if p.name in own_tests] if v.tests_dir.is_dir() else []
    assert copies == [], f"copies of the framework's own tests: {copies}; list them in restore_from_original"
    assert "{framework}" in v.task.instruction_template


# ---- preparation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", TASKS)
def test_prepared_workspace_keeps_no_trace_of_the_original_code(task_id, framework, module_cache, tmp_path):
    original = all_text(workspace.original_source(framework, module_cache))
    for line in REMOVED_CODE[task_id]:
        assert any(line in text for text in original.values()), f"{line!r} is not in reftrain: update REMOVED_CODE"

    work = fresh_workspace(task_id, framework, module_cache, tmp_path / "ws")
    commits = subprocess.run(["git", "rev-list", "--count", "HEAD"], cwd=work, capture_output=True, text=True)
    assert commits.stdout.strip() == "1", "exactly one baseline commit, no history to mine"
    leftovers = [
        p.relative_to(work).as_posix()
        for p in work.rglob("*")
        if ".git" not in p.relative_to(work).parts and any(p.name.endswith(c) for c in CACHE_FILES)
    ]
    assert leftovers == []
    assert not (work / "grader_tests").exists(), "hidden tests must stay outside the sandbox"
    for path, text in all_text(work).items():
        for line in REMOVED_CODE[task_id]:
            assert line not in text, f"{path} still holds {line!r}"


@pytest.mark.parametrize("task_id", sorted(ANCHOR_BREAKS))
def test_prepare_fails_loudly_when_an_anchor_moved(task_id, framework, module_cache, tmp_path):
    tree = tmp_path / "tree"
    workspace.copy_clean(workspace.original_source(framework, module_cache), tree)
    rel, old, new = ANCHOR_BREAKS[task_id]
    text = (tree / rel).read_text()
    assert text.count(old) == 1
    (tree / rel).write_text(text.replace(old, new))
    proc = subprocess.run(
        [sys.executable, str(variant(task_id).prepare_script), str(tree)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert rel in proc.stderr and "update this prepare.py" in proc.stderr


@pytest.mark.parametrize("task_id", TASKS)
def test_gold_and_wrong_patches_apply_and_leave_hidden_tests_alone(task_id, framework, module_cache, tmp_path):
    v = variant(task_id)
    work = fresh_workspace(task_id, framework, module_cache, tmp_path / "ws")
    gold = tmp_path / "gold.patch"
    gold.write_text(workspace.gold_patch(v, framework, module_cache))
    wrong = v.wrong_patch.read_text()
    assert "grader_tests/" not in gold.read_text() and wrong != gold.read_text()
    for patch in (gold, v.wrong_patch):
        proc = subprocess.run(["git", "apply", "--check", str(patch)], cwd=work, capture_output=True, text=True)
        assert proc.returncode == 0, f"{patch.name} no longer applies: {proc.stderr} (regenerate it from the gold diff)"


# ---- end to end through the CLI ------------------------------------------------------------------


@pytest.mark.timeout(900)
@pytest.mark.parametrize("task_id", [pytest.param(t, marks=m) for t, m in END_TO_END.items()])
def test_oracle_resolves_and_nop_fails_for_the_right_reason(task_id, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "runner.py",
            "--task",
            task_id,
            "--framework",
            "reference",
            "--agent",
            "oracle,nop",
            "--no-throughput",
            "--results-dir",
            str(tmp_path / "results"),
            "--run-id",
            "e2e",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**_env(), "ATEBENCH_CACHE": str(tmp_path / "cache")},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    by_agent = {}
    for path in (tmp_path / "results" / "e2e").rglob("result.json"):
        result = json.loads(path.read_text())
        by_agent[result["agent"]] = result
    assert by_agent["oracle"]["status"] == "resolved", by_agent["oracle"].get("error")
    nop = by_agent["nop"]
    assert nop["status"] == "unresolved", nop.get("error")
    grading = tomllib.loads((variant(task_id).dir / "grading.toml").read_text())
    assert set(nop["grade"]["fail_to_pass"]) == set(grading["fail_to_pass"])
    assert all(v != "passed" for v in nop["grade"]["fail_to_pass"].values()), "a F2P test passes without a fix"
    assert all(v == "passed" for v in nop["grade"]["pass_to_pass"].values()), "the prepared checkout broke P2P tests"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ATEBENCH_")}
