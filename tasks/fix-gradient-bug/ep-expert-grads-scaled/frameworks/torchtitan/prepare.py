"""Injects a silent bug into TorchTitan v0.2.2: after FSDP's gradient division is turned off for the whole
model, the routed experts' FSDP modules get a divide factor of the expert-parallel degree, so at ep > 1
their gradients are divided by ep. Gold = the pristine tree.

The injection asserts its anchor text, so a different TorchTitan fails preparation loudly instead of
producing a task without a bug. Usage: python prepare.py <checkout>
"""

from bench.prepare_kit import Checkout

ck = Checkout()

ck.edit(
    "torchtitan/models/llama4/infra/parallelize.py",
    "    # Disable FSDP's automatic gradient division for all FSDP modules\n"
    "    disable_fsdp_gradient_division(model)\n",
    "    # Disable FSDP's automatic gradient division for all FSDP modules\n"
    "    disable_fsdp_gradient_division(model)\n"
    "    # pyrefly: ignore [missing-attribute]\n"
    "    for transformer_block in model.layers.values():\n"
    "        if transformer_block.moe_enabled and ep_degree > 1:\n"
    "            transformer_block.moe.experts.set_gradient_divide_factor(ep_degree)\n",
)
