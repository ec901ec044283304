"""The tiny model learns the bundled corpus: loss falls by at least 30% in 40 CPU steps."""

import pytest

from reftrain.config import PACKAGE_ROOT
from reftrain.testing import run_distributed, train_records

MARGIN = 0.30


@pytest.mark.timeout(120)
def test_tiny_qwen3_moe_loss_falls_on_bundled_corpus():
    config = str(PACKAGE_ROOT / "examples" / "tiny_qwen3_moe.toml")
    records = run_distributed(
        train_records, 1, config, ["--training.steps=40", "--data.seq_len=64", "--training.log_interval=100"]
    )[0]
    first = records[0]["loss"]
    last = sum(r["loss"] for r in records[-5:]) / 5
    assert last <= (1 - MARGIN) * first, f"loss {first:.3f} -> {last:.3f}: fell less than {MARGIN:.0%}"
    assert all(r["grad_norm"] > 0 and r["aux"] > 0 for r in records)
