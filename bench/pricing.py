"""Cost in dollars from token counts and one price table (prices.toml at the repo root).

Why the harness prices tokens itself: agents report cost inconsistently or not at all; one table
applied to every trial makes costs comparable (leaderboards do the same).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.types import TurnUsage

PRICES_PATH = Path(__file__).resolve().parent.parent / "prices.toml"
FIELDS = ("input", "output", "cache_read", "cache_write")


@dataclass(frozen=True)
class Price:
    """Dollars per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float


def load_prices(path: Path | str = PRICES_PATH) -> dict[str, Price]:
    """Read the price table, naming the file, the model and the field when an entry is malformed."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f'{path}: price table not found; create it with [models."provider/model"] entries') from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    prices = {}
    for model, entry in table.get("models", {}).items():
        missing = [f for f in FIELDS if not isinstance(entry.get(f), (int, float))]
        if missing:
            raise ValueError(
                f'{path}: [models."{model}"] needs numeric {", ".join(missing)} (dollars per million tokens)'
            )
        prices[model] = Price(*(float(entry[f]) for f in FIELDS))
    return prices


def price_key(model: str) -> str:
    """The table's name for a model: an openai-compatible server's URL is not part of it."""
    return model.partition("@")[0]


def cost_usd(
    model: str | None,
    prices: dict[str, Price],
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> float | None:
    """None when the model has no price: an unknown cost is not a zero cost."""
    price = prices.get(price_key(model)) if model else None
    if price is None:
        return None
    return (
        input_tokens * price.input
        + output_tokens * price.output
        + cache_read_tokens * price.cache_read
        + cache_write_tokens * price.cache_write
    ) / 1e6


def missing_price_note(model: str | None, prices: dict[str, Price]) -> str | None:
    """The note to show beside a null cost, or None when the model is priced."""
    if model is None:
        return "no model recorded, so no cost"
    if price_key(model) in prices:
        return None
    return f'no price for {price_key(model)!r} in prices.toml; add [models."{price_key(model)}"] to get a cost'


def turn_model(trial_model: str | None, asked: str | None) -> str | None:
    """The price table's name of the model one turn used: the trial's (`provider/model[@url]`), unless the
    call asked for another model, which is then that provider's (Claude Code's Explore sub-agent asks for
    a smaller Claude than the trial's)."""
    if trial_model is None or asked is None:
        return trial_model
    provider, _, rest = trial_model.partition("/")
    return trial_model if asked == rest.partition("@")[0] else f"{provider}/{asked}"


def turns_cost(
    trial_model: str | None, prices: dict[str, Price], turns: list[TurnUsage]
) -> tuple[float | None, str | None]:
    """(dollars, None) for the turns, each at its own model's price (`turn_model`); (None, the note naming
    the model without a price) when one has none: a partly known cost is not reported as the whole."""
    groups: dict[str | None, list[TurnUsage]] = {}
    for turn in turns:
        groups.setdefault(turn_model(trial_model, turn.model), []).append(turn)
    total = 0.0
    for model, group in groups.items():
        cost = cost_usd(
            model,
            prices,
            sum(t.input_tokens for t in group),
            sum(t.output_tokens for t in group),
            sum(t.cache_read_tokens for t in group),
            sum(t.cache_write_tokens for t in group),
        )
        if cost is None:
            return None, missing_price_note(model, prices)
        total += cost
    return total, None
