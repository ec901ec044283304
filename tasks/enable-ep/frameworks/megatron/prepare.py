"""Cuts expert parallelism's all-to-all path out of Megatron-LM core_r0.19 and makes it refuse ep > 1.

Removed: MoEAlltoAllTokenDispatcher (megatron/core/transformer/moe/token_dispatcher.py) with the imports only it
used, and MoELayer's "alltoall" branch, so `--moe-token-dispatcher-type alltoall` ends in MoELayer's "Unsupported
token dispatcher type". Kept: the setting itself, the expert-parallel process groups, the expert DDP buffers and
optimizer, and tensor_parallel.all_to_all (mamba's context-parallel helpers use it). Refused with one message:
ep > 1 in validate_args (megatron/training/arguments.py) and in BaseMoELayer.__init__ (the allgather dispatcher
would otherwise still give expert parallelism). Megatron's own tests of the dispatcher: test_a2a_token_dispatcher.py
removed, test_moe_layer.py's alltoall cases cut (grading restores both). The dataset helper is compiled into the
checkout, as for the operate tasks, so pretrain_gpt.py runs skip Megatron's run-time `make`.

Every edit asserts its anchor, so a different Megatron fails preparation loudly; a leak check ends it.
Usage: python prepare.py <checkout>
"""

from pathlib import Path

from bench import prepare_kit
from bench.prepare_kit import Checkout, import_pinned

SUPPORT = Path(prepare_kit.__file__).resolve().parents[1] / "frameworks" / "megatron" / "grader_support"
MEGATRON_RUN_SHA256 = "6e44ac4bef9b9992389fa286b774a56cc37f7c61725517cd5d8e58a939c0e6d3"  # builds the dataset helper
megatron_run = import_pinned(SUPPORT / "megatron_run.py", MEGATRON_RUN_SHA256)

ck = Checkout()
REFUSAL = "expert parallelism is not supported; set it to 1"

# ---- the dispatcher ----------------------------------------------------------------------------------------
TD = "megatron/core/transformer/moe/token_dispatcher.py"
ck.cut(TD, "class MoEAlltoAllTokenDispatcher(MoETokenDispatcher):", "class _DispatchManager(ABC):")
ck.edit(
    TD,
    "from megatron.core.tensor_parallel import (\n    all_to_all,\n",
    "from megatron.core.tensor_parallel import (\n",
)
ck.edit(
    TD,
    "import fused_indices_to_multihot\nfrom megatron.core.fusions.fused_pad_routing_map import fused_pad_routing_map\n",
    "import fused_indices_to_multihot\n",
)
ck.edit(TD, "from megatron.core.transformer.enums import CudaGraphModule\n")
ck.edit(TD, "    maybe_move_tensor_to_cpu,\n")
ck.edit(TD, "    sort_chunks_by_idxs,\n")

# ---- MoELayer: no "alltoall" branch, and no expert parallelism -----------------------------------------------
ML = "megatron/core/transformer/moe/moe_layer.py"
ck.edit(ML, "    MoEAllGatherTokenDispatcher,\n    MoEAlltoAllTokenDispatcher,\n", "    MoEAllGatherTokenDispatcher,\n")
ck.edit(
    ML,
    '        elif config.moe_token_dispatcher_type == "alltoall":\n'
    "            self.token_dispatcher = MoEAlltoAllTokenDispatcher(\n"
    "                self.num_local_experts,\n"
    "                self.local_expert_indices,\n"
    "                config=self.config,\n"
    "                pg_collection=pg_collection,\n"
    "            )\n",
)
ck.edit(ML, "strategies such as All-to-All and All-Gather.", "strategies such as All-Gather.")
ck.edit(
    ML,
    '        assert ep_size > 0, "Expected non-negative expert parallel size"\n',
    '        assert ep_size > 0, "Expected non-negative expert parallel size"\n'
    "        if ep_size > 1:\n"
    "            raise ValueError(\n"
    f'                f"expert_model_parallel_size = {{ep_size}}: {REFUSAL}"\n'
    "            )\n",
)

# ---- validate_args -------------------------------------------------------------------------------------------
ck.edit(
    "megatron/training/arguments.py",
    "    if args.expert_model_parallel_size  > 1:\n"
    '        assert args.num_experts is not None, "num_experts must be non None to use expert model parallelism"\n'
    "        assert args.num_experts % args.expert_model_parallel_size == 0, \\\n"
    '            "Number of experts should be a multiple of expert model parallel_size."\n',
    "    if args.expert_model_parallel_size > 1:\n"
    "        raise ValueError(\n"
    f'            f"--expert-model-parallel-size {{args.expert_model_parallel_size}}: {REFUSAL}")\n',
)

# ---- Megatron's own tests of the dispatcher (grading restores the originals) ---------------------------------
ck.remove("tests/unit_tests/transformer/moe/test_a2a_token_dispatcher.py")
TML = "tests/unit_tests/transformer/moe/test_moe_layer.py"
for following in (
    '    @pytest.mark.parametrize("num_moe_experts", [1, 2])\n'
    '    @pytest.mark.parametrize("grouped_gemm", [True, False])\n'
    "    def test_te_moe_layer(",
    '    @pytest.mark.parametrize("num_moe_experts", [1, 2])\n'
    '    @pytest.mark.parametrize("grouped_gemm", [True, False])\n'
    "    def test_legacy_moe_layer(",
    '    @pytest.mark.parametrize("num_moe_experts", [2, 4])\n'
    '    @pytest.mark.parametrize("tp_size,ep_size", [(1, 1), (2, 2), (4, 2)])\n',
    '    @pytest.mark.parametrize("num_moe_experts", [2, 4])\n'
    '    @pytest.mark.parametrize("with_padding_mask", [True, False])\n',
):
    ck.edit(
        TML,
        '    @pytest.mark.parametrize("moe_token_dispatcher_type", ["allgather", "alltoall"])\n' + following,
        '    @pytest.mark.parametrize("moe_token_dispatcher_type", ["allgather"])\n' + following,
    )
ck.edit(
    TML,
    '    @pytest.mark.parametrize("moe_token_dispatcher_type", ["alltoall", "allgather"])\n',
    '    @pytest.mark.parametrize("moe_token_dispatcher_type", ["allgather"])\n',
)

ck.leak_check(
    r"AlltoAllTokenDispatcher|sort_input_by_local_experts|restore_output_by_local_experts|cuda_dtoh_stream"
    r"|before_ep_alltoall|test_a2a_token_dispatcher"
)
megatron_run.build_dataset_helper(ck.root)
