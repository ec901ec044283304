"""Cost in dollars from token counts and one price table (prices.toml at the repo root).

Why the harness prices tokens itself: agents report cost inconsistently or not at all; one table
applied to every trial makes costs comparable (leaderboards do the same).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

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
