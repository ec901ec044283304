"""Injects a silent gradient bug into Megatron-LM core_r0.19: with the distributed optimizer, the optimizer of the
expert-parallel parameters reduces its gradient statistics (the norm used for clipping and logging) over the experts'
data-parallel group instead of every rank of its optimizer instance. With ep = 2 on two GPUs that group is the rank
alone: each rank's norm counts only the experts it holds, so it is smaller than one GPU's and different on every rank.
Without expert parallelism there is no expert optimizer and nothing changes. Mirrors Megatron-LM #5916 (EP grad-norm
undercount). Gold = the pristine tree. The dataset helper is compiled into the checkout, so pretrain_gpt.py runs skip
Megatron's run-time `make`.

Measured on two H200s (docs/validation/2026-12-01-megatron-2gpu-tasks-h200x2.md): an earlier injection, the experts'
tensor-and-pipeline group (`expt_tp_pp_with_egtp_remat_group`), changed nothing at world 2: that group spans the
expert-parallel ranks, and with ep = world there is no expert data parallelism to miss.

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
    "megatron/core/optimizer/__init__.py",
    "                data_parallel_group_idx=expt_model_parallel_rank,\n"
    "                intra_dist_opt_group=intra_dist_opt_group,\n",
    "                data_parallel_group_idx=expt_model_parallel_rank,\n"
    "                intra_dist_opt_group=intra_expt_dp_group,\n",
)
megatron_run.build_dataset_helper(ck.root)
