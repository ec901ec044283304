"""Injects a silent gradient bug into Megatron-LM core_r0.19: with --calculate-per-token-loss, finalize_model_grads
divides the (data-parallel summed) gradients by this rank's own count of loss tokens instead of the count summed
over the data-parallel ranks. The logged loss is still right; the gradients are about dp times too large, and each
data-parallel rank scales them by its own count, so with uneven padding the replicas differ. One GPU is unchanged.
Gold = the pristine tree. The dataset helper is compiled into the checkout, so pretrain_gpt.py runs skip Megatron's
run-time `make`.

The injection asserts its anchor, so a different Megatron fails preparation loudly. Usage: python prepare.py <checkout>
"""

from pathlib import Path

from bench import prepare_kit
from bench.prepare_kit import Checkout, import_pinned

SUPPORT = Path(prepare_kit.__file__).resolve().parents[1] / "frameworks" / "megatron" / "grader_support"
MEGATRON_RUN_SHA256 = "6e44ac4bef9b9992389fa286b774a56cc37f7c61725517cd5d8e58a939c0e6d3"  # builds the dataset helper
megatron_run = import_pinned(SUPPORT / "megatron_run.py", MEGATRON_RUN_SHA256)

ck = Checkout()

ck.edit(
    "megatron/core/distributed/finalize_model_grads.py",
    "        # all-reduce across DP ranks.\n        torch.distributed.all_reduce(num_tokens, group=dp_cp_group)\n\n",
)
megatron_run.build_dataset_helper(ck.root)
