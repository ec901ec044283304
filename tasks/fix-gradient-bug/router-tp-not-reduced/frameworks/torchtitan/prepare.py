"""fix-gradient-bug / router-tp-not-reduced on TorchTitan v0.2.2: a real upstream bug (#2387, fixed upstream by
#2416 after the tag), so the pristine tree is the task's starting point and nothing is injected. The gold is
solution.patch (a backport of #2416; grading.toml says what it changes).

This step only asserts that the buggy code is there, so a TorchTitan that already carries the fix fails
preparation loudly instead of shipping a task without a bug. Each anchor is "replaced" by itself (Checkout.edit
asserts it occurs exactly once). Usage: python prepare.py <checkout>
"""

from bench.prepare_kit import Checkout

ck = Checkout()

BUGGY = {
    # the router gate's output is made local with its gradient taken as Replicate, though it is Partial under TP
    "torchtitan/models/llama4/infra/parallelize.py": '                "moe.router.gate": NoParallel(),\n',
    "torchtitan/models/gpt_oss/infra/parallelize.py": '                "moe.router.gate": NoParallel(),\n',
    # the MoE input is made local at the MoE boundary with a Replicate gradient
    "torchtitan/models/moe/moe.py": "        bs, slen, dim = x.shape\n        x = x.view(-1, dim)\n",
}
for rel, anchor in BUGGY.items():
    ck.edit(rel, anchor, anchor)
