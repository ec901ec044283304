"""The regression gate: is a candidate run (a PR) measurably worse than a baseline run (main)?

Why a statistical gate and not a diff of medians: with three attempts per task, medians move by
chance. A metric regresses only when the candidate is worse by more than `threshold_rel` with at
least `confidence` certainty: bootstrapped ratio of medians for effort metrics, a one-sided Fisher
exact test for the success rate. Post-task throughput pools every benchmark sample of a group's trials,
and a change whose sample ranges overlap is within the benchmark's noise, never a regression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench import stats, throughput
from bench.report import FINISHED, HIGHER_IS_BETTER, METRICS, THROUGHPUT, ran_to_end

GROUP = ("task", "framework", "agent", "model")
ALIASES = {"turns": "agent_turns", "gpu": "active_gpu_s", "success": "success"}
DEFAULT_METRICS = ["turns", "active_gpu_s", "success"]


class CompareInputError(ValueError):
    """Runs or options the gate cannot compare; the message names the problem and the fix."""


@dataclass
class Comparison:
    """One metric of one task × framework × agent group, baseline against candidate."""

    group: tuple
    metric: str
    baseline: str
    candidate: str
    change: str
    p_worse: float | None  # certainty that the candidate is worse by more than the threshold
    verdict: str  # "REGRESSION", "improved", "ok", "n/a (...)"


def metric_key(name: str) -> str:
    key = ALIASES.get(name, name)
    if key != "success" and key not in METRICS:
        valid = ", ".join(sorted(set(ALIASES) | set(METRICS)))
        raise CompareInputError(f"unknown metric '{name}' in --metrics; choose from: {valid}")
    return key


def groups(trials: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for t in trials:
        out.setdefault(tuple(t.get(k) or "-" for k in GROUP), []).append(t)
    return out


def _values(trials: list[dict], key: str) -> list[float]:
    if key == THROUGHPUT:
        return [v for t in trials if ran_to_end(t) for v in throughput.samples_of(t)]
    return [float(t["metrics"][key]) for t in trials if ran_to_end(t) and (t.get("metrics") or {}).get(key) is not None]


def _pct(x: float) -> str:
    change = round(x * 100)
    return f"−{abs(change)}%" if change < 0 else f"+{change}%"


def compare_success(
    group: tuple, base: list[dict], cand: list[dict], threshold: float, confidence: float
) -> Comparison:
    finished_b = [t for t in base if t["status"] in FINISHED]
    finished_c = [t for t in cand if t["status"] in FINISHED]
    if not finished_b or not finished_c:
        return Comparison(group, "success", "-", "-", "-", None, "n/a (no finished trial)")
    cb = sum(t["status"] == "resolved" for t in finished_b)
    cc = sum(t["status"] == "resolved" for t in finished_c)
    rate_b, rate_c = cb / len(finished_b), cc / len(finished_c)
    shown_b, shown_c = f"{cb}/{len(finished_b)}", f"{cc}/{len(finished_c)}"
    if rate_b == 0:
        return Comparison(group, "success", shown_b, shown_c, "-", None, "ok (baseline never succeeded)")
    relative = rate_c / rate_b - 1.0
    p_value = stats.fisher_exact_less(cb, len(finished_b), cc, len(finished_c))
    p_gain = stats.fisher_exact_less(cc, len(finished_c), cb, len(finished_b))
    significant = 1.0 - confidence + 1e-12
    if -relative > threshold and p_value <= significant:
        verdict = "REGRESSION"
    elif relative > threshold and p_gain <= significant:
        verdict = "improved"
    else:
        verdict = "ok"
    return Comparison(
        group, "success", shown_b, shown_c, f"{_pct(relative)} (Fisher p={p_value:.3g})", 1.0 - p_value, verdict
    )


def compare_metric(
    group: tuple, key: str, base: list[dict], cand: list[dict], threshold: float, confidence: float
) -> Comparison:
    vb, vc = _values(base, key), _values(cand, key)
    name = "turns" if key == "agent_turns" else key
    if not vb or not vc:
        gpu_less = not any((t.get("metrics") or {}).get("gpu_available") for t in base + cand)
        reason = "n/a (no GPU)" if key in {"active_gpu_s", "gpu_hours_allocated"} and gpu_less else "n/a (not recorded)"
        return Comparison(group, name, "-", "-", "-", None, reason)
    mb, mc = stats.median(vb), stats.median(vc)
    if mb == 0:
        return Comparison(group, name, f"{mb:.4g}", f"{mc:.4g}", "-", None, "n/a (baseline median is 0)")
    draws = stats.relative_change_draws(vb, vc)
    worse = -draws if key in HIGHER_IS_BETTER else draws
    p_worse = float(np.mean(worse > threshold))
    p_better = float(np.mean(worse < -threshold))
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(draws, [tail, 1.0 - tail])
    verdict = "REGRESSION" if p_worse >= confidence else "improved" if p_better >= confidence else "ok"
    change = f"{_pct(mc / mb - 1.0)} [{_pct(lo)}, {_pct(hi)}]"
    if key == THROUGHPUT and throughput.beyond_noise(vb, vc) is False:
        verdict = "ok (within noise)"
    return Comparison(group, name, f"{mb:.4g}", f"{mc:.4g}", change, p_worse, verdict)


def compare(
    baseline: list[dict],
    candidate: list[dict],
    metrics: list[str] = DEFAULT_METRICS,
    threshold_rel: float = 0.2,
    confidence: float = 0.95,
) -> list[Comparison]:
    """Every requested metric for every group of the baseline; the candidate must cover them all."""
    if threshold_rel < 0:
        raise CompareInputError(f"--threshold-rel {threshold_rel} must be >= 0 (0.2 means 20% worse)")
    if not 0.0 < confidence < 1.0:
        raise CompareInputError(f"--confidence {confidence} must be strictly between 0 and 1 (e.g. 0.95)")
    if not metrics:
        raise CompareInputError("--metrics is empty; give e.g. turns,active_gpu_s,success")
    keys = [metric_key(m) for m in metrics]
    base_groups, cand_groups = groups(baseline), groups(candidate)
    missing = [g for g in base_groups if g not in cand_groups]
    if missing:
        names = "; ".join(" · ".join(g) for g in missing)
        raise CompareInputError(
            f"the candidate run lacks {len(missing)} baseline group(s): {names}. Run the same task subset, "
            "frameworks and agents for both (the gate compares like with like)"
        )
    rows = []
    for group in sorted(base_groups):
        for key in keys:
            if key == "success":
                rows.append(compare_success(group, base_groups[group], cand_groups[group], threshold_rel, confidence))
            else:
                rows.append(
                    compare_metric(group, key, base_groups[group], cand_groups[group], threshold_rel, confidence)
                )
    for group in sorted(set(cand_groups) - set(base_groups)):
        rows.append(Comparison(group, "-", "-", f"{len(cand_groups[group])} trials", "-", None, "new (no baseline)"))
    return rows


def markdown(rows: list[Comparison], threshold_rel: float, confidence: float, baseline: str, candidate: str) -> str:
    """A short table a reviewer can paste into a PR comment."""
    regressions = sum(r.verdict == "REGRESSION" for r in rows)
    headline = f"**{regressions} regression{'s' if regressions != 1 else ''}**" if regressions else "**No regression**"
    lines = [
        f"### atebench gate: `{candidate}` vs `{baseline}`",
        "",
        f"{headline} in {len(rows)} comparisons (a regression: worse by more than {threshold_rel:.0%} "
        f"with confidence ≥ {confidence:.0%}; confidence is the bootstrap share of worse draws, or 1 − Fisher p "
        "for success).",
        "",
        f"| Task | Framework | Agent / model | Metric | Baseline | Candidate | Change [{confidence:.0%} CI] "
        f"| Confidence worse > {threshold_rel:.0%} | Verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        task, framework, agent, model = r.group
        p = "-" if r.p_worse is None else f"{r.p_worse:.2f}"
        verdict = f"**{r.verdict}**" if r.verdict == "REGRESSION" else r.verdict
        lines.append(
            f"| {task} | {framework} | {agent}/{model} | {r.metric} | {r.baseline} | {r.candidate} "
            f"| {r.change} | {p} | {verdict} |"
        )
    return "\n".join(lines) + "\n"
