"""Leaderboard tables: from the result.json files of one or more runs to medians, CIs and ratios.

Why it is separate from the HTML and the plots: the numbers are computed once here (summary rows),
and report.md, summary.csv, summary.json, the figures and the regression gate all read the same rows.
Every trial found is counted; a trial that errored or never finished is shown in its own column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import stats, throughput
from bench.results import SCHEMA_VERSION, TrialResult

RESULT_FILE = "result.json"

# metric key -> (label, unit); the order is the order of report columns
METRICS = {
    "agent_turns": ("Agent turns", "turns"),
    "session_duration_s": ("Session duration", "s"),
    "active_gpu_s": ("Active GPU time", "s"),
    "gpu_hours_allocated": ("GPU-hours allocated", "h"),
    "output_tokens": ("Output tokens", "tokens"),
    "per_turn_context_p50": ("Per-turn context", "tokens"),
    "cost_usd": ("Cost", "USD"),
    "throughput_tokens_per_s": ("Post-task throughput", throughput.UNIT),
}
THROUGHPUT = "throughput_tokens_per_s"
GPU_METRICS = {"active_gpu_s", "gpu_hours_allocated"}  # throughput is measured on CPU too
HIGHER_IS_BETTER = {"throughput_tokens_per_s"}

# ATE-Bench's categories, in the order its tables use: the qa family asks read-only questions, the operate
# family runs and profiles the framework, every other family builds something (a model, a fix, a feature).
CATEGORIES = {"qa": "Q&A", "operate": "Operate", "build": "Build"}
# The effort columns of each category's tables, in order. Q&A is read-only and needs no GPU: ATE-Bench
# reports neither session duration nor GPU time for it, and the context an agent reads per turn is what
# its Q&A comparison turns on, so that column leads; the summary files keep every metric.
CATEGORY_METRICS = {
    "qa": ["per_turn_context_p50", "agent_turns", "output_tokens", "cost_usd"],
    "operate": list(METRICS),
    "build": list(METRICS),
}

# a level of the leaderboard -> the fields that make one row
GROUPINGS = {
    "category": ["category", "framework", "agent", "model"],
    "family": ["task_family", "framework", "agent", "model"],
    "task": ["task", "framework", "agent", "model"],
}
LEVEL_KEYS = {"category": "category", "family": "task_family", "task": "task"}
LEVEL_TITLES = {"category": "Category", "family": "Task family", "task": "Task"}


def task_category(family: str) -> str:
    """The ATE-Bench category of a task family: qa, operate, or build for every other family."""
    return family if family in ("qa", "operate") else "build"


def not_reported(row: dict, key: str) -> str | None:
    """Why a metric is left out of a row of its category (Q&A reports no session duration or GPU time), or None."""
    if key in CATEGORY_METRICS[row["category"]]:
        return None
    return f"not reported for {CATEGORIES[row['category']]}"


def level_value(row: dict, level: str) -> str:
    """What names a row in its table: the task, the family, or the category's label."""
    value = row[LEVEL_KEYS[level]]
    return CATEGORIES.get(value, value) if level == "category" else str(value)


FINISHED = {"resolved", "unresolved", "error"}
INCOMPLETE = {"running", "interrupted", "missing"}
# an error in these phases happens after the agent stopped, so its effort numbers are complete
LATE_ERROR_PHASES = {"grade", "throughput"}


class ReportInputError(ValueError):
    """A run id, path or result file the report cannot use; the message says which and how to fix it."""


def resolve_run(arg: str, results_root: Path) -> Path:
    """A run directory from a path or a run id under results_root."""
    candidate = Path(arg)
    if not candidate.is_dir():
        candidate = results_root / arg
    if not candidate.is_dir():
        raise ReportInputError(
            f"run '{arg}' not found: it is neither a directory nor a run id under {results_root}/ "
            f"(list the runs with `ls {results_root}`)"
        )
    if not (candidate / "run.json").is_file() and not any(candidate.rglob(RESULT_FILE)):
        raise ReportInputError(f"'{candidate}' holds no run.json and no {RESULT_FILE}: is it a run directory?")
    return candidate


def load_run(run_dir: Path) -> list[dict]:
    """Every trial of a run, including those listed in run.json whose result.json is missing."""
    trials = []
    for path in sorted(run_dir.rglob(RESULT_FILE)):
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ReportInputError(f"{path} is not valid JSON ({e}); re-grade or delete that trial") from e
        version = result.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ReportInputError(f"{path} has schema_version {version!r}; this report reads version {SCHEMA_VERSION}")
        try:  # every version-1 file reads the same: fields added since (notes, phase_seconds) get their defaults
            result = TrialResult.from_json(result).to_json()
        except (ValueError, TypeError) as e:
            raise ReportInputError(f"{path}: {e}; re-grade or delete that trial") from e
        result["dir"] = str(path.parent)
        trials.append(result)
    found = {Path(t["dir"]).relative_to(run_dir).as_posix() for t in trials}
    run_file = run_dir / "run.json"
    listed = json.loads(run_file.read_text()).get("trials", []) if run_file.is_file() else []
    models = {(t["task"], t["framework"], t["agent"]): t.get("model") for t in trials}
    for rel in listed:
        if rel not in found:
            trials.append(_missing_trial(run_dir, rel, models))
    return trials


def _missing_trial(run_dir: Path, rel: str, models: dict[tuple, str | None]) -> dict:
    """run.json promised this trial but no result.json exists: keep it visible as 'missing'.

    The path gives task, framework, agent and trial; the model is taken from a sibling trial.
    """
    task_dir, framework, agent, trial = (Path(rel).parts + ("?",) * 4)[:4]
    task = task_dir.replace("__", "/")
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_dir.name,
        "task": task,
        "task_family": task.split("/")[0],
        "framework": framework,
        "agent": agent,
        "model": models.get((task, framework, agent)),
        "trial": int(trial) if trial.isdigit() else -1,
        "status": "missing",
        "error": {"phase": "setup", "message": f"no {RESULT_FILE} in {rel}"},
        "metrics": {},
        "grade": None,
        "files": {},
        "dir": str(run_dir / rel),
    }


def load_runs(run_args: list[str], results_root: Path) -> tuple[list[Path], list[dict]]:
    if not run_args:
        raise ReportInputError("no run given: pass one or more run ids (under results/) or run directories")
    run_dirs = [resolve_run(arg, results_root) for arg in run_args]
    trials = [trial for run_dir in run_dirs for trial in load_run(run_dir)]
    if not trials:
        raise ReportInputError(f"no trials found in {', '.join(map(str, run_dirs))}")
    return run_dirs, trials


def ran_to_end(trial: dict) -> bool:
    """Whether the agent session finished, so its effort metrics describe a whole attempt."""
    if trial["status"] in ("resolved", "unresolved"):
        return True
    error = trial.get("error") or {}
    return trial["status"] == "error" and error.get("phase") in LATE_ERROR_PHASES


def trial_notes(trial: dict) -> list[str]:
    """A trial's notes; results written before notes existed carried a throughput note as a resolved
    trial's error, which is read back as the note it was."""
    notes = list(trial.get("notes") or [])
    error = trial.get("error") or {}
    if trial["status"] == "resolved" and error.get("phase") == "throughput":
        notes.append(error.get("message") or "")
    return notes


def trial_error(trial: dict) -> dict | None:
    """The trial's error, unless it is an old-style throughput note (see trial_notes)."""
    error = trial.get("error") or None
    if error and trial["status"] == "resolved" and error.get("phase") == "throughput":
        return None
    return error


def trial_frame(trials: list[dict]) -> pd.DataFrame:
    """One row per trial with its identity, status and metrics; `model` None becomes '-'."""
    rows = []
    for t in trials:
        metrics = t.get("metrics") or {}
        row = {
            "run_id": t.get("run_id"),
            "task": t["task"],
            "task_family": t.get("task_family") or t["task"].split("/")[0],
            "category": task_category(t.get("task_family") or t["task"].split("/")[0]),
            "framework": t["framework"],
            "agent": t["agent"],
            "model": t.get("model") or "-",
            "trial": t.get("trial"),
            "status": t["status"],
            "ran_to_end": ran_to_end(t),
            "gpu_available": bool(metrics.get("gpu_available", False)),
            "dir": t.get("dir"),
            "throughput_samples": throughput.samples_of(t),
            "throughput_measured": metrics.get("throughput_measured"),
            "notes": trial_notes(t),
        }
        row.update({key: metrics.get(key) for key in METRICS})
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class MetricCell:
    """One metric of one leaderboard row: a median with CI (n >= 2 only), or the reason it is unavailable.

    Throughput also carries the range of every benchmark sample of the row's trials (`spread_lo/hi`,
    `n_samples`): the measurement's own noise, against which differences are judged.
    """

    median: float | None
    ci_lo: float | None
    ci_hi: float | None
    n: int
    unavailable: str | None = None
    spread_lo: float | None = None
    spread_hi: float | None = None
    n_samples: int = 0


def metric_cell(group: pd.DataFrame, key: str, confidence: float) -> MetricCell:
    finished = group[group["ran_to_end"]]
    if finished.empty:
        return MetricCell(None, None, None, 0, "n/a (no finished trial)")
    values = [float(v) for v in finished[key] if v is not None and not pd.isna(v)]
    if not values:
        no_gpu = key in GPU_METRICS and not finished["gpu_available"].any()
        not_measured = key == THROUGHPUT and any(
            n.startswith("throughput not measured") for notes in finished["notes"] for n in notes
        )
        reason = "n/a (no GPU)" if no_gpu else "n/a (not measured, see notes)" if not_measured else "n/a (not recorded)"
        return MetricCell(None, None, None, 0, reason)
    lo, hi = stats.bootstrap_ci(values, confidence=confidence) if len(values) >= 2 else (None, None)
    cell = MetricCell(stats.median(values), lo, hi, len(values))
    if key == THROUGHPUT:
        samples = group_samples(finished)
        cell.spread_lo, cell.spread_hi, cell.n_samples = min(samples), max(samples), len(samples)
    return cell


def _cell_json(cell: MetricCell, key: str) -> dict:
    """The cell as summary.json holds it; only throughput has a sample range."""
    data = vars(cell)
    return (
        data
        if key == THROUGHPUT
        else {k: v for k, v in data.items() if k not in ("spread_lo", "spread_hi", "n_samples")}
    )


def group_samples(group: pd.DataFrame) -> list[float]:
    """Every throughput sample of a group's trials whose session ran to its end, pooled."""
    return [v for samples in group[group["ran_to_end"]]["throughput_samples"] for v in samples]


def trials_within_noise(group: pd.DataFrame) -> bool | None:
    """Whether the throughput of a group's trials differs only within the measurement's spread: no pair of
    trials has disjoint sample ranges. None when it cannot be told (one measured trial, or single samples)."""
    measured = [s for s in group[group["ran_to_end"]]["throughput_samples"] if s]
    if len(measured) < 2:
        return None
    verdicts = [throughput.beyond_noise(a, b) for i, a in enumerate(measured) for b in measured[i + 1 :]]
    if any(verdicts):
        return False
    return None if None in verdicts else True


def effort_values(group: pd.DataFrame, key: str) -> list[float]:
    finished = group[group["ran_to_end"]]
    return [float(v) for v in finished[key] if v is not None and not pd.isna(v)]


def summarize(
    trials: list[dict], level: str, reference_framework: str = "reference", confidence: float = 0.95
) -> list[dict]:
    """Leaderboard rows for one level of GROUPINGS, each with success, metric cells and ratios."""
    keys = GROUPINGS[level]
    frame = trial_frame(trials)
    groups = {name: group for name, group in frame.groupby(keys, sort=True, dropna=False)}
    rows = []
    for name, group in groups.items():
        ident = dict(zip(keys, name))
        statuses = group["status"].value_counts().to_dict()
        resolved = statuses.get("resolved", 0)
        attempts = sum(statuses.get(s, 0) for s in FINISHED)
        n_tasks = group["task"].nunique()
        one_task = n_tasks == 1 and attempts > 0  # pass@k means "k tries at ONE task"; across tasks it means nothing
        row = {
            "level": level,
            "category": group["category"].iloc[0],  # a family lies in one category, so every level has one
            **ident,
            "n_trials": len(group),
            "n_resolved": resolved,
            "n_unresolved": statuses.get("unresolved", 0),
            "n_error": statuses.get("error", 0),
            "n_incomplete": sum(statuses.get(s, 0) for s in INCOMPLETE),
            "n_attempts": attempts,
            "n_tasks": n_tasks,
            "success_rate": resolved / attempts if attempts else None,
            "pass_at_1": stats.pass_at_k(attempts, resolved, 1) if attempts else None,
            "k": attempts if one_task else None,
            "pass_at_k": stats.pass_at_k(attempts, resolved, attempts) if one_task else None,
            "metrics": {key: _cell_json(metric_cell(group, key, confidence), key) for key in METRICS},
            "throughput_measured": sorted({m for m in group["throughput_measured"] if isinstance(m, str)}),
            "throughput_trials_within_noise": trials_within_noise(group),
            "throughput_notes": sorted({n for notes in group["notes"] for n in notes if n.startswith("throughput")}),
            "vs_reference": {},
        }
        reference_name = tuple(reference_framework if k == "framework" else ident[k] for k in keys)
        reference = groups.get(reference_name)
        if ident["framework"] != reference_framework and reference is not None:
            row["vs_reference"] = _ratios(group, reference, confidence)
        if n_tasks > 1 and not row["metrics"][THROUGHPUT]["unavailable"]:
            # each task benchmarks its own model or layout: pooling them would mix different measurements
            row["metrics"][THROUGHPUT] = _cell_json(MetricCell(None, None, None, 0, "n/a (per task only)"), THROUGHPUT)
            row["vs_reference"].pop(THROUGHPUT, None)
        rows.append(row)
    if level == "task":
        _compare_tasks_throughput(rows)
    if level == "category":
        rows.sort(key=lambda r: list(CATEGORIES).index(r["category"]))  # ATE-Bench's order; stable otherwise
    return rows


def _compare_tasks_throughput(rows: list[dict]) -> None:
    """row["throughput_vs_tasks"]: against each other task of the same framework and agent, whether the
    throughput differs beyond both rows' sample ranges ('within noise' otherwise)."""
    for row in rows:
        row["throughput_vs_tasks"] = []
        mine = row["metrics"][THROUGHPUT]
        if mine["unavailable"] or mine["n_samples"] < 2:
            continue
        for other in rows:
            theirs = other["metrics"][THROUGHPUT]
            same_setup = all(other[k] == row[k] for k in ("framework", "agent", "model"))
            if other is row or not same_setup or theirs["unavailable"] or theirs["n_samples"] < 2:
                continue
            apart = throughput.ranges_apart(
                (mine["spread_lo"], mine["spread_hi"]), (theirs["spread_lo"], theirs["spread_hi"])
            )
            verdict = f"{mine['median'] / theirs['median']:.2g}× (beyond noise)" if apart else "within noise"
            row["throughput_vs_tasks"].append(f"vs {other['task']}: {verdict}")


def _ratios(group: pd.DataFrame, reference: pd.DataFrame, confidence: float) -> dict:
    """median(framework) / median(reference) per metric with a bootstrap CI; absent when undefined."""
    ratios = {}
    for key in METRICS:
        mine, theirs = effort_values(group, key), effort_values(reference, key)
        if not mine or not theirs or stats.median(theirs) == 0:
            continue
        ratio, lo, hi = stats.ratio_of_medians(mine, theirs, confidence=confidence)
        ratios[key] = {"ratio": ratio, "ci_lo": lo, "ci_hi": hi, "n": min(len(mine), len(theirs))}
        if key == THROUGHPUT:  # a change inside the benchmark's own spread is noise, whatever the ratio
            ratios[key]["beyond_noise"] = throughput.beyond_noise(group_samples(group), group_samples(reference))
    return ratios


def flat_rows(rows: list[dict]) -> pd.DataFrame:
    """summary rows as one flat table (for summary.csv)."""
    flat = []
    for row in rows:
        out = {k: v for k, v in row.items() if k not in ("metrics", "vs_reference")}
        out["throughput_measured"] = "; ".join(row["throughput_measured"])
        out["throughput_notes"] = "; ".join(row["throughput_notes"])
        out["throughput_vs_tasks"] = "; ".join(row.get("throughput_vs_tasks", []))
        for key, cell in row["metrics"].items():
            for field in ("median", "ci_lo", "ci_hi", "n", "unavailable") + (
                ("spread_lo", "spread_hi", "n_samples") if key == THROUGHPUT else ()
            ):
                out[f"{key}_{field}"] = cell[field]
        for key, ratio in row["vs_reference"].items():
            for field in ("ratio", "ci_lo", "ci_hi", "n", "beyond_noise"):
                if field in ratio:
                    out[f"{key}_vs_ref_{field}"] = ratio[field]
        flat.append(out)
    return pd.DataFrame(flat)


def format_number(value: float, unit: str, scale_by: float | None = None) -> str:
    """Human units; `scale_by` (the median) picks one scale so a CI reads in the median's unit."""
    if unit == "s":
        minutes = abs(value if scale_by is None else scale_by) >= 120
        return f"{value / 60:.1f} min" if minutes else f"{value:.0f} s"
    if unit == "USD":
        return f"${value:.2f}"
    if unit == "h":
        return f"{value:.3g} h"
    if abs(value if scale_by is None else scale_by) >= 10_000:
        return f"{value / 1000:.1f}K"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"  # never 1.269e+04 beside a smaller median


def with_unit(text: str, unit: str) -> str:
    """Units the number does not already carry (durations, money and hours do)."""
    return text if unit in ("s", "USD", "h") else f"{text} {unit}"


def format_cell(cell: dict, unit: str) -> str:
    """'median [CI]' with the unit; one trial has no CI ('(n=1)'); throughput adds its samples' range."""
    if cell["unavailable"]:
        return cell["unavailable"]
    m = cell["median"]
    text = with_unit(format_number(m, unit), unit)
    if cell["ci_lo"] is not None and cell["n"] >= 2:
        text += f" [{format_number(cell['ci_lo'], unit, m)}, {format_number(cell['ci_hi'], unit, m)}]"
    else:
        text += f" (n={cell['n']})"
    if cell.get("n_samples", 0) >= 2:
        text += (
            f", range {format_number(cell['spread_lo'], unit, m)}–{format_number(cell['spread_hi'], unit, m)}"
            f" over {cell['n_samples']} samples"
        )
    return text


def format_change(ratio: dict) -> str:
    """'−62% [−70%, −50%]': the relative change of medians versus the reference framework; a throughput
    change inside the benchmark's spread reads 'within noise'."""

    def pct(r: float) -> str:
        change = round((r - 1.0) * 100)
        return f"−{abs(change)}%" if change < 0 else f"+{change}%"

    if ratio.get("beyond_noise") is False:
        return f"within noise ({pct(ratio['ratio'])})"
    if ratio.get("n", 2) < 2:  # a side with one trial: the resampled ratio is that one ratio, no interval
        return f"{pct(ratio['ratio'])} (n=1)"
    return f"{pct(ratio['ratio'])} [{pct(ratio['ci_lo'])}, {pct(ratio['ci_hi'])}]"


def format_pass_at_k(row: dict) -> str:
    if row["pass_at_k"] is not None:
        return f"{format_rate(row['pass_at_k'])} (k={row['k']})"
    return f"n/a ({row['n_tasks']} tasks)" if row["n_tasks"] > 1 else "n/a"


def format_trials_noise(row: dict) -> str:
    verdict = row["throughput_trials_within_noise"]
    if verdict is None:
        return "one measured trial" if row["metrics"][THROUGHPUT]["n"] < 2 else "no spread recorded"
    return "within noise" if verdict else "differ beyond noise"


def format_spread(cell: dict, unit: str) -> str:
    if cell["n_samples"] < 2:
        return f"no spread ({cell['n_samples']} sample)"
    m = cell["median"]
    low, high = format_number(cell["spread_lo"], unit, m), format_number(cell["spread_hi"], unit, m)
    return f"{low}–{high} ({cell['n_samples']} samples)"


def metric_header(label: str, unit: str) -> str:
    return f"{label} ({unit})"


def format_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def row_label(row: dict) -> str:
    where = row.get("task") or row.get("task_family") or CATEGORIES.get(row.get("category"), row.get("category"))
    return f"{where} · {row['framework']} · {row['agent']}/{row['model']}"


def markdown_tables(
    rows: list[dict], level: str, reference_framework: str, metrics: list[str] | None = None, throughput: bool = True
) -> str:
    """Three paste-able tables for one level: outcomes, effort medians with CI, change vs reference.

    `metrics` picks and orders the effort columns (default: all); `throughput` adds the task level's
    post-task throughput table."""
    where = LEVEL_TITLES[level]
    keys = metrics or list(METRICS)
    head = f"| {where} | Framework | Agent / model |"
    lines = [
        f"#### Outcomes ({where.lower()})",
        "",
        head + " Trials | Resolved | Unresolved | Error | Incomplete | Success | pass@1 | pass@k |",
        "|---|---|---|" + "---|" * 8,
    ]
    for r in rows:
        pass_k = format_pass_at_k(r)
        lines.append(
            f"| {level_value(r, level)} | {r['framework']} | {r['agent']}/{r['model']} | {r['n_trials']} "
            f"| {r['n_resolved']} | {r['n_unresolved']} | {r['n_error']} | {r['n_incomplete']} "
            f"| {format_rate(r['success_rate'])} | {format_rate(r['pass_at_1'])} | {pass_k} |"
        )
    header = head + "".join(f" {metric_header(*METRICS[k])} |" for k in keys)
    lines += [
        "",
        f"#### Effort, median [95% CI] ({where.lower()})",
        "",
        header,
        "|---|---|---|" + "---|" * len(keys),
    ]
    for r in rows:
        cells = "".join(f" {not_reported(r, k) or format_cell(r['metrics'][k], METRICS[k][1])} |" for k in keys)
        lines.append(f"| {level_value(r, level)} | {r['framework']} | {r['agent']}/{r['model']} |{cells}")
    compared = [r for r in rows if r["vs_reference"]]
    if compared:
        lines += [
            "",
            f"#### Change of medians versus `{reference_framework}` [95% CI] ({where.lower()})",
            "",
            header,
            "|---|---|---|" + "---|" * len(keys),
        ]
        for r in compared:
            cells = "".join(
                f" {not_reported(r, k) or (format_change(r['vs_reference'][k]) if k in r['vs_reference'] else 'n/a')} |"
                for k in keys
            )
            lines.append(f"| {level_value(r, level)} | {r['framework']} | {r['agent']}/{r['model']} |{cells}")
    if level == "task" and throughput:
        lines += ["", throughput_markdown(rows)]
    return "\n".join(lines) + "\n"


def in_category(rows: list[dict], category: str) -> list[dict]:
    return [r for r in rows if r["category"] == category]


def shows_families(category: str) -> bool:
    """Whether a category's families are worth their own tables: Q&A and operate are one family each
    (the family row would repeat the category row); build spans several (new models, fixes, features)."""
    return category == "build"


def qa_matrix(task_rows: list[dict], category_rows: list[dict], reference_framework: str) -> dict:
    """The Q&A comparison as ATE-Bench tabulates it: one line per topic (and agent/model), one column per
    framework, the reference framework first; a last line per agent/model pools every topic."""
    qa_tasks = in_category(task_rows, "qa")
    frameworks = sorted({r["framework"] for r in qa_tasks}, key=lambda f: (f != reference_framework, f))
    lines: dict[tuple, dict] = {}
    for r in qa_tasks:
        lines.setdefault((r["agent"], r["model"], r["task"]), {})[r["framework"]] = r
    pooled = {}
    for r in in_category(category_rows, "qa"):
        pooled.setdefault((r["agent"], r["model"], "all Q&A topics"), {})[r["framework"]] = r
    ordered = sorted(lines.items()) + sorted(pooled.items())
    return {
        "frameworks": frameworks,
        "lines": [{"agent": a, "model": m, "task": t, "cells": cells} for (a, m, t), cells in ordered],
    }


def qa_cell(row: dict | None) -> str:
    """One framework's result on one topic: per-turn context first, then turns and the resolved share."""
    if row is None:
        return "not run"
    context, turns = row["metrics"]["per_turn_context_p50"], row["metrics"]["agent_turns"]
    ctx = (
        f"context {context['unavailable']}"
        if context["unavailable"]
        else f"{with_unit(format_number(context['median'], 'tokens'), 'tokens')} per turn"
    )
    steps = turns["unavailable"] if turns["unavailable"] else f"{format_number(turns['median'], 'turns')} turns"
    return f"{ctx} · {steps} · {row['n_resolved']}/{row['n_attempts']} resolved"


def qa_matrix_markdown(matrix: dict) -> str:
    frameworks = matrix["frameworks"]
    lines = [
        "#### Q&A across frameworks: per-turn context (median) · agent turns (median) · resolved",
        "",
        "| Topic | Agent / model |" + "".join(f" {f} |" for f in frameworks),
        "|---|---|" + "---|" * len(frameworks),
    ]
    for line in matrix["lines"]:
        cells = "".join(f" {qa_cell(line['cells'].get(f))} |" for f in frameworks)
        lines.append(f"| {line['task']} | {line['agent']}/{line['model']} |{cells}")
    return "\n".join(lines) + "\n"


def throughput_rows(rows: list[dict]) -> list[dict]:
    """Task rows with a throughput number or a note about it."""
    return [r for r in rows if not r["metrics"][THROUGHPUT]["unavailable"] or r["throughput_notes"]]


def throughput_markdown(rows: list[dict]) -> str:
    """What each task's post-task benchmark measured, its median, spread and whether trials differ."""
    lines = [
        f"#### Post-task throughput ({throughput.UNIT})",
        "",
        "| Task | Framework | Agent / model | Measured | Median | Range of all samples | Between trials "
        "| Versus other tasks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in throughput_rows(rows):
        cell = r["metrics"][THROUGHPUT]
        who = f"| {r['task']} | {r['framework']} | {r['agent']}/{r['model']} |"
        if cell["unavailable"]:
            lines.append(f"{who} {'; '.join(r['throughput_notes']) or cell['unavailable']} | - | - | - | - |")
            continue
        unit = throughput.UNIT
        median = with_unit(format_number(cell["median"], unit), unit)
        lines.append(
            f"{who} {'; '.join(r['throughput_measured']) or '-'} | {median} "
            f"| {format_spread(cell, unit)} | {format_trials_noise(r)} | {'; '.join(r['throughput_vs_tasks']) or '-'} |"
        )
    return "\n".join(lines) + "\n"


def mutation_scores(run_dirs: list[Path]) -> list[dict]:
    """Per task, the grader's mutation score from each `validate --mutants` run (its mutants.json)."""
    rows = []
    for run_dir in run_dirs:
        path = run_dir / "mutants.json"
        if not path.is_file():
            continue
        try:
            scores = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ReportInputError(
                f"{path}: not valid JSON ({e}); re-run `runner.py validate --run-id "
                f"{run_dir.name} --resume` to write it again"
            ) from None
        rows += [
            {"run": run_dir.name, **r, "survived": len(r["survived"]), "errored": len(r["errored"])} for r in scores
        ]
    return rows


def mutation_markdown(rows: list[dict]) -> str:
    lines = [
        "| run | task | framework | mutants | killed | survived | errored | score |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        score = "n/a (nothing to mutate)" if r["mutants"] == 0 else "n/a" if r["score"] is None else f"{r['score']:.0%}"
        lines.append(
            f"| {r['run']} | {r['task']} | {r['framework']} | {r['mutants']} | {r['killed']} | {r['survived']} "
            f"| {r['errored']} | {score} |"
        )
    return "\n".join(lines) + "\n\nThe survivors' diffs are in each run's survivors.md.\n"


def markdown_report(
    run_dirs: list[Path], summaries: dict[str, list[dict]], reference_framework: str, profile_md: str | None
) -> str:
    runs = ", ".join(f"`{d.name}`" for d in run_dirs)
    parts = [
        f"# atebench report: {runs}",
        "",
        "Medians with percentile-bootstrap 95% CIs (fixed seed). Effort metrics use trials whose agent "
        "session ran to its end (resolved, unresolved, or an error after the agent stopped); success "
        "counts every finished trial, errors as failures; interrupted, running and missing trials are "
        "listed as incomplete and left out of both. A CI needs two trials: one trial shows its value with "
        "(n=1). pass@k is the unbiased estimator with k = finished trials of one task (n/a for a row "
        "spanning several tasks). Changes versus the reference framework bootstrap the ratio of medians; "
        "post-task throughput is the median of repeated benchmark runs, and a throughput difference whose "
        "sample ranges overlap is reported as within noise.",
        "",
        "## By category",
        "",
        "Q&A asks read-only questions graded by the cited answer; operate runs and profiles the framework; "
        "build changes it (new models, fixes, features).",
        "",
        markdown_tables(summaries["category"], "category", reference_framework),
    ]
    for category, label in CATEGORIES.items():
        tasks = in_category(summaries["task"], category)
        if not tasks:
            continue
        parts += [f"## {label}", ""]
        if category == "qa":
            matrix = qa_matrix(summaries["task"], summaries["category"], reference_framework)
            parts += [
                "Read-only: no session duration or GPU time (as in ATE-Bench); per-turn context leads.",
                "",
                qa_matrix_markdown(matrix),
            ]
        if shows_families(category):
            families = in_category(summaries["family"], category)
            parts += [markdown_tables(families, "family", reference_framework, CATEGORY_METRICS[category])]
        parts += [
            markdown_tables(tasks, "task", reference_framework, CATEGORY_METRICS[category], category != "qa"),
        ]
    mutation = mutation_scores(run_dirs)
    if mutation:
        parts += ["## Grader mutation score (validate --mutants)", "", mutation_markdown(mutation)]
    if profile_md:
        parts += ["## Framework profile (static)", "", profile_md]
    return "\n".join(parts)


def write_tables(
    out_dir: Path,
    run_dirs: list[Path],
    trials: list[dict],
    reference_framework: str = "reference",
    confidence: float = 0.95,
    profile_md: str | None = None,
) -> dict[str, list[dict]]:
    """Writes report.md, summary.csv and summary.json; returns the summary rows per level."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = {level: summarize(trials, level, reference_framework, confidence) for level in GROUPINGS}
    (out_dir / "report.md").write_text(markdown_report(run_dirs, summaries, reference_framework, profile_md))
    pd.concat([flat_rows(rows) for rows in summaries.values()]).to_csv(out_dir / "summary.csv", index=False)
    summary = {
        "runs": [d.name for d in run_dirs],
        "reference_framework": reference_framework,
        "confidence": confidence,
        "seed": stats.SEED,
        "n_boot": stats.N_BOOT,
        "metrics": {k: {"label": label, "unit": unit} for k, (label, unit) in METRICS.items()},
        **summaries,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    return summaries


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")
