"""Removes the DeepSeek-V2 model from a reftrain checkout; the agent adds it back (gold = the original).

Every edit asserts its anchor text, so a refactor of reftrain fails preparation loudly instead of
producing a task whose "removed" model is still there. Usage: python prepare.py <checkout>
"""

import json
import re
import shutil
import sys
from pathlib import Path

MODEL = "deepseek_v2"
REAL_CONFIG = "DeepSeek-V2-Lite.json"
root = Path(sys.argv[1])


def edit(rel: str, old: str, new: str = "") -> None:
    path = root / rel
    text = path.read_text()
    found = text.count(old)
    if found != 1:
        sys.exit(f"prepare: expected the anchor exactly once in {rel}, found it {found} times:\n{old}\n"
                 "reftrain changed; update this prepare.py")
    path.write_text(text.replace(old, new))


def remove(rel: str) -> None:
    path = root / rel
    if not path.is_file():
        sys.exit(f"prepare: {rel} does not exist; reftrain changed, update this prepare.py")
    path.unlink()


# The task's inputs: the HF config.json of a tiny variant, and the real one for shape checks.
assets = root / "task_assets" / MODEL
(assets / "full-size").mkdir(parents=True)
shutil.copy(root / "examples/models" / f"{MODEL}_tiny.json", assets / "config.json")
shutil.copy(root / "examples/models" / REAL_CONFIG, assets / "full-size" / "config.json")
# Every example config of the model (tiny, real, benchmark variants) and the run configs using them.
removed = sorted(p.name for p in (root / "examples/models").glob("*.json")
                 if json.loads(p.read_text()).get("model_type") == MODEL)
if f"{MODEL}_tiny.json" not in removed or REAL_CONFIG not in removed:
    sys.exit(f"prepare: examples/models/ lacks {MODEL}_tiny.json or {REAL_CONFIG}; update this prepare.py")
for name in removed:
    remove(f"examples/models/{name}")
for toml in sorted((root / "examples").glob("*.toml")):
    if any(f'"models/{name}"' in toml.read_text() for name in removed):
        toml.unlink()

remove(f"reftrain/models/{MODEL}.py")
edit("reftrain/models/__init__.py", "from reftrain.models.deepseek_v2 import DeepseekV2Config, DeepseekV2ForCausalLM\n")
edit("reftrain/models/__init__.py", '    "deepseek_v2": (DeepseekV2Config, DeepseekV2ForCausalLM),\n')
edit("reftrain/hf_checkpoint.py", '    "deepseek_v2": ("mlp", "gate_proj", "up_proj", "down_proj"),\n')
edit(".agents/skills/add-new-model/SKILL.md", "(e.g. DeepSeek's latent norms use eps 1e-6, not `rms_norm_eps`)",
     "(e.g. a norm whose eps is not `rms_norm_eps`)")
edit(".agents/skills/add-new-model/SKILL.md", "some routers compute in fp32 (DeepSeek), some", "some routers compute in fp32, some")

edit("tests/hf_models.py", 'MODEL_TYPES = ("qwen3_moe", "mixtral", "deepseek_v2")',
     'MODEL_TYPES = ("qwen3_moe", "mixtral")')
edit("tests/hf_models.py", '    "deepseek_v2": (transformers.DeepseekV2Config, transformers.DeepseekV2ForCausalLM),\n')
parity = root / "tests/test_hf_parity.py"
rows = re.findall(r'^    \("deepseek_v2", \{.*\}\),\n', parity.read_text(), flags=re.M)
if not rows:
    sys.exit("prepare: no deepseek_v2 rows in tests/test_hf_parity.py FIELD_OVERRIDES; update this prepare.py")
for row in rows:
    edit("tests/test_hf_parity.py", row)
edit("tests/test_hf_parity.py", ', "DeepSeek-V2-Lite"]', "]")
edit("tests/test_models.py", r"\['deepseek_v2', 'mixtral', 'qwen3_moe'\]", r"\['mixtral', 'qwen3_moe'\]")

# Docs may mention the model's files or commands; drop those lines (prose naming "DeepSeek" stays).
for doc in sorted(root.rglob("*.md")):
    lines = doc.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not re.search(rf"\b{MODEL}\b", line)]
    if len(kept) != len(lines):
        doc.write_text("".join(kept))

leaks = [str(p.relative_to(root)) for p in sorted(root.rglob("*"))
         if p.is_file() and p.suffix in (".py", ".toml", ".json", ".md") and "task_assets" not in p.parts
         and re.search(rf"\b{MODEL}\b|DeepseekV2[A-Z]\w+", p.read_text())]
if leaks:
    sys.exit(f"prepare: the checkout still refers to {MODEL} in: {', '.join(leaks)}; extend this prepare.py")
