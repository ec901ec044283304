"""Removes the Mixtral model from a reftrain checkout; the agent adds it back (gold = the original).

Every edit asserts its anchor text, so a refactor of reftrain fails preparation loudly instead of
producing a task whose "removed" model is still there. Usage: python prepare.py <checkout>
"""

import re

from bench.prepare_kit import Checkout

MODEL = "mixtral"
REAL_CONFIG = "Mixtral-8x7B-v0.1.json"
ck = Checkout()
root = ck.root


removed = ck.hand_over_reftrain_model_configs(MODEL, REAL_CONFIG)  # task_assets/, example configs gone

ck.remove(f"reftrain/models/{MODEL}.py")
ck.edit("reftrain/models/__init__.py", "from reftrain.models.mixtral import MixtralConfig, MixtralForCausalLM\n")
ck.edit("reftrain/models/__init__.py", '    "mixtral": (MixtralConfig, MixtralForCausalLM),\n')
ck.edit("reftrain/hf_checkpoint.py", '    "mixtral": ("block_sparse_moe", "w1", "w3", "w2"),\n')
ck.edit(
    "reftrain/hf_checkpoint.py",
    "(`mlp.experts.{e}.gate_proj.weight`, Mixtral's\n`block_sparse_moe.experts.{e}.w1.weight`), which",
    "(`mlp.experts.{e}.gate_proj.weight`, or\nother block and projection names), which",
)
ck.edit(
    ".agents/skills/add-new-model/SKILL.md",
    "(Mixtral: `block_sparse_moe`,\n   `w1/w3/w2`)",
    "(another MoE\n   block name, per-projection names)",
)

ck.edit(
    "tests/hf_models.py",
    'MODEL_TYPES = ("qwen3_moe", "mixtral", "deepseek_v2")',
    'MODEL_TYPES = ("qwen3_moe", "deepseek_v2")',
)
ck.edit("tests/hf_models.py", '    "mixtral": (transformers.MixtralConfig, transformers.MixtralForCausalLM),\n')
parity = root / "tests/test_hf_parity.py"
rows = re.findall(r'^    \("mixtral", \{.*\}\),\n', parity.read_text(), flags=re.M)
if not rows:
    ck.fail("no mixtral rows in tests/test_hf_parity.py FIELD_OVERRIDES")
for row in rows:
    ck.edit("tests/test_hf_parity.py", row)
ck.edit("tests/test_hf_parity.py", '"Mixtral-8x7B-v0.1", ')
ck.edit("tests/test_models.py", r"\['deepseek_v2', 'mixtral', 'qwen3_moe'\]", r"\['deepseek_v2', 'qwen3_moe'\]")
ck.edit(
    "tests/test_models.py",
    'build_model(tiny_config("mixtral", rope_scaling=',
    'build_model(tiny_config("qwen3_moe", rope_scaling=',
)
ck.edit(
    "tests/test_hf_checkpoint.py",
    '    config = tiny_config("mixtral")\n    tensors =',
    '    config = tiny_config("qwen3_moe")\n    tensors =',
)
ck.edit("tests/test_ladder.py", "-k mixtral", "-k qwen3_moe")

# Docs may mention the model's files or commands; drop those lines (prose naming "Mixtral" stays).
ck.drop_lines(sorted(root.rglob("*.md")), rf"\b{MODEL}\b")
ck.leak_check(rf"\b{MODEL}\b|Mixtral[A-Z]\w+|block_sparse_moe", skip_parts=("task_assets",))
