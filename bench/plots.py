"""Report figures as PNG bytes: metric bars with CI whiskers, throughput vs turns, per-trial strips.

Why PNG bytes and no pyplot: the HTML report embeds each figure as base64 so it stays one file,
and building `Figure` objects directly (Agg canvas) needs no display and keeps no global state.
A figure with nothing to show (no values, or only zeros) is None, and the report says so in words.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.report import METRICS, THROUGHPUT, row_label

STATUS_MARKERS = {"resolved": "o", "unresolved": "x", "error": "s", "interrupted": "^", "running": "^", "missing": "v"}
PALETTE = ["#3b6ea8", "#d9822b", "#4f9a5a", "#b8475a", "#7d5ba6", "#8c6d46", "#c65fa5", "#6f6f6f"]


def display_unit(unit: str) -> tuple[float, str]:
    """Figures show durations in minutes, like the tables."""
    return (1 / 60, "min") if unit == "s" else (1.0, unit)


def framework_colors(frameworks: list[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(frameworks)))}


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return buffer.getvalue()


def _whisker(cell: dict, key: str) -> tuple[float, float] | None:
    """Throughput: the range of every sample (the benchmark's noise); else the 95% CI, which needs n >= 2."""
    if key == THROUGHPUT and cell.get("n_samples", 0) >= 2:
        return cell["spread_lo"], cell["spread_hi"]
    if cell["n"] >= 2 and cell["ci_lo"] is not None:
        return cell["ci_lo"], cell["ci_hi"]
    return None


def metric_bars(rows: list[dict], key: str) -> bytes | None:
    """Horizontal bars of each row's median with whiskers (see _whisker); None when no row has a non-zero
    value, so an oracle run's zero tokens become a sentence instead of an empty axis."""
    shown = [r for r in rows if not r["metrics"][key]["unavailable"]]
    if not any(r["metrics"][key]["median"] or r["metrics"][key]["ci_hi"] for r in shown):
        return None
    label, unit = METRICS[key]
    scale, unit = display_unit(unit)
    colors = framework_colors([r["framework"] for r in rows])
    medians = scale * np.array([r["metrics"][key]["median"] for r in shown])
    whiskers = [_whisker(r["metrics"][key], key) for r in shown]
    # clipped at 0: a hand-edited result may hold a median outside its own samples
    lows = np.array([0.0 if w is None else max(0.0, m - scale * w[0]) for m, w in zip(medians, whiskers)])
    highs = np.array([0.0 if w is None else max(0.0, scale * w[1] - m) for m, w in zip(medians, whiskers)])
    fig = Figure(figsize=(6.4, 0.45 * len(shown) + 1.1))
    ax = fig.add_subplot()
    y = np.arange(len(shown))[::-1]
    ax.barh(
        y,
        medians,
        xerr=[lows, highs],
        color=[colors[r["framework"]] for r in shown],
        capsize=3,
        error_kw={"elinewidth": 1, "ecolor": "#222"},
    )
    ax.set_yticks(
        y, [row_label(r) + ("" if w else f" (n={r['metrics'][key]['n']})") for r, w in zip(shown, whiskers)], fontsize=8
    )
    spread = "range of all samples" if key == THROUGHPUT else "95% CI (rows with n >= 2)"
    ax.set_xlabel(f"{label} ({unit}), median; whiskers: {spread}")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def throughput_vs_turns(rows: list[dict]) -> bytes | None:
    """One point per row: median agent turns against median post-task throughput."""
    shown = [
        r
        for r in rows
        if not r["metrics"]["agent_turns"]["unavailable"]
        and not r["metrics"]["throughput_tokens_per_s"]["unavailable"]
        and r["metrics"]["agent_turns"]["median"]
    ]
    if not shown:
        return None
    colors = framework_colors([r["framework"] for r in rows])
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.add_subplot()
    for framework in sorted({r["framework"] for r in shown}):
        mine = [r for r in shown if r["framework"] == framework]
        ax.scatter(
            [r["metrics"]["agent_turns"]["median"] for r in mine],
            [r["metrics"]["throughput_tokens_per_s"]["median"] for r in mine],
            color=colors[framework],
            label=framework,
            s=50,
        )
        for r in mine:
            ax.annotate(
                r.get("task") or r.get("task_family"),
                (r["metrics"]["agent_turns"]["median"], r["metrics"]["throughput_tokens_per_s"]["median"]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("Agent turns (median; fewer is better)")
    ax.set_ylabel(f"Post-task throughput, {METRICS[THROUGHPUT][1]} (median)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def trial_strip(frame: pd.DataFrame, key: str, group_keys: list[str]) -> bytes | None:
    """Every trial's value as a dot per group, marker by status, so outliers and errors stay visible."""
    present = frame[frame[key].notna()]
    if present.empty or not present[key].astype(float).any():
        return None
    label, unit = METRICS[key]
    scale, unit = display_unit(unit)
    colors = framework_colors(list(frame["framework"]))
    groups = list(present.groupby(group_keys, sort=True))
    fig = Figure(figsize=(6.4, 0.45 * len(groups) + 1.1))
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    names = []
    for i, (name, group) in enumerate(groups):
        y = len(groups) - 1 - i
        names.append(" · ".join(str(part) for part in name))
        for status, trials in group.groupby("status"):
            ax.scatter(
                scale * trials[key].astype(float),
                y + rng.uniform(-0.15, 0.15, len(trials)),
                marker=STATUS_MARKERS.get(status, "o"),
                color=colors[group["framework"].iloc[0]],
                s=28,
            )
    ax.set_yticks(range(len(groups))[::-1], names, fontsize=8)
    ax.set_xlabel(f"{label} ({unit}) per trial; o resolved, x unresolved, s error, ^ incomplete")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)
