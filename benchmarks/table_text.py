"""Text helpers shared by the benchmark scripts (imported as a sibling module: run the scripts from anywhere as
``python benchmarks/bench_*.py``)."""

from __future__ import annotations

import os


def load_text() -> str:
    """'1-minute / 5-minute / 15-minute' load average of this machine."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def number(value: float | None, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals, or '-' when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"
