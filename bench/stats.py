"""The few statistics a benchmark report needs, numpy only, every random draw seeded.

Why a module of its own: report, plots and the regression gate must agree exactly on what a median,
a confidence interval and a success estimate are; with three attempts per cell the choices
(nearest-rank median, percentile bootstrap, unbiased pass@k) change the numbers people quote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SEED = 20260531
N_BOOT = 4000


def median(values: Sequence[float]) -> float:
    """Ordinary median (mean of the two middle values for an even count)."""
    if len(values) == 0:
        raise ValueError("median of an empty sample")
    return float(np.median(np.asarray(values, dtype=float)))


def nearest_rank(values: Sequence[float], q: float = 0.5) -> float:
    """The q-quantile by nearest rank: always one of the observed values (ATE-Bench's per-turn context)."""
    if len(values) == 0:
        raise ValueError("nearest_rank of an empty sample")
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile q={q} must be in (0, 1]")
    ordered = sorted(values)
    rank = math.ceil(q * len(ordered))
    return float(ordered[rank - 1])


def _bootstrap_medians(values: Sequence[float], rng: np.random.Generator, n_boot: int) -> np.ndarray:
    sample = np.asarray(values, dtype=float)
    picks = rng.integers(0, len(sample), size=(n_boot, len(sample)))
    return np.median(sample[picks], axis=1)


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(draws, [tail, 1.0 - tail])
    return float(lo), float(hi)


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = SEED
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median; the same input always gives the same interval."""
    if len(values) == 0:
        raise ValueError("bootstrap_ci of an empty sample")
    _check_confidence(confidence)
    draws = _bootstrap_medians(values, np.random.default_rng(seed), n_boot)
    return _interval(draws, confidence)


def ratio_of_medians(
    numerator: Sequence[float],
    denominator: Sequence[float],
    confidence: float = 0.95,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> tuple[float, float, float]:
    """median(numerator) / median(denominator) with a bootstrap CI, resampling each side independently.

    Returns (ratio, lo, hi). Draws whose denominator median is 0 are dropped; if the observed
    denominator median is 0 the ratio is undefined and a ValueError says so.
    """
    if len(numerator) == 0 or len(denominator) == 0:
        raise ValueError("ratio_of_medians needs at least one value on each side")
    _check_confidence(confidence)
    base = median(denominator)
    if base == 0:
        raise ValueError("ratio_of_medians: the denominator's median is 0, so the ratio is undefined")
    rng = np.random.default_rng(seed)
    top = _bootstrap_medians(numerator, rng, n_boot)
    bottom = _bootstrap_medians(denominator, rng, n_boot)
    keep = bottom != 0
    draws = top[keep] / bottom[keep]
    lo, hi = _interval(draws, confidence)
    return median(numerator) / base, lo, hi


def relative_change_draws(
    baseline: Sequence[float], candidate: Sequence[float], n_boot: int = N_BOOT, seed: int = SEED
) -> np.ndarray:
    """Bootstrap draws of median(candidate) / median(baseline) - 1, for one-sided tests."""
    rng = np.random.default_rng(seed)
    top = _bootstrap_medians(candidate, rng, n_boot)
    bottom = _bootstrap_medians(baseline, rng, n_boot)
    keep = bottom != 0
    return top[keep] / bottom[keep] - 1.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): chance that at least one of k of the n attempts succeeded."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: successes c={c} must be between 0 and attempts n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k={k} must be between 1 and attempts n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def fisher_exact_less(success_a: int, n_a: int, success_b: int, n_b: int) -> float:
    """One-sided Fisher exact p-value that group b's success rate is lower than group a's.

    Sums the hypergeometric probabilities of tables at least as extreme (b having as few or fewer
    successes given the margins). Exact for the tiny counts a benchmark has; no scipy needed.
    """
    if not (0 <= success_a <= n_a and 0 <= success_b <= n_b):
        raise ValueError("fisher_exact_less: successes must lie between 0 and the number of attempts")
    total_success = success_a + success_b
    total = n_a + n_b
    denominator = math.comb(total, total_success)
    low = max(0, total_success - n_a)
    p = sum(math.comb(n_b, x) * math.comb(n_a, total_success - x) for x in range(low, success_b + 1))
    return p / denominator


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} must be strictly between 0 and 1 (e.g. 0.95)")
