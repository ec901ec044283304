"""Removes Mixtral from Megatron-LM core_r0.19 (f8837c04): Megatron has no per-architecture model class, a model is
flags plus a checkpoint converter, so what goes is the Hugging Face loader of tools/checkpoint/convert.py
(`--loader mixtral_hf`) and the flag mappings (examples/mixtral/, the Mixtral training script in the MoE README).
The agent writes tools/checkpoint/loader_mixtral_hf.py back; the gold is our loader for this checkout
(solution.patch), because the pin's own no longer runs here (it asserts transformers 4.x and reads its per-expert
modules, builds with Transformer Engine, and sets too few process groups for this GPTModel).

Repairs of the converter that are not about Mixtral, made here so that the task is the loader: at this pin the core
saver (tools/checkpoint/saver_base.py) asserts a Transformer Engine install even for `--saver-transformer-impl
local`, and builds GPTModel without the fake process groups this Megatron asks for (data-parallel with GTP remat,
expert tensor and data parallel), so it fails for every model; its schema (tools/checkpoint/schema_core.py) knows
MoE layers of the Transformer Engine spec only, and names the experts one by one while the saver hands them over
stacked, so even there no expert weight is written (the saved experts are uninitialised memory). This checkout has
no Transformer Engine (the framework's local-spec choice), so the saver gets a local MoE schema that sets every
expert, and skips the TE check when saving a local model.

Also: the task's inputs (task_assets/mixtral/, the configs of reference_impl's Mixtral, pinned by digest) and
Megatron's dataset helper built into the checkout (the hidden test's training run skips Megatron's `make`).
Every edit asserts its anchor; a leak check ends it. Usage: python prepare.py <checkout>
"""

import hashlib
import shutil
import sys
from pathlib import Path

from bench.prepare_kit import TEXT_SUFFIXES, Checkout, import_pinned

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[4]
MEGATRON_RUN_SHA256 = "6e44ac4bef9b9992389fa286b774a56cc37f7c61725517cd5d8e58a939c0e6d3"
megatron_run = import_pinned(
    REPO / "frameworks" / "megatron" / "grader_support" / "megatron_run.py", MEGATRON_RUN_SHA256
)

ck = Checkout()

# The task's inputs: the tiny Mixtral's and Mixtral-8x7B's HF config.json, as reference_impl has them. The
# prepared-checkout cache key hashes this file, not those, hence the digests.
CONFIGS = {
    "config.json": ("mixtral_tiny.json", "184eb0bba06efc746ff86225e0aa6c0937677fd32be7ea49eeaf11321a3b3e2b"),
    "full-size/config.json": (
        "Mixtral-8x7B-v0.1.json",
        "5cea1299a269d268046f36bd0ce9920c65e681d691ed3659d4254d4ab7351bef",
    ),
}
for target, (name, digest) in CONFIGS.items():
    source = REPO / "reference_impl" / "examples" / "models" / name
    if hashlib.sha256(source.read_bytes()).hexdigest() != digest:
        sys.exit(f"prepare: reference_impl/examples/models/{name} changed; set its sha256 in this prepare.py")
    (ck.root / "task_assets" / "mixtral" / target).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, ck.root / "task_assets" / "mixtral" / target)

# ---- Mixtral out: the loader, the example, the flag mappings in the docs ----------------------------------------
ck.remove("tools/checkpoint/loader_mixtral_hf.py")
for name in ("README.md", "train_mixtral_8x7b_distributed.sh"):
    ck.remove(f"examples/mixtral/{name}")
if any((ck.root / "examples" / "mixtral").iterdir()):
    ck.fail("examples/mixtral/ holds more than its README and training script")
(ck.root / "examples" / "mixtral").rmdir()
ck.edit("docs/models/llms.md", "- `examples/mixtral/` - Mixtral MoE training\n")
ck.cut(
    "megatron/core/transformer/moe/README.md", "## Examples\n```bash\n#!/bin/bash\n\n# Runs Mixtral", "## Contributing"
)

# ---- the converter's repairs (not about Mixtral; see the docstring) ----------------------------------------------
SAVER = "tools/checkpoint/saver_base.py"
ck.edit(
    SAVER,
    '        te_version = PkgVersion(version("transformer-engine"))\n'
    '        assert te_version >= PkgVersion("0.12.0"), \\\n'
    '            "transformer engine version: %s (>=0.12.0 required)." % te_version\n',
    '        if self.args.saver_transformer_impl == "transformer_engine":\n'
    '            te_version = PkgVersion(version("transformer-engine"))\n'
    '            assert te_version >= PkgVersion("0.12.0"), \\\n'
    '                "transformer engine version: %s (>=0.12.0 required)." % te_version\n',
)
ck.edit(
    SAVER,
    "        mpu._INTRA_PARTIAL_DATA_PARALLEL_GROUP_WITH_CP = fake_dp_group\n",
    "        mpu._INTRA_PARTIAL_DATA_PARALLEL_GROUP_WITH_CP = fake_dp_group\n"
    "        mpu._DATA_PARALLEL_GROUP_WITH_GTP_REMAT = fake_dp_group\n"
    "        mpu._DATA_PARALLEL_GROUP_WITH_CP_WITH_GTP_REMAT = fake_dp_group\n"
    "        mpu._INTRA_PARTIAL_DATA_PARALLEL_GROUP_WITH_CP_WITH_GTP_REMAT = fake_dp_group\n"
    "        mpu._EXPERT_TENSOR_PARALLEL_GROUP = _ConverterFakeProcessGroup(size=1)\n"
    "        mpu._EXPERT_TENSOR_AND_MODEL_PARALLEL_GROUP = _ConverterFakeProcessGroup(size=1)\n"
    "        mpu._EXPERT_TENSOR_MODEL_PIPELINE_PARALLEL_GROUP = _ConverterFakeProcessGroup(size=1)\n"
    "        mpu._EXPERT_DATA_PARALLEL_GROUP_WITH_GTP_REMAT = fake_dp_ep_group\n",
)
SCHEMA = "tools/checkpoint/schema_core.py"
ck.edit(
    SCHEMA,
    "\n\ndef get_model_schema(\n",
    "\n\nclass CoreMoELocalSchema(CoreMoETESchema):\n"
    '    """MoE layers of the local spec: the input norm is its own module (TE fuses it into linear_qkv)."""\n\n'
    "    def __init__(self, model_type, num_experts, expert_model_parallel_size, prefix, extra_layer_schema):\n"
    "        super().__init__(model_type, num_experts, expert_model_parallel_size, prefix, {\n"
    '            "self_attn_norm_weight" : "input_layernorm.weight",\n'
    '            "self_attn_norm_bias" : "input_layernorm.bias",\n'
    "        } | extra_layer_schema)\n\n"
    "    def set_layer(self, model, layer_idx, params):\n"
    "        # The saver sends each expert projection stacked over the local experts; the schema names them one by\n"
    "        # one (mlp_fc1_weight.<e>), so unsplit they were never set.\n"
    "        params = dict(params)\n"
    '        for key in ("mlp_fc1_weight", "mlp_fc2_weight"):\n'
    "            if key in params:\n"
    "                for expert_idx, tensor in enumerate(params.pop(key)):\n"
    '                    params[f"{key}.{expert_idx}"] = tensor\n'
    "        super().set_layer(model, layer_idx, params)\n\n\ndef get_model_schema(\n",
)
ck.edit(
    SCHEMA,
    "        # Only support TE setter for MOE\n"
    '        assert transformer_impl == "transformer_engine"\n'
    "        assert isinstance(expert_model_parallel_size, int)\n"
    "        return CoreMoETESchema(model_type, num_experts, expert_model_parallel_size, prefix, extra_layer_schema)\n",
    "        assert isinstance(expert_model_parallel_size, int)\n"
    "        return {\n"
    '            "local" : CoreMoELocalSchema,\n'
    '            "transformer_engine" : CoreMoETESchema,\n'
    "        }[transformer_impl](model_type, num_experts, expert_model_parallel_size, prefix, extra_layer_schema)\n",
)

megatron_run.build_dataset_helper(ck.root)
ck.leak_check(
    r"mixtral_hf|loader_mixtral|block_sparse_moe|MixtralForCausalLM|MixtralConfig|examples/mixtral|Runs Mixtral",
    suffixes=(*TEXT_SUFFIXES, ".sh", ".yaml", ".yml", ".txt", ".rst"),
    skip_parts=("task_assets",),
)
