"""The run heavy-kernels profiles on Megatron-LM: runs/profile/train.toml and its launcher (megatron_run.py, from
frameworks/megatron/grader_support). prepare.py writes them into the checkout; the hidden test rebuilds them
into a scratch folder, so nothing the agent wrote feeds the reference profile."""

from pathlib import Path

import megatron_run

RUN = "profile"
STEPS = 3
HEADER = f"""\
# The run to profile: Megatron-LM's pretrain_gpt.py, {STEPS} iterations of a small GPT with routed experts (layers 1
# and 2: 8 experts, top-2; hidden size 1024, sequences of 512, global batch 8) on one GPU, in bf16, on Megatron's
# mock data; iterations 1 and 2 are warm-up, iteration 3 is profiled. It trains on the GPU: its kernels are CUDA
# kernels. Deterministic mode (fixed kernels and seed).
# Launch, from the checkout's root:
#   torchrun --standalone --nproc_per_node 1 runs/profile/launch.py
# launch.py turns [args] into pretrain_gpt.py's flags (name = value -> --name value; name = true -> --name)."""
# Larger than the routing run (hidden 1024, sequences of 512), so the step's time goes to its matrix products
# and the top kernels stand apart from the elementwise ones.
SIZES = """
hidden-size = 1024
num-attention-heads = 8
ffn-hidden-size = 4096
moe-ffn-hidden-size = 1024
seq-length = 512
max-position-embeddings = 512
micro-batch-size = 4
global-batch-size = 8
"""
RUN_CONFIG = megatron_run.run_config(HEADER, f"train-iters = {STEPS}\nbf16 = true\n{SIZES}")


def write_inputs(run: Path) -> None:
    megatron_run.write_run(run, RUN_CONFIG)
