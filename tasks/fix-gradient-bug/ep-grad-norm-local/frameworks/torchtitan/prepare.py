"""Injects a silent bug into TorchTitan v0.2.2: with expert parallelism, the norm used for clipping (and
logged) takes the expert-parallel gradients as this rank's local shards, so each rank computes its own,
smaller norm. Gold = the pristine tree.

The injection asserts its anchor text, so a different TorchTitan fails preparation loudly instead of
producing a task without a bug. Usage: python prepare.py <checkout>
"""

from bench.prepare_kit import Checkout

ck = Checkout()

ck.edit(
    "torchtitan/distributed/utils.py",
    "            ep_params.append(p)\n            ep_grads.append(p.grad)\n",
    "            ep_params.append(p)\n            ep_grads.append(p.grad.to_local())\n",
)
