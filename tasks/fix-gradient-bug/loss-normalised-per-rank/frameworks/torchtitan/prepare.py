"""Injects a silent bug into TorchTitan v0.2.2: the trainer normalises the loss by this rank's count of
valid (not ignored) tokens times the number of data-parallel ranks, instead of the global count. Identical
whenever every rank has as many valid tokens, wrong with uneven padding. Gold = the pristine tree.

The injection asserts its anchor text, so a different TorchTitan fails preparation loudly instead of
producing a task without a bug. Usage: python prepare.py <checkout>
"""

from bench.prepare_kit import Checkout

ck = Checkout()

ck.edit(
    "torchtitan/train.py",
    "            global_valid_tokens = dist_utils.dist_sum(local_valid_tokens, batch_mesh)\n",
    "            global_valid_tokens = local_valid_tokens.float() * batch_mesh.size()\n",
)
