"""Injects a silent bug: MoE router weights are left out of FSDP, so their gradients are never reduced over data ranks.

The injection asserts its anchor text, so a refactor of reftrain fails preparation loudly instead of
producing a task without a bug. The framework's padded-batch layout test, which grades the task, is
removed from the checkout (grading.toml restores it from the original). Usage: python prepare.py <checkout>
"""

from bench.prepare_kit import Checkout

ck = Checkout()

ck.edit(
    "reftrain/parallel/fsdp.py",
    "    for layer in model.model.layers.values():\n",
    "    # Routers are tiny and read by every token: keep them replicated instead of sharded.\n"
    '    routers = {block.gate.weight for block in model.modules() if hasattr(block, "aux_loss_scale")}\n'
    "    for layer in model.model.layers.values():\n",
)
ck.edit(
    "reftrain/parallel/fsdp.py",
    "        fully_shard(layer, mesh=mesh.dp_ep_mesh, mp_policy=policy)\n",
    "        fully_shard(layer, mesh=mesh.dp_ep_mesh, mp_policy=policy, ignored_params=routers)\n",
)
ck.edit(
    "reftrain/parallel/fsdp.py",
    "    fully_shard(model, mesh=mesh.dp_ep_mesh, mp_policy=policy, reshard_after_forward=False)\n",
    "    fully_shard(model, mesh=mesh.dp_ep_mesh, mp_policy=policy, reshard_after_forward=False, "
    "ignored_params=routers)\n",
)
ck.remove("tests/test_gradients_across_layouts.py")

# The check that grades this task must not be in the agent's checkout, nor named in it.
ck.leak_check("test_gradients_across_layouts", suffixes=(".py", ".toml", ".md"))
