"""Injects a silent gradient bug into Megatron-LM core_r0.19: the MoE router's weight (and bias) lose their
`sequence_parallel` mark in Router.reset_parameters, so under tensor parallelism with sequence parallelism
finalize_model_grads no longer sums the partial router gradients of the tensor-parallel ranks (each rank saw its
own part of the sequence): each rank steps with its own partial gradient and the replicas drift apart. Without
sequence parallelism nothing changes. Mirrors TorchTitan #2387 (router gradients under TP). Gold = the pristine
tree. The aux-loss comment that names the mark keeps its explanation but no longer points at the line. The dataset
helper is compiled into the checkout, so pretrain_gpt.py runs skip Megatron's run-time `make`.

Each edit asserts its anchor, so a different Megatron fails preparation loudly. Usage: python prepare.py <checkout>
"""

from pathlib import Path

from bench import prepare_kit
from bench.prepare_kit import Checkout, import_pinned

SUPPORT = Path(prepare_kit.__file__).resolve().parents[1] / "frameworks" / "megatron" / "grader_support"
MEGATRON_RUN_SHA256 = "6e44ac4bef9b9992389fa286b774a56cc37f7c61725517cd5d8e58a939c0e6d3"  # builds the dataset helper
megatron_run = import_pinned(SUPPORT / "megatron_run.py", MEGATRON_RUN_SHA256)

ck = Checkout()

ROUTER = "megatron/core/transformer/moe/router.py"
ck.edit(ROUTER, "        setattr(self.weight, 'sequence_parallel', self.config.sequence_parallel)\n")
ck.edit(ROUTER, "            setattr(self.bias, 'sequence_parallel', self.config.sequence_parallel)\n")
ck.edit(
    ROUTER,
    "            # `sequence_parallel=True` in Router.reset_parameters (see\n"
    "            # `setattr(self.weight, 'sequence_parallel', ...)` above), so each TP rank\n",
    "            # `sequence_parallel=True`, so each TP rank\n",
)
megatron_run.build_dataset_helper(ck.root)
