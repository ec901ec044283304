"""Puts the run to profile into the checkout: runs/profile/train.toml, 3 steps of a small qwen3_moe.

The shape is chosen so the top 3 operators of a step stand well apart on CPU (attention backward,
matmul, attention forward; the 4th is 2.8-3.8x below the 3rd on 1 thread in the sandbox), which keeps
the task's answer the same from one machine load to the next. Usage: python prepare.py <checkout>
"""

import sys
from pathlib import Path

root = Path(sys.argv[1]).resolve()
RUN_CONFIG = """# The run to profile: 3 steps on the bundled corpus; steps 1 and 2 are warm-up, step 3 is profiled.
#   python -m reftrain.train runs/profile/train.toml      (from the checkout's root)

[model]
config = "../../examples/models/qwen3_moe_tiny.json"

[model.overrides]
hidden_size = 128
num_attention_heads = 8
num_key_value_heads = 4
intermediate_size = 256
moe_intermediate_size = 64

[training]
device = "cpu"  # operators of a CPU run, on GPU hosts too
steps = 3
log_interval = 1
seed = 0

[data]
source = "corpus"
seq_len = 1024
global_batch_size = 4
micro_batch_size = 2
"""
if not (root / "examples/models/qwen3_moe_tiny.json").is_file():
    sys.exit("prepare: examples/models/qwen3_moe_tiny.json does not exist; the framework changed, update prepare.py")
(root / "runs" / "profile").mkdir(parents=True)
(root / "runs" / "profile" / "train.toml").write_text(RUN_CONFIG)
