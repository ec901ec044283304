"""The two entry points as users launch them: `python -m` and `torchrun -m`, train and bench."""

import json
import re
import subprocess
import sys
from pathlib import Path

from reftrain.bench import attention_dims
from reftrain.config import PACKAGE_ROOT, load_config

CONFIG = "examples/tiny_qwen3_moe.toml"
SMALL = ["--training.steps=3", "--data.seq_len=32", "--training.log_interval=1"]
STEP_LINE = re.compile(
    r"^step +(\d+) \| loss ([\d.]+) \| aux ([\d.]+) \| grad_norm ([\d.]+) \| lr ([\d.e+-]+) "
    r"\| tokens/s (\d+) \| peak_mem ([\d.]+) GB$"
)


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=PACKAGE_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_torchrun_trains_with_expert_parallelism():
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    # on CPU wherever it runs: with "auto", a host with one GPU for the two processes is an error (test_config.py)
    cpu = "--training.device=cpu"
    proc = run([torchrun, "--nproc_per_node", "2", "-m", "reftrain.train", CONFIG, "--parallel.ep=2", cpu, *SMALL])
    steps = [STEP_LINE.match(line) for line in proc.stdout.splitlines() if line.startswith("step")]
    assert [int(m.group(1)) for m in steps if m] == [1, 2, 3]
    assert all(float(m.group(2)) > 0 for m in steps)


def test_bench_prints_one_json_line_with_stated_flops():
    proc = run(
        [
            sys.executable,
            "-m",
            "reftrain.bench",
            CONFIG,
            "--warmup",
            "1",
            "--steps",
            "2",
            "--data.seq_len=32",
            "--peak-tflops=100",
        ]
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    cfg = load_config(PACKAGE_ROOT / CONFIG, ["--data.seq_len=32"])
    hf = cfg.hf_config_dict()
    heads, d_qk, d_v = attention_dims(hf)
    h, e_i, k = hf["hidden_size"], hf["moe_intermediate_size"], hf["num_experts_per_tok"]
    per_layer = (
        h * heads * d_qk * 2
        + h * hf["num_key_value_heads"] * d_qk * 2
        + 2 * d_qk
        + 2 * h
        + hf["num_experts"] * h
        + k * 3 * h * e_i
    )
    active = hf["num_hidden_layers"] * per_layer + h * hf["vocab_size"] + h
    assert result["active_params"] == active
    tokens = cfg.data.global_batch_size * cfg.data.seq_len
    flops = (6 * active + 6 * hf["num_hidden_layers"] * heads * cfg.data.seq_len * (d_qk + d_v)) * tokens
    assert abs(result["tflops"] - flops / result["step_time_s"] / 1e12) < 1e-9
    assert result["mfu"] == result["tflops"] / 100
    assert (
        result["tokens_per_s"] > 0 and result["peak_mem_gb"] > 0 and result["config"]["data"]["source"] == "synthetic"
    )


def test_bench_runs_another_model_config_and_states_its_spread():
    """--model-config swaps the model under the same run config; --repeats times separate windows."""
    tiny = sorted((PACKAGE_ROOT / "examples" / "models").glob("*_tiny.json"))
    other = next(p for p in tiny if json.loads(p.read_text())["model_type"] != "qwen3_moe")
    proc = run(
        [
            sys.executable,
            "-m",
            "reftrain.bench",
            CONFIG,
            "--warmup",
            "1",
            "--steps",
            "2",
            "--repeats",
            "3",
            "--data.seq_len=32",
            "--model-config",
            str(other.relative_to(PACKAGE_ROOT)),
        ]
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["model_type"] == json.loads(other.read_text())["model_type"]
    assert result["config"]["model"]["config"] == str(other)
    samples = result["tokens_per_s_samples"]
    assert len(samples) == 3 and result["repeats"] == 3 and result["layout"] == "pp=1 dp=1 ep=1"
    assert sorted(samples)[1] == result["tokens_per_s"]
    assert result["tokens_per_s_min"] == min(samples) and result["tokens_per_s_max"] == max(samples)
    missing = subprocess.run(
        [sys.executable, "-m", "reftrain.bench", CONFIG, "--model-config", "nope.json"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=PACKAGE_ROOT,
    )
    assert missing.returncode == 2 and "--model-config nope.json: no such file" in missing.stderr
