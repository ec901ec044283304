"""Injects a silent bug: the gradient norm used for clipping is computed from this rank's gradients only.

The injection asserts its anchor text, so a refactor of reftrain fails preparation loudly instead of
producing a task without a bug. The framework's padded-batch layout test, which grades the task, is
removed from the checkout (grading.toml restores it from the original). Usage: python prepare.py <checkout>
"""

from bench.prepare_kit import Checkout

ck = Checkout()

ck.edit(
    "reftrain/optim.py",
    "    if dist.is_initialized() and dist.get_world_size() > 1:\n        dist.all_reduce(sq)\n",
    "",
)
ck.remove("tests/test_gradients_across_layouts.py")

# The check that grades this task must not be in the agent's checkout, nor named in it.
ck.leak_check("test_gradients_across_layouts", suffixes=(".py", ".toml", ".md"))
