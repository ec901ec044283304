"""The pieces the throughput work added: sync-free expert counts, the grouped-GEMM expert MLP (run here on
CPU, where torch >= 2.9 has `torch._grouped_mm`), autocast's GEMM dtype, and the side-by-side summariser
checked against a recorded device run."""

import re
import subprocess
import sys

import torch

from reftrain.config import PACKAGE_ROOT
from reftrain.moe import expert_counts, expert_mlp_grouped, expert_mlp_reference, matmul_dtype

RECORDED_RUN = PACKAGE_ROOT / "benchmarks" / "results" / "2026-11-21-h100-side-by-side.txt"


def test_expert_counts_equal_bincount_including_unused_experts():
    index = torch.tensor([3, 0, 3, 5, 0, 3])
    assert expert_counts(index, 8).tolist() == torch.bincount(index, minlength=8).tolist()
    assert expert_counts(index, 8).tolist() == [2, 0, 0, 3, 0, 1, 0, 0]


def test_grouped_expert_mlp_matches_per_expert_loop_forward_and_backward():
    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([5, 0, 7, 1])  # an expert with no rows must not disturb its neighbours
    x = torch.randn(int(counts.sum()), 16, generator=g, requires_grad=True)
    gate_up = torch.randn(4, 2 * 24, 16, generator=g, requires_grad=True)
    down = torch.randn(4, 16, 24, generator=g, requires_grad=True)
    grad_out = torch.randn(x.shape[0], 16, generator=g)

    results = []
    for fn in (expert_mlp_grouped, expert_mlp_reference):
        out = fn(x, gate_up, down, counts)
        grads = torch.autograd.grad(out, (x, gate_up, down), grad_out)
        results.append((out, *grads))
    for fast, ref in zip(*results):
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    assert results[0][2][1].abs().sum() == 0  # the unused expert's weights get exactly zero gradient


def test_matmul_dtype_is_autocasts_dtype_when_on():
    x = torch.randn(2, 2)
    assert matmul_dtype(x) == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert matmul_dtype(x) == torch.bfloat16


def test_summary_of_recorded_run_reproduces_its_table(tmp_path):
    """Split the recorded run's output back into phase logs; the summariser must print the same table the
    device printed from the full logs (TorchTitan's mean over steps 6-20, ours from the bench JSON)."""
    text = RECORDED_RUN.read_text()
    parts = re.split(r"^=== (\S+) \(limit.*$", text, flags=re.M)
    for name, body in zip(parts[1::2], parts[2::2]):
        (tmp_path / f"{name}.log").write_text(body.split("\n=== ")[0])
    recorded_table = text[text.index("| trainer |") : text.index("DONE in")].strip()
    proc = subprocess.run(
        [sys.executable, str(PACKAGE_ROOT / "benchmarks" / "summarize.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == recorded_table
    assert re.search(r"^\| qwen \| [\d,]+ \(noac\) \| [\d,]+ \(\w+\) \| \d\.\d\dx \|$", proc.stdout, re.M)


def test_summary_of_a_missing_folder_says_what_to_pass(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(PACKAGE_ROOT / "benchmarks" / "summarize.py"), str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "is not a folder" in proc.stderr and "side_by_side.sh" in proc.stderr
