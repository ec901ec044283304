"""Removes expert parallelism from a reftrain checkout; the agent adds it back (gold = the original).

Removed: the all-to-all dispatch/combine path of `GroupedExperts`, `shard_experts` (so every rank
holds every expert and experts are only FSDP-sharded), and the ep rungs of the correctness ladder.
Kept: the `parallel.ep` option and the mesh dimension, with ep > 1 rejected by config validation,
so the hidden tests can launch ep = 2 through the same public config and ladder API as before.
Every edit asserts its anchors, so a refactor of reftrain fails preparation loudly.
Usage: python prepare.py <checkout>
"""

from bench.prepare_kit import Checkout

ck = Checkout()
root = ck.root

# The dispatch/combine path.
ck.edit(
    "reftrain/moe.py",
    "Routed experts shared by every MoE model: token permutation, expert parallelism, expert GEMMs.",
    "Routed experts shared by every MoE model: token permutation, expert GEMMs.",
)
ck.edit(
    "reftrain/moe.py",
    "[E, H, I]. With expert parallelism a rank holds the contiguous slice of experts\n"
    "`[expert_offset, expert_offset + num_local_experts)`.\n",
    "[E, H, I].\n",
)
ck.edit("reftrain/moe.py", "import torch.distributed as dist\n")
ck.cut("reftrain/moe.py", "class AllToAll(torch.autograd.Function):", "def _local(w):")
ck.edit(
    "reftrain/moe.py",
    "        # Set by reftrain.parallel.expert_parallel.shard_experts; None means all experts are local.\n"
    "        self.ep_group = None\n",
    "",
)
ck.edit(
    "reftrain/moe.py",
    "        if self.ep_group is None:\n"
    "            y = expert_mlp(x, _local(self.gate_up_proj), _local(self.down_proj), counts, self.act_fn)\n"
    "        else:\n"
    "            y = self._expert_parallel_mlp(x, counts)\n",
    "        y = expert_mlp(x, _local(self.gate_up_proj), _local(self.down_proj), counts, self.act_fn)\n",
)
ck.cut("reftrain/moe.py", "    def _expert_parallel_mlp(self, x, counts):", "    def reference_forward(self,")

# Expert sharding.
ck.cut("reftrain/parallel/expert_parallel.py", '"""Expert parallelism:', "from torch import nn\n")
ck.edit(
    "reftrain/parallel/expert_parallel.py",
    "from torch import nn\n",
    '"""Finding the routed experts of a model and their parameters."""\n\nfrom torch import nn\n',
)
ck.edit("reftrain/parallel/expert_parallel.py", "from torch.distributed.device_mesh import DeviceMesh\n")
ck.drop_functions("reftrain/parallel/expert_parallel.py", ["shard_experts"])
ck.edit("reftrain/train.py", "from reftrain.parallel.expert_parallel import shard_experts\n")
ck.edit("reftrain/train.py", "    shard_experts(model, mesh.ep_mesh)\n")

# The option stays but only 1 is accepted.
ck.edit(
    "reftrain/config.py",
    '    """Expert-parallel degree (innermost); ep ranks also split the batch, so data ranks = dp * ep."""',
    '    """Expert-parallel degree (innermost mesh dimension); not implemented yet, so it must be 1."""',
)
ck.edit(
    "reftrain/config.py",
    '            f"choose ep dividing {num_experts}"\n        )\n',
    '            f"choose ep dividing {num_experts}"\n        )\n'
    "    if p.ep != 1:\n"
    '        raise ConfigError(f"{src}: parallel.ep = {p.ep}: expert parallelism is not implemented; '
    'set parallel.ep = 1")\n',
)

# The ladder and tests without ep rungs (the hidden tests bring them back at grading).
ck.edit(
    "reftrain/testing.py",
    "CPU_LAYOUTS = {1: [(1, 1, 1)], 2: [(2, 1, 1), (1, 1, 2), (1, 2, 1)], 4: [(2, 1, 2), (1, 2, 2), (2, 2, 1)]}\n"
    '"""(pp, dp, ep) rungs by world size: pp x ep in {1,2}^2, plus dp = 2 wherever the processes allow."""',
    "CPU_LAYOUTS = {1: [(1, 1, 1)], 2: [(2, 1, 1), (1, 2, 1)], 4: [(2, 2, 1)]}\n"
    '"""(pp, dp, ep) rungs by world size: pp and dp in {1, 2}."""',
)
ck.drop_functions("reftrain/testing.py", ["expert_layout"])
ck.drop_functions("tests/test_parallel.py", ["test_each_ep_rank_holds_only_its_slice_of_experts"])
ck.edit(
    "tests/test_parallel.py",
    "from reftrain.testing import expert_layout, init_mesh_error, run_distributed",
    "from reftrain.testing import init_mesh_error, run_distributed",
)
ck.edit("tests/test_parallel.py", '"""Expert parallelism really partitions the experts; meshes that', '"""Meshes that')
ck.drop_functions("tests/test_cli.py", ["test_torchrun_trains_with_expert_parallelism"])
ck.drop_functions("tests/test_config.py", ["test_valid_layout_passes"])
ck.remove("tests/test_checkpoint.py")  # every checkpoint test starts from an ep = 2 run
ck.remove("tests/test_gradients_across_layouts.py")  # its ep2 cases grade the task (restored at grading)

# Command lines in docs and example comments that launch ep > 1 runs (prose mentioning ep stays).
ck.drop_lines(
    sorted([*root.rglob("*.md"), *(root / "examples").glob("*.toml")]),
    r"^(#\s+)?(torchrun|python) .*--parallel\.ep=[2-9]",
)
ck.leak_check(
    r"all_to_all|AllToAll|shard_experts|_expert_parallel_mlp|\.ep_group\b(?! *\()",
    suffixes=(".py",),
    skip_names=("testing.py",),
)
