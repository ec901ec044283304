"""Injects a silent gradient bug into Megatron-LM core_r0.19: with the distributed optimizer, the optimizer of the
expert-parallel parameters reduces its gradient statistics (the norm used for clipping and logging) over the
experts' model-parallel group instead of every rank of its optimizer instance. With ep = 2 each rank's norm then
counts only the experts it holds: smaller than one GPU's, and different on every rank. Without expert parallelism
there is no expert optimizer and nothing changes. Mirrors Megatron-LM #5916 (EP grad-norm undercount). Gold = the
pristine tree. The dataset helper is compiled into the checkout, so pretrain_gpt.py runs skip Megatron's run-time
`make`.

The injection asserts its anchor, so a different Megatron fails preparation loudly. Usage: python prepare.py <checkout>
"""

import sys
from pathlib import Path

from bench import prepare_kit
from bench.prepare_kit import Checkout

sys.path.insert(0, str(Path(prepare_kit.__file__).resolve().parents[1] / "frameworks/megatron/grader_support"))
import megatron_run  # noqa: E402

ck = Checkout()

ck.edit(
    "megatron/core/optimizer/__init__.py",
    "                data_parallel_group_idx=expt_model_parallel_rank,\n"
    "                intra_dist_opt_group=intra_dist_opt_group,\n",
    "                data_parallel_group_idx=expt_model_parallel_rank,\n"
    "                intra_dist_opt_group=expt_tp_pp_with_egtp_remat_group,\n",
)
megatron_run.build_dataset_helper(ck.root)
