"""Adds the small `bench_utils` package the smoke task is about; independent of the trainer's code."""

import sys
from pathlib import Path

RATES = '''"""Throughput helpers for log lines."""


def tokens_per_second(tokens: int, seconds: float) -> float:
    """Training throughput in tokens per second."""
    raise NotImplementedError("tokens_per_second is not implemented yet")


def format_rate(tokens_per_s: float) -> str:
    """1234.5 -> '1.2K tok/s'; keeps log lines short."""
    for unit, scale in (("M", 1e6), ("K", 1e3)):
        if tokens_per_s >= scale:
            return f"{tokens_per_s / scale:.1f}{unit} tok/s"
    return f"{tokens_per_s:.1f} tok/s"
'''

root = Path(sys.argv[1])
(root / "bench_utils").mkdir(exist_ok=True)
(root / "bench_utils" / "__init__.py").write_text('"""Small helpers shared by scripts."""\n')
(root / "bench_utils" / "rates.py").write_text(RATES)
