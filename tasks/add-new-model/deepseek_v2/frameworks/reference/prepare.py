"""Removes the DeepSeek-V2 model from a reftrain checkout; the agent adds it back (gold = the original).

Every edit asserts its anchor text, so a refactor of reftrain fails preparation loudly instead of
producing a task whose "removed" model is still there. Usage: python prepare.py <checkout>
"""

import re

from bench.prepare_kit import Checkout

MODEL = "deepseek_v2"
REAL_CONFIG = "DeepSeek-V2-Lite.json"
ck = Checkout()
root = ck.root


removed = ck.hand_over_reftrain_model_configs(MODEL, REAL_CONFIG)  # task_assets/, example configs gone

ck.remove(f"reftrain/models/{MODEL}.py")
ck.edit(
    "reftrain/models/__init__.py", "from reftrain.models.deepseek_v2 import DeepseekV2Config, DeepseekV2ForCausalLM\n"
)
ck.edit("reftrain/models/__init__.py", '    "deepseek_v2": (DeepseekV2Config, DeepseekV2ForCausalLM),\n')
ck.edit("reftrain/hf_checkpoint.py", '    "deepseek_v2": ("mlp", "gate_proj", "up_proj", "down_proj"),\n')
ck.edit(
    ".agents/skills/add-new-model/SKILL.md",
    "(e.g. DeepSeek's latent norms use eps 1e-6, not `rms_norm_eps`)",
    "(e.g. a norm whose eps is not `rms_norm_eps`)",
)
ck.edit(
    ".agents/skills/add-new-model/SKILL.md",
    "some routers compute in fp32 (DeepSeek), some",
    "some routers compute in fp32, some",
)

ck.edit(
    "tests/hf_models.py",
    'MODEL_TYPES = ("qwen3_moe", "mixtral", "deepseek_v2")',
    'MODEL_TYPES = ("qwen3_moe", "mixtral")',
)
ck.edit(
    "tests/hf_models.py", '    "deepseek_v2": (transformers.DeepseekV2Config, transformers.DeepseekV2ForCausalLM),\n'
)
parity = root / "tests/test_hf_parity.py"
rows = re.findall(r'^    \("deepseek_v2", \{.*\}\),\n', parity.read_text(), flags=re.M)
if not rows:
    ck.fail("no deepseek_v2 rows in tests/test_hf_parity.py FIELD_OVERRIDES")
for row in rows:
    ck.edit("tests/test_hf_parity.py", row)
ck.edit("tests/test_hf_parity.py", ', "DeepSeek-V2-Lite"]', "]")
ck.edit("tests/test_models.py", r"\['deepseek_v2', 'mixtral', 'qwen3_moe'\]", r"\['mixtral', 'qwen3_moe'\]")

# Docs may mention the model's files or commands; drop those lines (prose naming "DeepSeek" stays).
ck.drop_lines(sorted(root.rglob("*.md")), rf"\b{MODEL}\b")
ck.leak_check(rf"\b{MODEL}\b|DeepseekV2[A-Z]\w+", skip_parts=("task_assets",))
