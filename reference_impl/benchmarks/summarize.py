"""Summarises one side-by-side run: `python benchmarks/summarize.py LOG_DIR [--skip-steps N]`.

LOG_DIR holds `tt_<shape>_<variant>.log` (TorchTitan's per-step log lines) and
`ours_<shape>_<variant>.log` (the one JSON line of `reftrain.bench`). Prints a markdown table, one row per
run, then one row per shape: our fastest run over TorchTitan's fastest, both from this run's logs.
TorchTitan's figures are the mean over its steps after `--skip-steps` (compilation and warm-up happen in
the first ones); ours are the bench's own mean over its timed steps.
"""

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

TT_STEP = re.compile(
    r"step:\s*(\d+)\s.*?memory:\s*([\d.]+)GiB.*?tps:\s*([\d,]+)\s.*?tflops:\s*([\d,.]+)\s.*?mfu:\s*([\d.]+)%"
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def torchtitan_row(text: str, skip_steps: int) -> dict | None:
    """Mean tokens/s, TFLOP/s and MFU over steps > skip_steps; peak reserved memory over all steps."""
    steps = [m for m in map(TT_STEP.search, ANSI.sub("", text).splitlines()) if m]
    timed = [m for m in steps if int(m.group(1)) > skip_steps]
    if not timed:
        return None
    tps = [float(m.group(3).replace(",", "")) for m in timed]
    return {
        "tokens_per_s": statistics.mean(tps),
        "spread": f"{min(tps):,.0f}-{max(tps):,.0f}",
        "tflops": statistics.mean(float(m.group(4).replace(",", "")) for m in timed),
        "mfu": statistics.mean(float(m.group(5)) for m in timed) / 100,
        "memory_gib": max(float(m.group(2)) for m in steps),
        "steps": f"{int(timed[0].group(1))}-{int(timed[-1].group(1))}",
    }


def ours_row(text: str) -> dict | None:
    lines = [line for line in text.splitlines() if line.startswith("{") and '"tokens_per_s"' in line]
    if not lines:
        return None
    r = json.loads(lines[-1])
    return {
        "tokens_per_s": r["tokens_per_s"],
        "spread": "",
        "tflops": r["tflops"],
        "mfu": r["mfu"],
        "memory_gib": r.get("peak_reserved_gb") or r["peak_mem_gb"],
        "steps": f"{r['warmup'] + 1}-{r['warmup'] + r['steps']}",
    }


def best_cell(best: tuple[float, str] | None) -> str:
    return f"{best[0]:,.0f} ({best[1]})" if best else "n/a"


def summarize(log_dir: Path, skip_steps: int) -> str:
    rows, best = [], {}
    for path in sorted(log_dir.glob("*.log")):
        trainer, _, rest = path.stem.partition("_")
        if trainer not in ("tt", "ours"):
            continue
        shape, _, variant = rest.partition("_")
        text = path.read_text(errors="replace")
        row = torchtitan_row(text, skip_steps) if trainer == "tt" else ours_row(text)
        if row is None:
            reason = "out of memory" if "OutOfMemoryError" in text or "CUDA out of memory" in text else "no result"
            rows.append(f"| {trainer} | {shape} | {variant} | {reason} | | | | | |")
            continue
        rows.append(
            f"| {trainer} | {shape} | {variant} | {row['tokens_per_s']:,.0f} | {row['spread']} | "
            f"{row['tflops']:.1f} | {row['mfu']:.1%} | {row['memory_gib']:.1f} | {row['steps']} |"
        )
        key = (shape, trainer)
        if key not in best or row["tokens_per_s"] > best[key][0]:
            best[key] = (row["tokens_per_s"], variant)
    out = [
        "| trainer | shape | variant | tokens/s | per-step range | TFLOP/s | MFU | peak reserved GiB | steps |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "| shape | ours (fastest) | TorchTitan (fastest) | ratio |",
        "|---|---|---|---|",
    ]
    for shape in sorted({s for s, _ in best}):
        ours, tt = best.get((shape, "ours")), best.get((shape, "tt"))
        ratio = f"{ours[0] / tt[0]:.2f}x" if ours and tt else "n/a"
        out.append(f"| {shape} | {best_cell(ours)} | {best_cell(tt)} | {ratio} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log_dir", type=Path)
    parser.add_argument("--skip-steps", type=int, default=5, help="TorchTitan steps left out of the mean")
    args = parser.parse_args()
    if not args.log_dir.is_dir():
        sys.exit(f"error: {args.log_dir} is not a folder; pass the folder side_by_side.sh wrote its logs to")
    print(summarize(args.log_dir, args.skip_steps))


if __name__ == "__main__":
    main()
