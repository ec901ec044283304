"""The inputs of routing-trace on Megatron-LM: runs/routing/train.toml and its launcher (megatron_run.py, from
frameworks/megatron/grader_support). prepare.py writes them into the checkout; the hidden test rebuilds them
into a scratch folder. The starting weights are Megatron's own initialisation after a fixed seed (`--seed`),
so there is no checkpoint file to hand over or to tamper with."""

from pathlib import Path

import megatron_run

RUN = "routing"
STEPS = 4
HEADER = f"""\
# The run whose routing is traced: Megatron-LM's pretrain_gpt.py, {STEPS} iterations of a small GPT whose layers 1
# and 2 have routed experts (8 experts, top-2; layer 0 is dense), on one GPU, in fp32, on Megatron's mock data.
# The starting weights: no checkpoint; Megatron's own initialisation after `seed` (on the GPU), the same on
# every run on this machine. Deterministic mode: reruns are bit-identical.
# Launch, from the checkout's root:
#   torchrun --standalone --nproc_per_node 1 runs/routing/launch.py
# launch.py turns [args] into pretrain_gpt.py's flags (name = value -> --name value; name = true -> --name)."""
RUN_CONFIG = megatron_run.run_config(HEADER, f"train-iters = {STEPS}\n")


def write_inputs(run: Path) -> None:
    megatron_run.write_run(run, RUN_CONFIG)
