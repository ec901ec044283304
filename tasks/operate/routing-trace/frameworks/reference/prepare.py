"""Puts a small checkpoint and its run config into the checkout: the starting point of routing-trace.

The checkpoint is a freshly initialised qwen3_moe (reftrain's own deterministic `init_weights`, seed
below) exported as Hugging Face safetensors, so the hidden tests can rebuild it bit for bit and compute
the trace from their own copy. Layer 0 is dense (`mlp_only_layers`) and the router does not renormalise
its top-k (`norm_topk_prob = false`): a trace must follow what the model does, not what MoE routers
usually do. Usage: python prepare.py <checkout>
"""

import json
import sys
from pathlib import Path

root = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(root))  # the checkout's own reftrain makes the checkpoint, not an installed one

from reftrain.hf_checkpoint import export_hf_checkpoint  # noqa: E402
from reftrain.models import build_model  # noqa: E402

CHECKPOINT_SEED = 1234
OVERRIDES = {"num_hidden_layers": 3, "mlp_only_layers": [0], "norm_topk_prob": False, "num_experts_per_tok": 2}
RUN_CONFIG = """# The run whose routing is traced: 4 steps from the checkpoint next to this file, on the bundled corpus.
#   python -m reftrain.train runs/routing/train.toml      (from the checkout's root)

[model]
config = "checkpoint/config.json"

[training]
device = "cpu"  # the trace is of a CPU run, on GPU hosts too
steps = 4
log_interval = 1
lr = 3e-3
min_lr = 3e-4
warmup_steps = 2
seed = 0
aux_loss_coef = 0.001

[data]
source = "corpus"
seq_len = 64
global_batch_size = 4
micro_batch_size = 2

[checkpoint]
init_from_hf = "runs/routing/checkpoint"
"""

hf = json.loads((root / "examples/models/qwen3_moe_tiny.json").read_text())
missing = sorted(set(OVERRIDES) - set(hf))
if missing:
    sys.exit(f"prepare: examples/models/qwen3_moe_tiny.json has no {missing}; the framework changed, update prepare.py")
hf.update(OVERRIDES)
model = build_model(hf, device="cpu")
model.init_weights(CHECKPOINT_SEED)
run = root / "runs" / "routing"
export_hf_checkpoint(model, run / "checkpoint", hf)
(run / "train.toml").write_text(RUN_CONFIG)
