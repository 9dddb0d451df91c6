"""The plug-in registry itself: parameters read from a signature, validation, presets, attributes, errors."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest

from hashguard.errors import ConfigError
from hashguard.registry import Choices, Range, Registry


def _toy_registry() -> Registry:
    toys: Registry = Registry("toy", fixed=("size",))

    @toys.register(reference="Someone et al., 2024", presets={"small": {"width": 2}}, fast=True, aliases=("plainy",))
    class Plain:
        """Plain toy: the first docstring line is its summary."""

        name = "plain"

        def __init__(
            self,
            size: int,
            width: Annotated[int, Range(1, 64), "channels"] = 8,
            rate: Annotated[float, Range(0, exclusive_low=True)] = 0.5,
            mode: Literal["a", "b"] = "a",
            scale: Annotated[float | None, Range(0)] = None,
            pick: Annotated[str | None, Choices(None, "x", "y")] = None,
            flag: bool = False,
        ) -> None:
            self.size, self.width, self.rate, self.mode = size, width, rate, mode
            self.scale, self.pick, self.flag = scale, pick, flag

    @toys.register("factory", summary="a function plug-in")
    def make(size: int, count: int = 3) -> tuple[int, int]:
        return size, count

    return toys


def test_parameters_come_from_the_signature():
    toys = _toy_registry()
    params = {p.name: p for p in toys.entry("plain").parameters()}
    assert list(params) == ["width", "rate", "mode", "scale", "pick", "flag"]  # "size" is fixed, not a parameter
    assert (params["width"].kind, params["width"].default, params["width"].low, params["width"].high) == (int, 8, 1, 64)
    assert params["width"].help == "channels"
    assert params["mode"].choices == ("a", "b") and params["mode"].kind is str
    assert params["scale"].optional and params["scale"].kind is float
    assert params["pick"].choices == (None, "x", "y")
    assert toys.entry("factory").defaults() == {"count": 3}


def test_build_validates_and_converts():
    toys = _toy_registry()
    built = toys.build("PLAIN", 5, width="16", rate="1/4", flag="yes", scale=None)
    assert (built.size, built.width, built.rate, built.flag, built.scale) == (5, 16, 0.25, True, None)
    assert toys.build("plainy", size=1).width == 8  # aliases and fixed arguments by keyword
    assert toys.build("factory", 7, count=2) == (7, 2)
    for params, message in (
        ({"width": 0}, r"toy plain: width must be in \[1, 64\], got 0"),
        ({"width": 2.5}, "toy plain: parameter width must be int, got 2.5"),
        ({"rate": 0}, r"rate must be in \(0, inf\)"),
        ({"mode": "c"}, "mode must be one of a, b"),
        ({"flag": "maybe"}, "parameter flag must be bool"),
        ({"colour": 1}, "toy plain has no parameter\\(s\\) colour; it accepts width, rate, mode, scale, pick, flag"),
    ):
        with pytest.raises(ConfigError, match=message):
            toys.build("plain", 1, **params)


def test_presets_attributes_and_listing():
    toys = _toy_registry()
    assert toys.build("plain", 1, preset="small").width == 2
    assert toys.build("plain", 1, preset="small", width=4).width == 4  # explicit values beat the preset
    with pytest.raises(ConfigError, match="has no preset 'huge'; its presets: small"):
        toys.build("plain", 1, preset="huge")
    assert toys.where(fast=True) == ["plain"]
    entry = toys.entry("plain")
    assert entry.summary == "Plain toy: the first docstring line is its summary."
    assert entry.reference == "Someone et al., 2024"
    text = toys.describe(verbose=True)
    assert "plain: Plain toy" in text and "width=8 (int, in [1, 64]): channels" in text and "factory:" in text
    assert list(toys) == ["plain", "factory"] and len(toys) == 2 and "PlainY" in toys


def test_unknown_and_duplicate_names():
    toys = _toy_registry()
    with pytest.raises(ConfigError, match="unknown toy 'nope'; choose one of plain, factory"):
        toys.entry("nope")
    with pytest.raises(TypeError, match="registered twice"):
        toys.register("plain")(lambda size: None)


def test_summary_is_the_whole_first_paragraph_and_references_are_not_repeated() -> None:
    toys = Registry("toy")

    @toys.register("wrapped", reference="A et al., X 2020; B et al., Y 2021")
    class Wrapped:
        """A summary that wraps onto a second line and cites (A et al., X
        2020).

        Details that are not part of the summary."""

    entry = toys.entry("wrapped")
    assert entry.summary == "A summary that wraps onto a second line and cites (A et al., X 2020)."
    assert entry.describe() == f"wrapped: {entry.summary} (B et al., Y 2021)"
