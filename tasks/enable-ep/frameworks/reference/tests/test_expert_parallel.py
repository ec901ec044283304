"""Expert parallelism through reftrain's public config, launch and ladder API (hidden grader tests).

Nothing here names how the experts are dispatched: the checks read what a user can observe. With
`parallel.ep = 2` each rank must hold only its contiguous half of every layer's experts (read from
the parameters on each rank), route exactly the tokens a single-device run routes, match the eager
single-device reference in loss and every parameter's gradient (the ladder), and train from a config.
"""

import pytest
import torch
import torch.distributed as dist

from reftrain.config import PACKAGE_ROOT
from reftrain.models import build_model
from reftrain.moe import GroupedExperts
from reftrain.parallel.mesh import init_mesh
from reftrain.testing import LadderCase, ladder_rungs, random_batch, run_distributed, train_records

CONFIG = str(PACKAGE_ROOT / "examples" / "tiny_qwen3_moe.toml")
GPU_TOLERANCES = dict(dtype="bfloat16", loss_rtol=2e-2, loss_atol=2e-2, grad_tol=5e-2)
"""As the framework's GPU ladder: bf16 autocast + bf16 FSDP compute vs an fp32 reference."""
GPU_EP_LAYOUTS = {1: [(1, 1, 1)], 2: [(1, 1, 2)], 4: [(2, 1, 2), (1, 2, 2)]}
"""(pp, dp, ep) per GPU count: one GPU can only smoke-test the plain layout; from two on, ep = 2."""
SMALL = [
    "--training.steps=3",
    "--data.source=synthetic",
    "--data.seq_len=16",
    "--data.global_batch_size=8",
    "--data.micro_batch_size=2",
    "--training.dtype=float32",
    "--training.device=cpu",
]


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def _parallel_model(case: LadderCase):
    from reftrain.train import build_parallel_model

    mesh = init_mesh(case.pp, case.dp, case.ep, "cpu")
    return build_parallel_model(case.config(), mesh, torch.device("cpu"))


def _full_model(case: LadderCase):
    model = build_model(case.config().hf_config_dict(), device="meta")
    model.to_empty(device="cpu")
    model.init_weights(case.seed)
    return model


def expert_shares(model_type: str) -> list[dict]:
    """On this rank: for every MoE layer, how many experts it holds and which of the full model's they are."""
    case = LadderCase(model_type, ep=2)
    pm, full = _parallel_model(case), _full_model(case)
    rank, shares = dist.get_rank(), []
    for name, module in pm.model.named_modules():
        if not isinstance(module, GroupedExperts):
            continue
        reference = full.get_submodule(name)
        gate_up, down = _local(module.gate_up_proj).detach(), _local(module.down_proj).detach()
        n = module.num_experts // 2
        shares.append(
            {
                "layer": name,
                "num_experts": module.num_experts,
                "held": gate_up.shape[0],
                "down_held": down.shape[0],
                "mine": bool(
                    torch.equal(gate_up, reference.gate_up_proj[rank * n : (rank + 1) * n].detach())
                    and torch.equal(down, reference.down_proj[rank * n : (rank + 1) * n].detach())
                ),
            }
        )
    return shares


def tokens_per_expert(model_type: str) -> dict:
    """Per-layer tokens routed to each expert with ep = 2 (summed over ranks) and on one device."""
    case = LadderCase(model_type, ep=2, microbatches=1)
    pm, full = _parallel_model(case), _full_model(case)
    inputs, _ = random_batch(case, case.config().hf_config_dict()["vocab_size"])

    def count_into(counts: dict):
        def hook(module, args):
            counts[id(module)] = counts.get(id(module), 0) + torch.bincount(
                args[1].reshape(-1), minlength=module.num_experts
            )

        return hook

    def counted(model, batches) -> list[torch.Tensor]:
        counts, handles = {}, []
        modules = [m for m in model.modules() if isinstance(m, GroupedExperts)]
        handles = [m.register_forward_pre_hook(count_into(counts)) for m in modules]
        with torch.no_grad():
            for batch in batches:
                model(batch)
        for h in handles:
            h.remove()
        return [counts[id(m)] for m in modules]

    parallel = counted(pm.model, [inputs[dist.get_rank(), 0]])
    for c in parallel:
        dist.all_reduce(c)
    single = counted(full, [inputs[r, 0] for r in range(inputs.shape[0])])
    return {"parallel": [c.tolist() for c in parallel], "single": [c.tolist() for c in single]}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("model_type", ["qwen3_moe", "deepseek_v2"])
def test_each_rank_holds_only_its_share_of_the_experts(model_type):
    ranks = run_distributed(expert_shares, 2, model_type)
    assert ranks[0], "no MoE layer found"
    for rank, shares in enumerate(ranks):
        for share in shares:
            assert share["held"] == share["down_held"] == share["num_experts"] // 2, (rank, share)
            assert share["mine"], (
                f"rank {rank} {share['layer']}: does not hold experts "
                f"[{rank} * E/2, {rank + 1} * E/2) of the single-device model"
            )


@pytest.mark.timeout(240)
def test_tokens_per_expert_match_single_device_routing():
    ranks = run_distributed(tokens_per_expert, 2, "qwen3_moe")
    for counts in ranks:
        assert counts["parallel"] == counts["single"]
        assert sum(sum(layer) for layer in counts["single"]) > 0


@pytest.mark.timeout(240)
def test_ladder_ep2_matches_the_single_device_reference():
    cases = [LadderCase("qwen3_moe", ep=2), LadderCase("mixtral", ep=2), LadderCase("deepseek_v2", ep=2)]
    results = run_distributed(ladder_rungs, 2, cases)
    assert {r["case"] for per_rank in results for r in per_rank} == {c.name for c in cases}


@pytest.mark.gpu
@pytest.mark.timeout(300)
@pytest.mark.parametrize("world_size", [1, 2, 4], ids=lambda w: f"world{w}")
def test_ladder_ep_gpu(world_size):
    if torch.cuda.device_count() < world_size:
        pytest.skip(f"needs {world_size} GPUs, {torch.cuda.device_count()} visible")
    cases = [
        LadderCase(model_type, pp=pp, dp=dp, ep=ep, device="cuda", **GPU_TOLERANCES)
        for model_type in ("qwen3_moe", "mixtral", "deepseek_v2")
        for pp, dp, ep in GPU_EP_LAYOUTS[world_size]
    ]
    results = run_distributed(ladder_rungs, world_size, cases, device_type="cuda")
    assert {r["case"] for per_rank in results for r in per_rank} == {c.name for c in cases}


@pytest.mark.timeout(300)
def test_ladder_ep2_combined_with_pp_and_dp():
    cases = [LadderCase("qwen3_moe", pp=2, ep=2), LadderCase("qwen3_moe", dp=2, ep=2)]
    results = run_distributed(ladder_rungs, 4, cases)
    assert {r["case"] for per_rank in results for r in per_rank} == {c.name for c in cases}


@pytest.mark.timeout(240)
def test_training_with_ep2_follows_the_dp2_loss_curve():
    """Same global batch split over 2 data ranks either way: ep = 2 and dp = 2 give the same run."""
    ep_run = run_distributed(train_records, 2, CONFIG, SMALL + ["--parallel.ep=2"])[0]
    dp_run = run_distributed(train_records, 2, CONFIG, SMALL + ["--parallel.dp=2"])[0]
    assert [r["step"] for r in ep_run] == [1, 2, 3]
    # fp32 on CPU; the gold measures: losses equal bit for bit, grad norms within 1.7e-8 relative. An aux
    # loss scaled by dp instead of all data ranks (an error that grows with the ranks) moves step 1's norm
    # by 2.7e-5, under the old 1e-3. Step 1 (no optimizer step yet) gets ~100x the gold's error; later steps
    # stay looser, as AdamW turns summation-order noise in near-zero gradients into whole updates.
    for ep_step, dp_step in zip(ep_run, dp_run):
        first = ep_step["step"] == 1
        assert ep_step["loss"] == pytest.approx(dp_step["loss"], rel=1e-6 if first else 1e-5)
        assert ep_step["grad_norm"] == pytest.approx(dp_step["grad_norm"], rel=2e-6 if first else 1e-4)
