"""Injects a silent bug: the loss is divided by this rank's token count times the number of data ranks,
not by the global count.

The injection asserts its anchor text, so a refactor of reftrain fails preparation loudly instead of
producing a task without a bug. The framework's padded-batch layout test, which grades the task, is
removed from the checkout (grading.toml restores it from the original). Usage: python prepare.py <checkout>
"""

from bench.prepare_kit import Checkout

ck = Checkout()

ck.edit(
    "reftrain/train.py",
    "    pm.loss_fn.global_tokens = count_tokens(labels, pm.mesh.dp_ep_group)\n",
    "    # Every data rank holds the same number of sequences, so scale the local count instead of an all-reduce.\n"
    "    pm.loss_fn.global_tokens = count_tokens(labels) * pm.mesh.dp * pm.mesh.ep\n",
)
ck.remove("tests/test_gradients_across_layouts.py")

# The check that grades this task must not be in the agent's checkout, nor named in it.
ck.leak_check("test_gradients_across_layouts", suffixes=(".py", ".toml", ".md"))
