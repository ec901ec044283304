"""Removes the Mixtral model from a reftrain checkout; the agent adds it back (gold = the original).

Every edit asserts its anchor text, so a refactor of reftrain fails preparation loudly instead of
producing a task whose "removed" model is still there. Usage: python prepare.py <checkout>
"""

import json
import re
import shutil
import sys
from pathlib import Path

MODEL = "mixtral"
REAL_CONFIG = "Mixtral-8x7B-v0.1.json"
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
edit("reftrain/models/__init__.py", "from reftrain.models.mixtral import MixtralConfig, MixtralForCausalLM\n")
edit("reftrain/models/__init__.py", '    "mixtral": (MixtralConfig, MixtralForCausalLM),\n')
edit("reftrain/hf_checkpoint.py", '    "mixtral": ("block_sparse_moe", "w1", "w3", "w2"),\n')
edit("reftrain/hf_checkpoint.py", "(`mlp.experts.{e}.gate_proj.weight`, Mixtral's\n"
     "`block_sparse_moe.experts.{e}.w1.weight`), which",
     "(`mlp.experts.{e}.gate_proj.weight`, or\nother block and projection names), which")
edit(".agents/skills/add-new-model/SKILL.md", "(Mixtral: `block_sparse_moe`,\n   `w1/w3/w2`)",
     "(another MoE\n   block name, per-projection names)")

edit("tests/hf_models.py", 'MODEL_TYPES = ("qwen3_moe", "mixtral", "deepseek_v2")',
     'MODEL_TYPES = ("qwen3_moe", "deepseek_v2")')
edit("tests/hf_models.py", '    "mixtral": (transformers.MixtralConfig, transformers.MixtralForCausalLM),\n')
parity = root / "tests/test_hf_parity.py"
rows = re.findall(r'^    \("mixtral", \{.*\}\),\n', parity.read_text(), flags=re.M)
if not rows:
    sys.exit("prepare: no mixtral rows in tests/test_hf_parity.py FIELD_OVERRIDES; update this prepare.py")
for row in rows:
    edit("tests/test_hf_parity.py", row)
edit("tests/test_hf_parity.py", '"Mixtral-8x7B-v0.1", ')
edit("tests/test_models.py", r"\['deepseek_v2', 'mixtral', 'qwen3_moe'\]", r"\['deepseek_v2', 'qwen3_moe'\]")
edit("tests/test_models.py", 'build_model(tiny_config("mixtral", rope_scaling=',
     'build_model(tiny_config("qwen3_moe", rope_scaling=')
edit("tests/test_hf_checkpoint.py", '    config = tiny_config("mixtral")\n    tensors =',
     '    config = tiny_config("qwen3_moe")\n    tensors =')
edit("tests/test_ladder.py", "-k mixtral", "-k qwen3_moe")

# Docs may mention the model's files or commands; drop those lines (prose naming "Mixtral" stays).
for doc in sorted(root.rglob("*.md")):
    lines = doc.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not re.search(rf"\b{MODEL}\b", line)]
    if len(kept) != len(lines):
        doc.write_text("".join(kept))

leaks = [str(p.relative_to(root)) for p in sorted(root.rglob("*"))
         if p.is_file() and p.suffix in (".py", ".toml", ".json", ".md") and "task_assets" not in p.parts
         and re.search(rf"\b{MODEL}\b|Mixtral[A-Z]\w+|block_sparse_moe", p.read_text())]
if leaks:
    sys.exit(f"prepare: the checkout still refers to {MODEL} in: {', '.join(leaks)}; extend this prepare.py")
