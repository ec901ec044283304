"""Injects a silent gradient bug into Megatron-LM core_r0.19: the backward of the expert-parallel all-to-all
(tensor_parallel.mappings._AllToAll, which the all-to-all token dispatcher sends tokens and their routing weights
through) divides the gradient by the group size. With ep = 1 the all-to-all is the identity and nothing changes;
with ep = 2 the experts' gradients are halved and everything before the MoE layers gets less. Gold = the pristine
tree. The dataset helper is compiled into the checkout, so pretrain_gpt.py runs skip Megatron's run-time `make`.

The injection asserts its anchor, so a different Megatron fails preparation loudly. Usage: python prepare.py <checkout>
"""

from pathlib import Path

from bench import prepare_kit
from bench.prepare_kit import Checkout, import_pinned

SUPPORT = Path(prepare_kit.__file__).resolve().parents[1] / "frameworks" / "megatron" / "grader_support"
MEGATRON_RUN_SHA256 = "6e44ac4bef9b9992389fa286b774a56cc37f7c61725517cd5d8e58a939c0e6d3"  # builds the dataset helper
megatron_run = import_pinned(SUPPORT / "megatron_run.py", MEGATRON_RUN_SHA256)

ck = Checkout()

CALL = (
    "            _AllToAll.apply(\n"
    "                ctx.group,\n"
    "                *grad_output,\n"
    "                ctx.input_split_sizes,\n"
    "                ctx.output_split_sizes,\n"
    "                ctx.use_nccl_stream,\n"
    "            )"
)
ck.edit("megatron/core/tensor_parallel/mappings.py", CALL + ",\n", CALL + "\n            / ctx.group.size(),\n")
megatron_run.build_dataset_helper(ck.root)
