"""Hidden grader of add-new-model/mixtral on Megatron-LM (one GPU): Mixtral enters Megatron through its checkpoint
converter, so the agent's `tools/checkpoint/loader_mixtral_hf.py` is run the way the instruction says, on a tiny
random transformers Mixtral this module makes (not the task's asset: other sizes, experts and top-k, so nothing
hard-coded from the asset passes), and the Megatron checkpoint it writes is checked:

1. the converter exits 0 and wrote a checkpoint (convert.py exits 0 even when its saver process dies);
2. the arguments saved with it describe the model (what `--use-checkpoint-args` rebuilds it from);
3. loaded into GPTModel (local spec) by mixtral_parity.py: the weights are transformers' through the grader's own
   name mapping, and logits, loss and every gradient match transformers in fp32;
4. Megatron's own pretrain_gpt.py trains 3 iterations from it (launcher: grader_support/megatron_run.py).

Everything numeric needs CUDA (Megatron's MoE path and rotary embeddings call it directly).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import megatron_run
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="Megatron's MoE path needs a CUDA GPU")

# The grader's Mixtral: GQA with one key/value head, 6 experts top-3, RoPE base 5e5, untied embeddings.
CONFIG = {
    "architectures": ["MixtralForCausalLM"],
    "model_type": "mixtral",
    "vocab_size": 384,
    "hidden_size": 64,
    "intermediate_size": 80,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "num_local_experts": 6,
    "num_experts_per_tok": 3,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "max_position_embeddings": 256,
    "initializer_range": 0.1,
    "sliding_window": None,
    "router_jitter_noise": 0.0,
    "router_aux_loss_coef": 0.02,
    "tie_word_embeddings": False,
}


def _env() -> dict:
    return {
        **os.environ,
        "CUDA_DEVICE_MAX_CONNECTIONS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]),
    }


def _tail(log: str) -> str:
    """What of a failed run's log to show: from the first traceback on, else its end."""
    start = log.find("Traceback (most recent call last)")
    return log[start : start + 6000] if start >= 0 else log[-6000:]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    from transformers import MixtralConfig, MixtralForCausalLM

    folder = tmp_path_factory.mktemp("hf_mixtral")
    torch.manual_seed(0)
    MixtralForCausalLM(MixtralConfig(**CONFIG)).float().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def converted(hf_dir, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """The instruction's conversion command, run from the graded checkout."""
    out = tmp_path_factory.mktemp("megatron_mixtral") / "ckpt"
    command = [sys.executable, "tools/checkpoint/convert.py", "--model-type", "GPT", "--loader", "mixtral_hf"]
    command += ["--saver", "core", "--saver-transformer-impl", "local", "--load-dir", str(hf_dir)]
    command += ["--save-dir", str(out), "--target-tensor-parallel-size", "1", "--target-pipeline-parallel-size", "1"]
    proc = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    return proc, out


def _checkpoint_file(out: Path) -> Path | None:
    files = sorted(out.glob("iter_*/mp_rank_00/model_optim_rng.pt")) + sorted(out.glob("release/mp_rank_00/*.pt"))
    return files[0] if files else None


@pytest.fixture(scope="module")
def checkpoint(converted) -> Path:
    proc, out = converted
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"tools/checkpoint/convert.py exited {proc.returncode}:\n{_tail(log)}"
    found = _checkpoint_file(out)
    assert found is not None and (out / "latest_checkpointed_iteration.txt").is_file(), (
        "tools/checkpoint/convert.py exited 0 but wrote no Megatron checkpoint (no latest_checkpointed_iteration.txt "
        f"and iter_*/mp_rank_00/model_optim_rng.pt under --save-dir; the saver process may have died):\n{_tail(log)}"
    )
    return out


def test_the_converter_writes_a_megatron_checkpoint(checkpoint):
    assert _checkpoint_file(checkpoint).stat().st_size > 0


def test_saved_arguments_describe_the_model(checkpoint):
    saved = vars(torch.load(_checkpoint_file(checkpoint), map_location="cpu", weights_only=False)["args"])
    heads = CONFIG["num_attention_heads"]
    expected = {
        "num_layers": CONFIG["num_hidden_layers"],
        "hidden_size": CONFIG["hidden_size"],
        "num_attention_heads": heads,
        "group_query_attention": True,
        "num_query_groups": CONFIG["num_key_value_heads"],
        "kv_channels": CONFIG["hidden_size"] // heads,
        "num_experts": CONFIG["num_local_experts"],
        "moe_router_topk": CONFIG["num_experts_per_tok"],
        "moe_ffn_hidden_size": CONFIG["intermediate_size"],
        "rotary_base": CONFIG["rope_theta"],
        "position_embedding_type": "rope",
        "swiglu": True,
        "normalization": "RMSNorm",
        "untie_embeddings_and_output_weights": True,
        "add_bias_linear": False,
        "padded_vocab_size": CONFIG["vocab_size"],
    }
    wrong = {k: (saved.get(k, "<missing>"), v) for k, v in expected.items() if saved.get(k, "<missing>") != v}
    assert not wrong, (
        "the checkpoint's saved arguments (what --use-checkpoint-args rebuilds the model from) differ "
        + (
            "from the Mixtral config: "
            + ", ".join(f"{k} = {got!r}, expected {want!r}" for k, (got, want) in wrong.items())
        )
    )


@pytest.fixture(scope="module")
def parity(checkpoint, hf_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("parity") / "parity.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    command += [str(HERE / "mixtral_parity.py"), str(checkpoint), str(hf_dir), str(out)]
    proc = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"loading the converted checkpoint into GPTModel failed (exit {proc.returncode}):\n"
        f"{_tail(proc.stdout + proc.stderr)}"
    )
    return torch.load(out, weights_only=False)


def test_converted_weights_are_the_hf_weights(parity):
    missing = sorted(set(parity["expected_names"]) - set(parity["megatron_names"]))
    extra = sorted(set(parity["megatron_names"]) - set(parity["expected_names"]))
    assert not missing and not extra, f"GPTModel's parameters differ from Mixtral's: missing {missing}, extra {extra}"
    misshapen = {
        n: (s, parity["expected_shapes"][n]) for n, s in parity["shapes"].items() if s != parity["expected_shapes"][n]
    }
    assert not misshapen, f"parameter shapes (Megatron, expected): {misshapen}"
    off = {n: e for n, e in parity["weight_errors"].items() if e > 1e-6}
    assert not off, f"converted weights differ from transformers' (relative error per parameter): {off}"


def test_logits_match_transformers(parity):
    ours, theirs = parity["logits"], parity["hf_logits"]
    assert ours.shape == theirs.shape, f"logits shape {tuple(ours.shape)}, transformers {tuple(theirs.shape)}"
    error = float((ours - theirs).norm() / theirs.norm())
    assert error < 1e-5, f"logits differ from transformers': relative error {error:.3e} (fp32)"


def test_loss_matches_transformers(parity):
    assert math.isclose(parity["loss"], parity["hf_loss"], rel_tol=1e-5), (
        f"Megatron's cross entropy {parity['loss']:.7f}, transformers' {parity['hf_loss']:.7f}"
    )


def test_every_gradient_matches_transformers(parity):
    assert not parity["without_grad"], f"parameters without a gradient: {parity['without_grad']}"
    off = {n: e for n, e in parity["grad_errors"].items() if e > 1e-4}
    assert not off, f"gradients differ from transformers' (relative error per parameter, fp32): {off}"
    assert set(parity["grad_errors"]) == set(parity["expected_names"]), "a gradient could not be compared"


def test_pretrain_gpt_trains_from_the_converted_checkpoint(checkpoint, tmp_path_factory):
    scratch = tmp_path_factory.mktemp("train")
    run = scratch / "runs" / "mixtral"
    args = f"""[args]
use-checkpoint-args = true
load = "{checkpoint}"
save = "{scratch / "saved"}"
save-interval = 1000
ckpt-format = "torch"
finetune = true
no-load-optim = true
no-load-rng = true
no-use-tokenizer-model-from-checkpoint-args = true
tokenizer-type = "NullTokenizer"
vocab-size = {CONFIG["vocab_size"]}
norm-epsilon = {CONFIG["rms_norm_eps"]}
transformer-impl = "local"
attention-backend = "unfused"
moe-token-dispatcher-type = "alltoall"
seq-length = 64
micro-batch-size = 2
global-batch-size = 4
train-iters = 3
lr = 1e-4
mock-data = true
split = "99,1,0"
log-interval = 1
eval-iters = 0
eval-interval = 1000
seed = 1234
no-gradient-accumulation-fusion = true
no-rope-fusion = true
no-bias-swiglu-fusion = true
no-bias-dropout-fusion = true
no-masked-softmax-fusion = true
no-persist-layer-norm = true
"""
    megatron_run.write_run(run, "# add-new-model/mixtral: 3 iterations from the converted checkpoint\n" + args)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    command += [str(run / "launch.py")]
    proc = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, (
        f"pretrain_gpt.py from the converted checkpoint exited {proc.returncode}:\n{_tail(log)}"
    )
    assert re.search(r"successfully loaded checkpoint from .*" + re.escape(str(checkpoint)), log), (
        f"pretrain_gpt.py did not report loading the converted checkpoint:\n{log[-4000:]}"
    )
    losses = [float(x) for x in re.findall(r"iteration\s+\d+/\s*3 \|.*?lm loss: ([0-9.E+-]+)", log)]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses), (
        f"expected 3 iterations with a finite lm loss, got {losses}:\n{log[-4000:]}"
    )
