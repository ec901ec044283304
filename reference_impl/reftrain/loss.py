"""Token-weighted cross entropy and the aux-loss scale.

Why a global denominator: every micro-batch on every data rank divides its summed token losses by
the number of non-ignored tokens in the whole step, so summing gradients (never averaging) over
micro-batches and ranks yields exactly the gradient of the global per-token mean, whatever the layout.
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F

IGNORE_INDEX = -100


def count_tokens(labels: torch.Tensor, group=None) -> int:
    """Non-ignored label tokens in this step over all data ranks (`group`)."""
    count = (labels != IGNORE_INDEX).sum().to(torch.float64)
    if group is not None and dist.get_world_size(group) > 1:
        dist.all_reduce(count, group=group)
    return int(count.item())


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of token cross entropies, computed in fp32 whatever the logits' dtype."""
    return F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")


class TokenWeightedCrossEntropy:
    """loss(logits, labels) = sum of token cross entropies / `global_tokens` (set before each step).

    `token_loss_sum` may be swapped for a `torch.compile`d copy: compiled, the fp32 upcast of the
    logits (vocab x tokens, the largest tensor of a step) is fused away instead of materialised.
    """

    def __init__(self):
        self.global_tokens = 1
        self.token_loss_sum = token_loss_sum

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.token_loss_sum(logits, labels) / self.global_tokens


def moe_blocks(model) -> list:
    """Every sparse MoE block of the model (they carry `aux_loss_scale`)."""
    return [m for m in model.modules() if hasattr(m, "aux_loss_scale")]


def set_aux_loss_scale(blocks: list, coef: float, num_moe_layers: int, global_microbatches: int) -> None:
    """Makes the summed gradient that of coef * (aux averaged over layers and micro-batches).

    `num_moe_layers` is the whole model's count (a pipeline stage holds only some of them) and
    `global_microbatches` counts micro-batches over all data ranks.
    """
    scale = coef / (num_moe_layers * global_microbatches) if num_moe_layers else 0.0
    for block in blocks:
        block.aux_loss_scale = scale
