"""Stage-level progress of a study: one line per stage with its elapsed time, the study's elapsed time and an
ETA.

The study announces its plan up front as stages with a rough cost each (:func:`stage_cost`: items x passes
through the network). The ETA after a stage is the measured seconds per cost unit of the stages that really
ran (cached stages cost nothing) times the cost still ahead; before the first stage has run it is unknown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


def format_seconds(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03`` / ``--:--`` for unknown."""
    if seconds is None:
        return "--:--"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class StagePlan:
    """The planned stages (name -> cost units) and what has been measured so far."""

    costs: dict[str, float]
    log: Callable[[str], None] = print
    started: float = field(default_factory=time.perf_counter)
    done: list[str] = field(default_factory=list)
    ran_cost: float = 0.0
    ran_seconds: float = 0.0
    timings: list[dict[str, object]] = field(default_factory=list)

    def remaining_cost(self) -> float:
        return sum(cost for name, cost in self.costs.items() if name not in self.done)

    def eta(self) -> float | None:
        """Seconds still ahead, from the measured seconds per unit of the stages that ran."""
        if self.ran_cost <= 0:
            return None if self.remaining_cost() > 0 else 0.0
        return self.ran_seconds / self.ran_cost * self.remaining_cost()

    def position(self, name: str) -> str:
        names = list(self.costs)
        index = names.index(name) + 1 if name in names else len(self.done) + 1
        return f"[{index}/{len(names)}]"

    def start(self, name: str) -> None:
        self.log(f"{self.position(name)} {name} ...")

    def finish(self, name: str, seconds: float, cached: bool) -> None:
        """Record a finished stage and print its line."""
        if name not in self.done:
            self.done.append(name)
        if not cached:
            self.ran_cost += self.costs.get(name, 0.0)
            self.ran_seconds += seconds
        self.timings.append({"name": name, "seconds": round(seconds, 3), "cached": cached})
        elapsed = time.perf_counter() - self.started
        what = "cached" if cached else f"done in {format_seconds(seconds)}"
        self.log(
            f"{self.position(name)} {name}: {what} | elapsed {format_seconds(elapsed)} | "
            f"ETA {format_seconds(self.eta())}"
        )


def stage_cost(items: int, passes: float) -> float:
    """Rough cost of a stage: images processed times forward+backward passes per image."""
    return float(max(items, 1)) * max(passes, 1.0)
