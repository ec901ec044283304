"""Puts the example run of getting-started into the checkout: runs/getting-started/run.sh, reftrain's tiny
Qwen3-MoE example (examples/tiny_qwen3_moe.toml) for 5 steps, a loss logged at each, with the checkout's
own .venv/bin/python. Nothing else changes: the checkout is the framework as shipped, and the sandbox
(task.toml python = "bare") is what lacks its packages. The hidden test holds the same script
(tests/test_getting_started.py RUN_SH) and checks it is unchanged. Usage: python prepare.py <checkout>
"""

import sys
from pathlib import Path

root = Path(sys.argv[1]).resolve()
EXAMPLE = "examples/tiny_qwen3_moe.toml"
RUN_SH = f"""#!/usr/bin/env bash
# The example run of getting-started: reftrain's tiny Qwen3-MoE ({EXAMPLE}) on the bundled corpus, on
# CPU, for 5 steps with the loss logged at each. From the checkout's root, after `bash setup_env.sh`:
#   bash runs/getting-started/run.sh
set -euo pipefail
exec .venv/bin/python -m reftrain.train {EXAMPLE} --training.steps=5 --training.log_interval=1 --training.device=cpu
"""

if not (root / EXAMPLE).is_file():
    sys.exit(f"prepare: {EXAMPLE} is missing; the framework changed, update prepare.py and the hidden test")
run = root / "runs" / "getting-started"
run.mkdir(parents=True)
(run / "run.sh").write_text(RUN_SH)
