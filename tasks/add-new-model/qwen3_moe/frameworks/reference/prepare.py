"""Removes the Qwen3-MoE model from a reftrain checkout; the agent adds it back (gold = the original).

Qwen3-MoE is reftrain's default example model, so its tiny run config and the tests that train it move to
the Mixtral twin (`examples/tiny_mixtral.toml`, identical but for the model config); the graded tests are the
originals, restored at grading. Every edit asserts its anchor text, so a refactor of reftrain fails
preparation loudly instead of producing a task whose "removed" model is still there; a leak check ends it.
Usage: python prepare.py <checkout>
"""

from bench.prepare_kit import Checkout

MODEL = "qwen3_moe"
REAL_CONFIG = "Qwen3-30B-A3B.json"
ck = Checkout()
root = ck.root


removed = ck.hand_over_reftrain_model_configs(MODEL, REAL_CONFIG)  # task_assets/, example configs gone
if not (root / "examples/tiny_mixtral.toml").is_file():
    ck.fail("examples/tiny_mixtral.toml (the default example's stand-in) does not exist")

ck.remove(f"reftrain/models/{MODEL}.py")
ck.edit("reftrain/models/__init__.py", "from reftrain.models.qwen3_moe import Qwen3MoeConfig, Qwen3MoeForCausalLM\n")
ck.edit("reftrain/models/__init__.py", '    "qwen3_moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM),\n')
ck.edit("reftrain/hf_checkpoint.py", '    "qwen3_moe": ("mlp", "gate_proj", "up_proj", "down_proj"),\n')
ck.edit("reftrain/config.py", 'config: str = "models/qwen3_moe_tiny.json"', 'config: str = "models/mixtral_tiny.json"')

# The default example and the files naming it: the Mixtral twin stands in.
STAND_INS = {
    "tiny_qwen3_moe.toml": "tiny_mixtral.toml",
    "gpu_qwen3_30b_a3b.toml": "gpu_mixtral_8x7b.toml",
    "qwen3_moe_tiny.json": "mixtral_tiny.json",
    "models/qwen3_moe.py": "models/mixtral.py",
    "check.py qwen3_moe": "check.py mixtral",
    "`qwen3_moe-pp2-dp1-ep2`": "`mixtral-pp2-dp1-ep2`",
}
for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".md", ".toml") and p.is_file()):
    if "task_assets" in path.relative_to(root).parts:
        continue
    text = path.read_text()
    new = text
    for old, stand_in in STAND_INS.items():
        new = new.replace(old, stand_in)
    if new != text:
        path.write_text(new)

ck.edit(
    "tests/hf_models.py",
    'MODEL_TYPES = ("qwen3_moe", "mixtral", "deepseek_v2")',
    'MODEL_TYPES = ("mixtral", "deepseek_v2")',
)
ck.edit("tests/hf_models.py", '    "qwen3_moe": (transformers.Qwen3MoeConfig, transformers.Qwen3MoeForCausalLM),\n')
parity = (root / "tests/test_hf_parity.py").read_text()
rows = [line + "\n" for line in parity.splitlines() if line.startswith('    ("qwen3_moe", {')]
if not rows:
    ck.fail("no qwen3_moe rows in tests/test_hf_parity.py FIELD_OVERRIDES")
for row in rows:
    ck.edit("tests/test_hf_parity.py", row)
ck.edit("tests/test_hf_parity.py", '"Qwen3-30B-A3B", ')
ck.edit("tests/test_models.py", r"\['deepseek_v2', 'mixtral', 'qwen3_moe'\]", r"\['deepseek_v2', 'mixtral'\]")
ck.edit(
    "tests/test_models.py", 'tiny_config("qwen3_moe", hidden_act="gelu")', 'tiny_config("mixtral", hidden_act="gelu")'
)
ck.edit(
    "tests/test_hf_checkpoint.py",
    '    config = tiny_config("qwen3_moe")\n',
    '    config = tiny_config("mixtral")\n',
)
ck.edit("tests/test_ladder.py", 'case = LadderCase("qwen3_moe")', 'case = LadderCase("mixtral")')
ck.edit("tests/test_gradients_across_layouts.py", 'LadderCase("qwen3_moe", dp=2)', 'LadderCase("mixtral", dp=2)')
ck.edit("tests/test_cli.py", '["model_type"] != "qwen3_moe")', '["model_type"] != "mixtral")')
ck.edit("tests/test_convergence.py", "def test_tiny_qwen3_moe_loss_falls", "def test_tiny_mixtral_loss_falls")

# Docs may still name the model's files; drop those lines (prose naming "Qwen3" stays).
ck.drop_lines(sorted(root.rglob("*.md")), rf"\b{MODEL}\b")
ck.leak_check(rf"\b{MODEL}\b|Qwen3Moe\w*", skip_parts=("task_assets",))
