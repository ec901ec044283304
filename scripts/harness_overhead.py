"""How long the harness itself takes per trial: the median seconds of each phase, per task, of one run.

Why: a trial's `agent` phase is the agent's time; `setup` (workspace and sandbox), `grade` and
`throughput` are the harness's own overhead, recorded in each result.json's `phase_seconds`. For the
reference tasks:

    python runner.py validate --framework reference --run-id overhead
    python scripts/harness_overhead.py overhead
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import results  # noqa: E402


def overhead_rows(results_root: Path, run_id: str) -> list[dict]:
    """One row per task x framework x agent: its trial count and the median seconds of each phase
    (`seconds`, None for a phase none of its trials ran)."""
    groups: dict[tuple, list[dict]] = {}
    for result in results.load_results(results_root, run_id):
        groups.setdefault((result["task"], result["framework"], result["agent"]), []).append(result["phase_seconds"])
    rows = []
    for (task, framework, agent), timings in sorted(groups.items()):
        seconds = {}
        for phase in results.PHASES:
            values = [t[phase] for t in timings if phase in t]
            seconds[phase] = statistics.median(values) if values else None
        rows.append({"task": task, "framework": framework, "agent": agent, "trials": len(timings), "seconds": seconds})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_id")
    p.add_argument("--results-dir", default=str(results.RESULTS_ROOT))
    args = p.parse_args(argv)
    rows = overhead_rows(Path(args.results_dir), args.run_id)
    if not rows:
        print(f"error: no trial results in run {args.run_id!r} under {args.results_dir}", file=sys.stderr)
        return 2
    header = " ".join(f"{phase + ' s':>12}" for phase in results.PHASES)
    print(f"{'task':<45} {'framework':<10} {'agent':<8} {'n':>3} {header}")
    for r in rows:
        cells = " ".join(f"{'-' if s is None else f'{s:.2f}':>12}" for s in r["seconds"].values())
        print(f"{r['task']:<45} {r['framework']:<10} {r['agent']:<8} {r['trials']:>3} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
