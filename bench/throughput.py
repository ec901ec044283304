"""Post-task throughput: which benchmark measures a task's change, how its output is read, its spread.

Why one module: the trial measures, the report and the regression gate compare, and all three must agree
on what the number is (tokens per second, the median of samples pooled over repeated runs) and on when
two numbers differ (only when their sample ranges do not overlap; otherwise the difference is noise).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.specs import FrameworkSpec, TaskVariant, ThroughputSpec
from bench.workspace import place_file

UNIT = "tokens/s"


def plan(variant: TaskVariant, framework: FrameworkSpec, gpus: int) -> tuple[str, ThroughputSpec] | str:
    """The command to run and its spec, or the note that says why nothing is measured.

    The variant's throughput.toml wins; the framework's generic benchmark stands in only where the task
    allows it (task.toml framework_throughput_fallback), since it would not run a new model or EP. Asked
    only for a task that measures throughput (TrialConfig.throughput_wanted).
    """
    task = variant.task
    spec = variant.throughput
    if spec is None:
        if not task.spec.framework_throughput_fallback:
            return (
                f"throughput not measured: task {task.id} has no frameworks/{framework.name}/throughput.toml, "
                "and the framework's generic benchmark would not run what the agent changed"
            )
        if not framework.commands.throughput:
            return f"throughput not measured: framework {framework.name!r} declares no [commands] throughput"
        spec = ThroughputSpec(
            command=framework.commands.throughput,
            repeats=framework.commands.throughput_repeats,
            timeout_s=framework.commands.throughput_timeout_s,
        )
    use_gpu = spec.gpu_command is not None and gpus >= spec.gpu_command_gpus
    return (spec.gpu_command if use_gpu else spec.command), spec


def restore_originals(spec: ThroughputSpec, original: Path | None, tree: Path) -> None:
    """Copies spec.restore_from_original from the unprepared source, so the agent cannot change the input."""
    if not spec.restore_from_original:
        return
    if original is None:
        raise FileNotFoundError("throughput.toml restore_from_original needs the original framework source")
    for rel in spec.restore_from_original:
        source = original / rel
        if not source.is_file():
            raise FileNotFoundError(
                f"throughput.toml restore_from_original names {rel!r}, which the original "
                "source does not have; fix the path"
            )
        place_file(source, tree, rel)  # never through a symlink the agent left in its tree


def parse_run(output: str) -> dict | None:
    """The one JSON line with a numeric "tokens_per_s" in a benchmark's output, or None when there is none or
    more than one. Why one: the benchmark runs the agent's code (its model, its parallelism), which could print a
    line of its own (at exit, say); two result lines are no measurement. The benchmark module itself is restored
    from the original source (throughput.toml restore_from_original), so what prints the real line is not the
    agent's; code written to fake the measurement from inside the process remains possible (docs/harness.md)."""
    found = []
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and isinstance(data.get("tokens_per_s"), (int, float)):
            found.append(data)
    return found[0] if len(found) == 1 else None


def run_samples(run: dict) -> list[float]:
    """A run's samples: its "tokens_per_s_samples" when it states them, else its one tokens_per_s."""
    samples = run.get("tokens_per_s_samples")
    if isinstance(samples, list) and samples and all(isinstance(v, (int, float)) for v in samples):
        return [float(v) for v in samples]
    return [float(run["tokens_per_s"])]


def describe(run: dict, command: str) -> str:
    """What was measured, for people: model, layout and device when the benchmark says so, else the command."""
    parts = [str(run[k]) for k in ("model_type", "layout", "device") if run.get(k)]
    return " · ".join(parts) if parts else command


def metrics(runs: list[dict], command: str) -> dict:
    """Result metrics from the parsed runs: the median, the range and every sample, all in tokens/s."""
    samples = [v for run in runs for v in run_samples(run)]
    return {
        "throughput_tokens_per_s": statistics.median(samples),
        "throughput_spread": [min(samples), max(samples)],
        "throughput_samples": samples,
        "throughput_runs": len(runs),
        "throughput_measured": describe(runs[-1], command),
    }


def samples_of(trial: dict) -> list[float]:
    """A trial's throughput samples; results from before samples were recorded give their one number."""
    m = trial.get("metrics") or {}
    if m.get("throughput_samples"):
        return [float(v) for v in m["throughput_samples"]]
    return [float(m["throughput_tokens_per_s"])] if m.get("throughput_tokens_per_s") is not None else []


def beyond_noise(a: list[float], b: list[float]) -> bool | None:
    """Whether two sets of samples differ: only when their ranges do not overlap. None when a side has
    fewer than two samples, since it states no spread to compare against."""
    if len(a) < 2 or len(b) < 2:
        return None
    return ranges_apart((min(a), max(a)), (min(b), max(b)))


def ranges_apart(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (min, max) ranges of samples are disjoint."""
    return a[1] < b[0] or b[1] < a[0]
