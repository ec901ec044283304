"""Injects a silent bug into TorchTitan v0.2.2: after FSDP's gradient division is turned off for the whole
model, the routed experts' FSDP modules get a divide factor of the expert-parallel degree, so at ep > 1
their gradients are divided by ep. Gold = the pristine tree.

The injection asserts its anchor text, so a different TorchTitan fails preparation loudly instead of
producing a task without a bug. Usage: python prepare.py <checkout>
"""

import sys
from pathlib import Path

root = Path(sys.argv[1])


def edit(rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    if text.count(old) != 1:
        sys.exit(
            f"prepare: expected exactly one of these in {rel}, found {text.count(old)}:\n{old}\n"
            "TorchTitan changed; update this prepare.py"
        )
    path.write_text(text.replace(old, new))


edit(
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
