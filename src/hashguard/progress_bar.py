"""Progress bars with an ETA on stderr for long loops: attack query batches, PrototypeNet and GAN training.

A setting decides whether a bar is drawn: ``True`` draws it, ``False`` silences it and ``None`` draws it only
when stderr is a terminal (logs, pipes and test captures stay quiet). A function with a ``progress`` argument
(``hashguard.attacks.evaluate.evaluate_attack``, ``hashguard.pipeline.attack.run_attack``) opens a
:func:`progress_scope`, and loops deep inside the call (an attack's one-off training) draw their bars with
:func:`progress_bar`, which reads the enclosing scope's setting. Outside any scope nothing is drawn, so a library
call that did not ask for progress (e.g. adversarial training, which trains a PrototypeNet) stays silent.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["progress_bar", "progress_enabled", "progress_scope"]

#: the setting of the innermost :func:`progress_scope` (False outside any)
_SETTING: ContextVar[bool | None] = ContextVar("hashguard_progress", default=False)

#: tqdm's bar with the ETA spelled out
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed} elapsed, ETA {remaining}{postfix}]"


def _stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress_enabled(progress: bool | None | str = "inherit") -> bool:
    """Whether a bar is drawn for ``progress`` (True / False / None = when stderr is a terminal); the default
    ``"inherit"`` reads the enclosing :func:`progress_scope`."""
    setting = _SETTING.get() if isinstance(progress, str) else progress
    return _stderr_is_terminal() if setting is None else bool(setting)


@contextmanager
def progress_scope(progress: bool | None) -> Iterator[None]:
    """Bars drawn by :func:`progress_bar` inside the block follow ``progress`` (True / False / None = terminal)."""
    token = _SETTING.set(progress)
    try:
        yield
    finally:
        _SETTING.reset(token)


class _Silent:
    """The part of tqdm's interface the project uses, doing nothing."""

    def __init__(self, iterable: Iterable[Any] | None) -> None:
        self.iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        return iter(self.iterable if self.iterable is not None else ())

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        return None

    def close(self) -> None:
        return None


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    progress: bool | None | str = "inherit",
) -> Any:
    """A tqdm bar on stderr (elapsed time and ETA) over ``iterable`` or ``total`` manual updates, or a silent
    stand-in with the same interface (iteration, ``update``, ``set_postfix_str``, ``close``, ``with``) when
    :func:`progress_enabled` says no. On a terminal the finished bar is cleared; elsewhere (a log file, a
    forced bar) its final state stays as the last line."""
    if not progress_enabled(progress):
        return _Silent(iterable)
    from tqdm import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        leave=not _stderr_is_terminal(),  # a terminal clears the finished bar; a log keeps its last state
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format=BAR_FORMAT,
    )
