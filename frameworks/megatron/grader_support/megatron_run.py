"""A Megatron-LM run an operate task hands the agent: `runs/<name>/train.toml` (pretrain_gpt.py's flags as a TOML
table) and `runs/<name>/launch.py`, its launcher. prepare.py writes them into the checkout and compiles the
dataset helper there; the hidden tests rebuild the same files into a scratch folder and launch them from the
graded checkout with their own hooks.

Why a launcher: pretrain_gpt.py always calls `compile_helpers()` (a `make` that needs g++, pybind11 and
python3-config at run time); the checkout is prepared with the helper built, so the launcher skips that step,
as the throughput command of frameworks/megatron/framework.toml does.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

LAUNCH = '''"""Launches train.toml (next to this file) with Megatron-LM's pretrain_gpt.py. From the checkout's root:

    torchrun --standalone --nproc_per_node 1 {run}/launch.py [more pretrain_gpt.py flags]

Each `name = value` of [args] becomes `--name value` (`name = true`: the bare flag `--name`); flags given on this
command line follow them, so argparse takes theirs. The dataset helper was compiled when the checkout was
prepared (megatron/core/datasets/helpers_cpp*.so), so Megatron's own compile step is skipped.
"""

import glob
import os
import runpy
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.getcwd()
sys.path.insert(0, ROOT)
with open(os.path.join(HERE, "train.toml"), "rb") as f:
    config = tomllib.load(f)
flags = []
for name, value in config["args"].items():
    flags += [f"--{{name}}"] if value is True else [f"--{{name}}", str(value)]
import megatron.core.datasets.utils as dataset_utils  # noqa: E402

if glob.glob(os.path.join(ROOT, "megatron/core/datasets/helpers_cpp*.so")):
    dataset_utils.compile_helpers = lambda: None
os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "1")
sys.argv = ["pretrain_gpt.py", *flags, *sys.argv[1:]]
runpy.run_path(os.path.join(ROOT, "pretrain_gpt.py"), run_name="__main__")
'''

# The flags every run shares: a small GPT with routed experts on Megatron's local spec (no Transformer Engine, no
# Apex, so the TE fusions are off), mock data, one GPU, deterministic mode (bit-identical reruns).
COMMON_ARGS = """\
transformer-impl = "local"
num-layers = 3
moe-layer-freq = "[0,1,1]"
hidden-size = 256
num-attention-heads = 4
ffn-hidden-size = 512
num-experts = 8
moe-router-topk = 2
moe-ffn-hidden-size = 256
moe-token-dispatcher-type = "alltoall"
moe-router-load-balancing-type = "aux_loss"
moe-aux-loss-coeff = 1e-2
seq-length = 128
max-position-embeddings = 128
position-embedding-type = "rope"
normalization = "RMSNorm"
swiglu = true
disable-bias-linear = true
untie-embeddings-and-output-weights = true
micro-batch-size = 2
global-batch-size = 4
lr = 3e-3
min-lr = 3e-4
lr-decay-style = "cosine"
lr-warmup-iters = 2
clip-grad = 1.0
weight-decay = 0.1
mock-data = true
tokenizer-type = "NullTokenizer"
vocab-size = 1024
split = "99,1,0"
log-interval = 1
eval-iters = 0
eval-interval = 1000
seed = 1234
deterministic-mode = true
no-gradient-accumulation-fusion = true
attention-backend = "unfused"
no-rope-fusion = true
no-bias-swiglu-fusion = true
no-bias-dropout-fusion = true
no-masked-softmax-fusion = true
no-persist-layer-norm = true
"""


def run_config(header: str, overrides: str) -> str:
    """train.toml: `header` (comment lines), then [args]: the common flags, each replaced by its line in `overrides`
    (TOML lines `name = value`) where that names it, then the overrides' new flags, in order."""
    given = {line.split("=", 1)[0].strip(): line for line in overrides.strip().splitlines() if line.strip()}
    tomllib.loads(overrides)  # a malformed override fails here, where the run is written, not in the agent's run
    lines = [given.pop(line.split("=", 1)[0].strip(), line) for line in COMMON_ARGS.splitlines()]
    text = f"{header.rstrip()}\n\n[args]\n" + "\n".join([*lines, *given.values()]) + "\n"
    tomllib.loads(text)
    return text


def write_run(run: Path, config: str) -> None:
    """train.toml and launch.py into `run` (runs/<name>, relative paths in the launcher's doc from the root)."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "train.toml").write_text(config)
    (run / "launch.py").write_text(LAUNCH.format(run=f"runs/{run.name}"))


def build_dataset_helper(root: Path) -> Path:
    """Compile megatron/core/datasets/helpers.cpp for this Python (what its Makefile does, without `make` or
    python3-config); returns the .so. Exits with the reason when no C++ compiler or pybind11 is at hand."""
    folder = root / "megatron" / "core" / "datasets"
    target = folder / f"helpers_cpp{sysconfig.get_config_var('EXT_SUFFIX')}"
    includes = subprocess.run([sys.executable, "-m", "pybind11", "--includes"], capture_output=True, text=True)
    if includes.returncode != 0:
        sys.exit(f"prepare: pybind11 is needed to build Megatron's dataset helper: {includes.stderr.strip()[-500:]}")
    command = ["g++", "-O3", "-Wall", "-shared", "-std=c++17", "-fPIC", *includes.stdout.split()]
    command += [str(folder / "helpers.cpp"), "-o", str(target)]
    try:
        built = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        sys.exit("prepare: g++ is needed to build Megatron's dataset helper (megatron/core/datasets/helpers.cpp)")
    if built.returncode != 0:
        sys.exit(f"prepare: building Megatron's dataset helper failed: {built.stderr.strip()[-2000:]}")
    return target


ANCHORS = ("pretrain_gpt.py", "megatron/core/transformer/moe/router.py", "megatron/core/datasets/helpers.cpp")


def prepare(root: Path, run_module, digests: dict[str, str]) -> None:
    """An operate task's prepare step: check the modules the prepared-checkout cache key does not hash against
    `digests` ({file name: sha256}, kept in prepare.py, which the key does hash), write the run
    (`run_module.write_inputs(root / "runs" / run_module.RUN)`) and build the dataset helper."""
    for path in (Path(run_module.__file__), Path(__file__)):
        if hashlib.sha256(path.read_bytes()).hexdigest() != digests.get(path.name):
            sys.exit(f"prepare: {path.name} changed; set its sha256 in prepare.py's DIGESTS (re-prepares the checkout)")
    for anchor in ANCHORS:
        if not (root / anchor).is_file():
            sys.exit(f"prepare: the checkout has no {anchor}; the framework changed, update the task's prepare.py")
    run_module.write_inputs(root / "runs" / run_module.RUN)
    build_dataset_helper(root)
