"""Injects a silent bug into TorchTitan v0.2.2: the MoE load-balancing optimizer hook updates each layer's
expert bias from this rank's token counts only (the all-reduce of the counts over the loss mesh is gone),
so with data or expert parallelism the biases drift apart between ranks. Gold = the pristine tree.

The injection asserts its anchor text, so a different TorchTitan fails preparation loudly instead of
producing a task without a bug. Usage: python prepare.py <checkout>
"""

from bench.prepare_kit import Checkout

ck = Checkout()

ck.edit(
    "torchtitan/components/optimizer.py",
    """                )
            else:
                # Perform single all-reduce to get global statistics across all processes
                pg = loss_mesh.get_group()
                torch.distributed.all_reduce(
                    tokens_per_expert_by_layer,
                    group=pg,
                    op=torch.distributed.ReduceOp.SUM,
                )
""",
    """                )
""",
)
