"""Number formatting shared by the Markdown and HTML reports, so both always show the same digits.

Convention: every mAP and t-mAP is shown as a percentage with two decimals (``0.9731`` -> ``"97.31"``), like
the paper's Tables I and II; a missing or non-finite value is shown as an em dash.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "\u2014"


def as_float(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` for anything else (missing, ``None``, NaN, text, booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as np

            if isinstance(value, np.generic) and np.issubdtype(type(value), np.number):
                value = float(value)
            else:
                return None
        except ImportError:  # pragma: no cover - numpy is a core dependency
            return None
    number = float(value)
    return number if math.isfinite(number) else None


def fmt_map(value: Any) -> str:
    """An mAP in [0, 1] as a percentage with two decimals: ``0.9731`` -> ``"97.31"``."""
    number = as_float(value)
    return MISSING if number is None else f"{100.0 * number:.2f}"


def fmt_pct(value: Any) -> str:
    """Like :func:`fmt_map` with a percent sign, for running text: ``0.9731`` -> ``"97.31%"``."""
    text = fmt_map(value)
    return text if text == MISSING else f"{text}%"


def fmt_num(value: Any, digits: int = 2) -> str:
    """A plain number with a fixed number of decimals."""
    number = as_float(value)
    return MISSING if number is None else f"{number:.{digits}f}"


def fmt_int(value: Any) -> str:
    """A count, with thousands separators."""
    number = as_float(value)
    return MISSING if number is None else f"{int(round(number)):,}"


def fmt_seconds(value: Any) -> str:
    """A duration: ``3.2 s``, ``4 min 03 s`` or ``1 h 02 min``."""
    number = as_float(value)
    if number is None:
        return MISSING
    if number < 60:
        return f"{number:.1f} s"
    if number < 3600:
        minutes, seconds = divmod(int(round(number)), 60)
        return f"{minutes} min {seconds:02d} s"
    hours, rest = divmod(int(round(number)), 3600)
    return f"{hours} h {rest // 60:02d} min"


def fmt_eps(value: Any, label: Any = None) -> str:
    """An L-infinity radius, with its x/255 form: ``"32/255 (0.1255)"``."""
    number = as_float(value)
    if number is None:
        return str(label) if label else MISSING
    if label:
        return f"{label} ({number:.4f})"
    return f"{number * 255:.3g}/255 ({number:.4f})"
