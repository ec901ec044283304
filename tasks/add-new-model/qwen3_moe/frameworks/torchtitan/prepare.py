"""Removes the MoE half of qwen3 from a TorchTitan v0.2.2 checkout (dense qwen3 stays); the agent adds it
back (gold = the original tree).

Every edit asserts its anchor text, so a different TorchTitan fails preparation loudly instead of producing
a task whose removed model is still there. Files only the git tree has (README, train configs, integration
tests) are edited when present: the sdist route (bench/sources.py) ships none of them.
Usage: python prepare.py <checkout>
"""

import shutil
import sys
from pathlib import Path

root = Path(sys.argv[1])
here = Path(__file__).resolve().parent
QWEN3 = "torchtitan/models/qwen3"


def edit(rel: str, old: str, new: str = "") -> None:
    path = root / rel
    text = path.read_text()
    found = text.count(old)
    if found != 1:
        sys.exit(
            f"prepare: expected the anchor exactly once in {rel}, found it {found} times:\n{old}\n"
            "TorchTitan changed; update this prepare.py"
        )
    path.write_text(text.replace(old, new))


def cut(rel: str, start: str, end: str, new: str = "", drop_end: bool = False) -> None:
    """Replace the text from `start` (found exactly once) up to the first `end` after it (kept unless
    drop_end) by `new`."""
    text = (root / rel).read_text()
    at = text.find(start)
    stop = text.find(end, at + len(start)) if at >= 0 else -1
    if text.count(start) != 1 or stop < 0:
        sys.exit(
            f"prepare: anchors not found once and in order in {rel}:\n{start}\n...\n{end}\n"
            "TorchTitan changed; update this prepare.py"
        )
    (root / rel).write_text(text[:at] + new + text[stop + (len(end) if drop_end else 0) :])


def git_only(rel: str) -> bool:
    """Whether a file the git tree has is here; absent only on the sdist route, which lacks such files."""
    if (root / rel).is_file():
        return True
    if (root / "tests").is_dir():
        sys.exit(f"prepare: {rel} does not exist in a git checkout; TorchTitan changed, update this prepare.py")
    return False


# The task's inputs: the HF config.json of a tiny Qwen3-MoE, and the real Qwen3-30B-A3B one.
assets = root / "task_assets" / "qwen3_moe"
(assets / "full-size").mkdir(parents=True)
shutil.copy(here / "assets" / "config.json", assets / "config.json")
shutil.copy(here / "assets" / "full-size" / "config.json", assets / "full-size" / "config.json")

# args: the MoE fields, their config hook and the MoE FLOP count.
args = f"{QWEN3}/model/args.py"
edit(args, "from dataclasses import dataclass, field\n", "from dataclasses import dataclass\n")
edit(args, "from torchtitan.models.moe import MoEArgs\n")
edit(
    args,
    "from torchtitan.models.utils import get_moe_model_nparams_and_flops\n",
    "from torchtitan.models.utils import get_dense_model_nparams_and_flops\n",
)
edit(
    args,
    "\n    # MoE params\n    moe_enabled: bool = False\n    moe_inter_dim: int = 768\n"
    "    moe_args: MoEArgs = field(default_factory=MoEArgs)\n",
)
edit(
    args,
    "\n        self.moe_args._debug_force_load_balance = (\n"
    "            job_config.debug.moe_force_load_balance\n        )\n",
)
edit(
    args,
    "return get_moe_model_nparams_and_flops(self, model, 2 * self.head_dim, seq_len)",
    "return get_dense_model_nparams_and_flops(\n            self, model, 2 * self.head_dim, seq_len\n        )",
)

# model: the MoE layer in the block.
model = f"{QWEN3}/model/model.py"
edit(model, "from torchtitan.models.moe import MoE\n")
edit(
    model,
    """        self.moe_enabled = model_args.moe_enabled
        if self.moe_enabled:
            self.moe = MoE(
                model_args.moe_args,
                dim=model_args.dim,
                hidden_dim=model_args.moe_inter_dim,
            )
        else:
            self.feed_forward = FeedForward(
                dim=model_args.dim, hidden_dim=model_args.hidden_dim
            )
""",
    """        # read by the llama4 parallelize helpers this model shares
        self.moe_enabled = False
        self.feed_forward = FeedForward(
            dim=model_args.dim, hidden_dim=model_args.hidden_dim
        )
""",
)
edit(
    model,
    """        if self.moe_enabled:
            x = x + self.moe(self.ffn_norm(x))
        else:
            x = x + self.feed_forward(self.ffn_norm(x))
""",
    "        x = x + self.feed_forward(self.ffn_norm(x))\n",
)
edit(
    model,
    """        if self.moe_enabled:
            self.moe.init_weights(self.weight_init_std, buffer_device)
        else:
            self.feed_forward.init_weights(self.weight_init_std)
""",
    "        self.feed_forward.init_weights(self.weight_init_std)\n",
)

# flavors: the three MoE ones.
init = f"{QWEN3}/__init__.py"
edit(init, "from torchtitan.models.moe import MoEArgs\n")
cut(init, "    # Qwen3-MoE models\n", "}\n\n\ndef get_train_spec() -> TrainSpec:")

# state-dict adapter: the expert keys and their split/concatenate paths.
adapter = f"{QWEN3}/model/state_dict_adapter.py"
edit(
    adapter,
    "from torch.distributed.tensor import DTensor\nfrom torchtitan.models.utils import MoEStateDictAdapter\n",
    "from torchtitan.protocols.state_dict_adapter import StateDictAdapter\n",
)
edit(adapter, "class Qwen3StateDictAdapter(MoEStateDictAdapter):", "class Qwen3StateDictAdapter(StateDictAdapter):")
edit(
    adapter,
    "        super().__init__(model_args, hf_assets_path)\n",
    "        super().__init__(model_args, hf_assets_path)\n        self.model_args = model_args\n",
)
cut(adapter, "            # MoE\n", '            "model.norm.weight": "norm.weight",\n')
edit(
    adapter,
    "        1. Convert between the HF shape and the torchtitan shape.\n"
    "        2. Split the GroupedExperts' weight into separate expert's wegiht.\n",
    "        Convert between the HF shape and the torchtitan shape.\n",
)
edit(
    adapter,
    "        1. Convert between the HF shape and the torchtitan shape.\n"
    "        2. Concate separate expert's wegiht into GroupedExperts' weight.\n",
    "        Convert between the HF shape and the torchtitan shape.\n",
)
cut(
    adapter,
    '            if "moe.experts" in key:\n',
    '            elif "layers" in key:\n',
    '            if "layers" in key:\n',
    drop_end=True,
)
edit(adapter, "        expert_weights_by_layer = {}  # {layer: {abstract_key: {expert_id: tensor}}}\n")
cut(
    adapter,
    '            if "mlp.experts" in key:\n',
    '            elif "layers" in key:\n',
    '            if "layers" in key:\n',
    drop_end=True,
)

# parallelize: expert parallelism and the expert FSDP mesh.
par = f"{QWEN3}/infra/parallelize.py"
edit(par, "from torchtitan.distributed.dual_pipe_v import get_dual_pipe_v_flag\n")
edit(par, "    apply_fsdp,\n    apply_moe_ep_tp,\n)", "    apply_fsdp,\n)")
cut(par, "    if parallel_dims.tp_enabled or parallel_dims.ep_enabled:\n", "    if parallel_dims.cp_enabled:\n")
cut(
    par,
    "\n        # the mesh dim names of which the MoE params are sharded on via FSDP/HSDP\n",
    "\n        apply_fsdp(\n",
)
edit(par, "            ep_degree=parallel_dims.ep,\n            edp_mesh=edp_mesh,\n")
text = (root / par).read_text()
start = "        # pyrefly: ignore [missing-attribute]\n        if not transformer_block.moe_enabled:\n"
end = "\n\n        parallelize_module(\n"
if text.count(start) != 1 or text.count(end) != 1:
    sys.exit(f"prepare: the dense-FFN TP plan in {par} changed; update this prepare.py")
block = text[text.index(start) + len(start) : text.index(end)]
dedented = "".join(line[4:] if line.startswith("    ") else line for line in block.splitlines(keepends=True))
(root / par).write_text(text[: text.index(start)] + dedented + text[text.index(end) :])

# Files only the git tree has: the MoE train config, the README's MoE bullets, the MoE integration test.
if git_only(f"{QWEN3}/train_configs/qwen3_moe_debug.toml"):
    (root / f"{QWEN3}/train_configs/qwen3_moe_debug.toml").unlink()
if git_only(f"{QWEN3}/README.md"):
    cut(f"{QWEN3}/README.md", "- Qwen3 MoE model:\n", "\n\nOther model sizes")
    edit(f"{QWEN3}/README.md", "#### Dense Model\n", "")
if git_only("tests/integration_tests/models.py"):
    cut(
        "tests/integration_tests/models.py",
        """        OverrideDefinitions(
            [
                [
                    "--model.name qwen3",
                    "--model.flavor debugmodel_moe",""",
        "        # Integration Test Cases for Llama 4\n",
    )

# Leak check: nothing of the removed MoE path may remain in qwen3 or name its flavors elsewhere.
banned = (
    "MoE(",
    "MoEArgs",
    "moe_args",
    "moe_inter_dim",
    "experts",
    "apply_moe_ep_tp",
    "debugmodel_moe",
    "30B-A3B",
    "235B-A22B",
    "MoEStateDictAdapter",
    "Qwen3 MoE",
    "Qwen3-MoE",
    "edp_mesh",
)
leaks = [
    f"{p.relative_to(root)}: {word}"
    for p in sorted((root / QWEN3).rglob("*"))
    if p.is_file()
    for word in banned
    if word in p.read_text()
]
leaks += [
    f"{p.relative_to(root)}: debugmodel_moe"
    for p in sorted(root.rglob("*.py")) + sorted(root.rglob("*.toml"))
    if "debugmodel_moe" in p.read_text()
]
if leaks:
    sys.exit(f"prepare: the checkout still has the qwen3 MoE path: {'; '.join(leaks)}; extend this prepare.py")
