"""How many labels a budget buys: a count (an integer >= 1), a fraction of the pool (a float in (0, 1]) or a
percentage (a string such as ``"5%"``)."""

from __future__ import annotations

import math
import numbers
from typing import Any

from hashguard.errors import ConfigError


def check_budget(budget: Any) -> int | float:
    """``budget`` as an integer count or a float fraction in (0, 1]; anything else is one :class:`ConfigError`
    line. ``"5%"`` is the fraction 0.05; ``True``/``False`` are refused (not counts)."""
    value = budget
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text) if "." in text else int(text)
        except ValueError:
            raise ConfigError(f"label budget {budget!r} is neither a count, a fraction nor a percentage") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"label budget must be a count (e.g. 100) or a fraction (e.g. 0.05), got {budget!r}")
    if isinstance(value, numbers.Integral):
        if value < 1:
            raise ConfigError(f"label budget must be at least 1 label, got {budget!r}")
        return int(value)
    value = float(value)
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise ConfigError(
            f"label budget {budget!r}: a fraction must be in (0, 1] (a count is a whole number such as 100)"
        )
    return value


def budget_count(budget: Any, pool_size: int) -> int:
    """The number of labels ``budget`` buys in a pool of ``pool_size`` items (a fraction rounds to the nearest
    count, at least 1). A count above the pool, or a fraction of an empty pool, is a :class:`ConfigError`."""
    value = check_budget(budget)
    if pool_size < 1:
        raise ConfigError("the unlabelled pool is empty: there is nothing to label")
    if isinstance(value, int):
        if value > pool_size:
            raise ConfigError(f"label budget {value} exceeds the pool of {pool_size} items")
        return value
    return min(pool_size, max(1, int(round(value * pool_size))))
