"""Cuts expert parallelism out of TorchTitan v0.2.2, keeping what dense tensor parallelism of the experts
needs. Removed: the expert-parallel styles (all-to-all dispatch/combine, experts sharded on dim 0: ExpertParallel,
ExpertTensorParallel, ReordererSequenceParallel, DeepEPExpertParallel and their base; gpt_oss's and DualPipeV's
subclasses), the EP plans of apply_moe_ep_tp, the experts' own FSDP group over the efsdp mesh and its
prefetching in apply_fsdp, and the EP-aware gradient norm (_clip_grad_norm_with_ep). Kept: the
expert_parallel_degree setting, the ep/efsdp/etp mesh dimensions, TensorParallel, and _permute/_unpermute (the
ep=1 grouped-GEMM padding uses them). ParallelDims rejects ep > 1 with one message. TorchTitan's own
test_parallel_dims loses its ep > 1 cases (grading restores the original).

Every edit asserts its anchor, so a different TorchTitan fails preparation loudly; a leak check ends it.
Usage: python prepare.py <checkout>
"""

from bench.prepare_kit import Checkout

ck = Checkout()


def cut_to_end(rel: str, start: str) -> None:
    """Delete from `start` (found once) to the end of the file."""
    text = (ck.root / rel).read_text()
    if text.count(start) != 1:
        ck.fail(f"expected exactly one of these in {rel}, found {text.count(start)}:\n{start}\n")
    (ck.root / rel).write_text(text[: text.index(start)] + "\n")


EXPERTS_PLAN = (  # the call that parallelises a MoE layer's routed experts
    "        parallelize_module(\n            # pyrefly: ignore [missing-attribute]\n"
    "            module=transformer_block.moe.experts,"
)


def experts_on_tp(rel: str, style: str) -> None:
    """The routed experts' plan becomes dense TP only (EP's branches are gone)."""
    ck.cut(rel, "        experts_mesh, experts_plan = None, None\n        if ep_mesh is None:\n", EXPERTS_PLAN)
    ck.edit(
        rel,
        EXPERTS_PLAN + "\n            device_mesh=experts_mesh,\n            parallelize_plan=experts_plan,\n",
        "        # input Replicate, output Partial\n"
        + EXPERTS_PLAN
        + f"\n            device_mesh=tp_mesh,\n            parallelize_plan={style}(),\n",
    )
    ck.edit(rel, "    assert ep_mesh is not None or tp_mesh is not None\n", "    assert tp_mesh is not None\n")


# ---- the expert-parallel styles: only TensorParallel stays --------------------------------------------
EP = "torchtitan/distributed/expert_parallel.py"
ck.edit(
    EP,
    "from abc import ABC, abstractmethod\n\nimport torch\nimport torch.nn as nn\nfrom torch import Tensor\n"
    "from torch.distributed._functional_collectives import (\n    all_to_all_single,\n"
    "    all_to_all_single_autograd,\n)\n",
    "import torch.nn as nn\n",
)
ck.edit(EP, "\nfrom torchtitan.models.moe.utils import _permute, _unpermute\n")
ck.cut(
    EP, "class BaseExpertParallel(ParallelStyle, ABC):", "# implementation of Tensor Parallel for the GroupedExperts"
)
cut_to_end(EP, "\n\nclass ExpertParallel(BaseExpertParallel):")

# ---- llama4's MoE parallelisation (qwen3 and deepseek_v3 import it): TP of the experts only --------------
L4 = "torchtitan/models/llama4/infra/parallelize.py"
ck.edit(
    L4,
    "from torchtitan.distributed.dual_pipe_v import (\n    DualPipeExpertParallel,\n    get_dual_pipe_v_flag,\n)\n"
    "from torchtitan.distributed.expert_parallel import (\n    BaseExpertParallel,\n    DeepEPExpertParallel,\n"
    "    ExpertParallel,\n    ExpertTensorParallel,\n    ReordererSequenceParallel,\n    TensorParallel,\n)\n",
    "from torchtitan.distributed.dual_pipe_v import get_dual_pipe_v_flag\n"
    "from torchtitan.distributed.expert_parallel import TensorParallel\n",
)
ck.cut(
    L4,
    "        # NOTE: When EP is enabled, In an MoE layer, we use the following FSDP wrapping\n",
    "        fully_shard(\n            transformer_block,\n            **fsdp_config,\n",
)
ck.cut(L4, "    # NOTE: set up explicit prefetching when EP is enabled", "def apply_moe_ep_tp(")
ck.edit(
    L4,
    "    disable_fsdp_gradient_division(model)\n\ndef apply_moe_ep_tp(",
    "    disable_fsdp_gradient_division(model)\n\n\ndef apply_moe_ep_tp(",
)
ck.cut(
    L4,
    "            if ep_mesh is not None and etp_mesh is None:\n",
    "            # pyrefly: ignore [missing-attribute]\n"
    "            if transformer_block.moe.shared_experts is not None:",
)
experts_on_tp(L4, "TensorParallel")

# ---- gpt_oss's copy of the same, and its expert-tensor-parallel style ------------------------------------
GO = "torchtitan/models/gpt_oss/infra/parallelize.py"
ck.edit(
    GO,
    "from torchtitan.distributed.dual_pipe_v import (\n    DualPipeExpertParallel,\n    get_dual_pipe_v_flag,\n)\n"
    "from torchtitan.distributed.expert_parallel import (\n    BaseExpertParallel,\n    ExpertParallel,\n"
    "    ReordererSequenceParallel,\n)\n",
    "from torchtitan.distributed.dual_pipe_v import get_dual_pipe_v_flag\n",
)
ck.edit(
    GO,
    "from .expert_parallel import GptossExpertTensorParallel, GptossTensorParallel\n",
    "from .expert_parallel import GptossTensorParallel\n",
)
ck.cut(
    GO,
    "            if ep_mesh is not None and not etp_enabled:\n",
    "\n            parallelize_module(\n                # pyrefly: ignore [bad-argument-type]\n"
    "                module=transformer_block,",
)
experts_on_tp(GO, "GptossTensorParallel")
GE = "torchtitan/models/gpt_oss/infra/expert_parallel.py"
ck.edit(
    GE,
    "from torchtitan.distributed.expert_parallel import ExpertTensorParallel, TensorParallel\n",
    "from torchtitan.distributed.expert_parallel import TensorParallel\n",
)
ck.edit(GE, "DeviceMesh, distribute_tensor, Replicate, Shard", "distribute_tensor, Replicate, Shard")
cut_to_end(GE, "\n\n# This class is for dp2ep with TP")

# ---- DualPipeV's EP wrapper, and the compiler toolkit's annotation of EP dispatch/combine ----------------
DP = "torchtitan/distributed/dual_pipe_v.py"
ck.edit(DP, "from torchtitan.distributed.expert_parallel import BaseExpertParallel\n")
ck.edit(
    DP,
    "from typing import cast, Optional\n\nimport torch\nimport torch.nn as nn\nfrom torch import Tensor\n",
    "from typing import Optional\n\nimport torch\n",
)
ck.edit(DP, "from torch.distributed.tensor import DeviceMesh, distribute_module\n")
ck.cut(DP, "class DualPipeExpertParallel(BaseExpertParallel):", "class HookCoordinator:")
CT = "torchtitan/experiments/compiler_toolkit/deepseek_v3/parallelize.py"
ck.edit(CT, "    from torchtitan.distributed.expert_parallel import ExpertParallel\n")
ck.cut(CT, "    ExpertParallel._token_dispatch = annotate_fn(", "    MoE.forward = annotate_fn(")
ck.edit(CT, "    # annotate the MoE with dispatch, compute and combine\n", "    # annotate the MoE compute\n")

# ---- the gradient norm over expert-parallel and dense parameters -----------------------------------------
DU = "torchtitan/distributed/utils.py"
ck.edit(
    DU,
    "    if ep_enabled:\n        return _clip_grad_norm_with_ep(\n            parameters,\n            max_norm,\n"
    "            norm_type,\n            error_if_nonfinite,\n            foreach,\n"
    "            pp_mesh,\n        )\n\n",
)
ck.drop_functions(DU, ["_clip_grad_norm_with_ep"])

# ---- ParallelDims: ep > 1 is rejected with one message ----------------------------------------------------
PD = "torchtitan/distributed/parallel_dims.py"
ck.edit(
    PD,
    '        if ep > 1:\n            assert etp == tp or etp == 1, "Currently we only support ETP=TP or ETP=1"\n',
    "        if ep > 1:\n"
    "            raise NotImplementedError(\n"
    '                f"parallelism.expert_parallel_degree = {ep}: expert parallelism is not supported; "\n'
    '                "set it to 1"\n'
    "            )\n",
)

# ---- TorchTitan's own tests (git-only files: absent from the sdist, left alone there) ----------------------
TP = "tests/unit_tests/test_parallel_dims.py"
if (ck.root / "tests").is_dir():
    ck.cut(
        TP,
        "        # Test with EP and ETP enabled (EP * ETP must not contribute to world_size)\n",
        "        # Test with PP enabled\n",
    )
    ck.cut(
        TP,
        '    @patch("torchtitan.distributed.parallel_dims.device_type", "cpu")\n'
        "    def test_expert_parallelism_validation(self):",
        "class TestParallelDimsWorld8MeshOperations(",
    )
    ck.edit(TP, "class TestParallelDimsWorld8MeshOperations(", "\n\nclass TestParallelDimsWorld8MeshOperations(")

ck.leak_check(
    r"all_to_all_single_autograd|num_tokens_per_expert_group|def _token_dispatch|_clip_grad_norm_with_ep"
    r"|\bExpertParallel\b|ExpertTensorParallel|ReordererSequenceParallel|BaseExpertParallel",
    suffixes=(".py",),
)
