"""One plug-in registry for every kind of component: hashing methods, backbones, attack objectives,
perturbation optimizers, defenses and dataset sources.

A component registers itself with a decorator in its own file::

    METHODS = Registry("hashing method", fixed=("bits", "num_classes", "num_train", "seed"))

    @METHODS.register(reference="Li et al., IJCAI 2016", uses_memory_bank=True)
    class DPSH(HashingMethod):
        def __init__(self, bits: int, num_classes: int, num_train: int, seed: int = 0,
                     eta: Annotated[float, Range(0), "weight of the quantisation term"] = 0.1) -> None: ...

The constructor's signature is the single source of truth for the user-settable parameters: their names,
defaults, types, ranges (``Annotated[float, Range(low, high)]``), choices (``Literal[...]`` or
:class:`Choices`) and one-line help (a string in ``Annotated``). Arguments named in ``fixed`` are supplied
by the caller (code length, class count, ...) and are not user parameters. Everything else a plug-in
declares about itself (a display name, "uses sign steps", "targeted", presets) is passed to
:meth:`Registry.register` as keywords and read back from :attr:`Entry.attributes`, never kept in a list
elsewhere. :meth:`Registry.describe` feeds ``hashguard list``; contract tests iterate over the entries.

Unknown names, unknown parameters and out-of-range values raise :class:`~hashguard.errors.ConfigError`
with one line naming the component and the parameter.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from hashguard.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric parameter (``None``: unbounded); used as ``Annotated[float, Range(0, 1)]``."""

    low: float | None = None
    high: float | None = None
    #: True: the low bound itself is excluded (a value must be greater than ``low``)
    exclusive_low: bool = False


@dataclass(frozen=True)
class Choices:
    """The values a parameter may take; used as ``Annotated[str | None, Choices(None, "a", "b")]``."""

    values: tuple[Any, ...]

    def __init__(self, *values: Any) -> None:
        object.__setattr__(self, "values", tuple(values))


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Parameter:
    """A user-settable parameter of a registered component, read from its constructor's signature."""

    name: str
    kind: type
    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    optional: bool = False
    exclusive_low: bool = False

    def validate(self, value: Any, owner: str) -> Any:
        """``value`` converted to :attr:`kind` and checked; :class:`ConfigError` names ``owner`` and the
        parameter."""
        if value is None and (self.optional or self.default is None):
            return None
        try:
            converted = _convert(value, self.kind)
        except (TypeError, ValueError):
            raise ConfigError(f"{owner}: parameter {self.name} must be {self.kind.__name__}, got {value!r}") from None
        if self.choices is not None and converted not in self.choices:
            shown = ", ".join(str(c) for c in self.choices)
            raise ConfigError(f"{owner}: {self.name} must be one of {shown}, got {value!r}")
        # written so that NaN fails every bound
        below = self.low is not None and not (converted > self.low if self.exclusive_low else converted >= self.low)
        if below or (self.high is not None and not converted <= self.high):
            raise ConfigError(f"{owner}: {self.name} must be in {self._interval()}, got {value!r}")
        return converted

    def _interval(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        opening = "(" if self.exclusive_low or self.low is None else "["
        closing = "]" if self.high is not None else ")"
        return f"{opening}{low}, {high}{closing}"

    def describe(self) -> str:
        """``name=default (type, range): help``."""
        bounds = ""
        if self.choices is not None:
            bounds = ", one of " + "|".join(str(c) for c in self.choices)
        elif self.low is not None or self.high is not None:
            bounds = f", in {self._interval()}"
        text = f"{self.name}={_show(self.default)} ({self.kind.__name__}{bounds})"
        return f"{text}: {self.help}" if self.help else text


def _show(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _convert(value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in _TRUE + _FALSE:
                raise ValueError(value)
            return lowered in _TRUE
        if isinstance(value, (int, float)) and value not in (0, 1):
            raise ValueError(value)
        return bool(value)
    if kind is int:
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(value)
            return int(value)
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, str) and "/" in value:
            from fractions import Fraction

            return float(Fraction(value.strip()))
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    return kind(value)


def _parameter(name: str, hint: Any, default: Any) -> Parameter:
    """A :class:`Parameter` from one annotated constructor argument."""
    help_text, low, high, choices, exclusive = "", None, None, None, False
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, str):
                help_text = extra
            elif isinstance(extra, Range):
                low, high, exclusive = extra.low, extra.high, extra.exclusive_low
            elif isinstance(extra, Choices):
                choices = extra.values
    optional = False
    args = typing.get_args(hint)
    if args and type(None) in args and typing.get_origin(hint) in (typing.Union, types.UnionType):
        optional = True
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else Any
    if typing.get_origin(hint) is typing.Literal:
        choices = tuple(typing.get_args(hint)) + ((None,) if optional else ())
        hint = type(next(c for c in choices if c is not None))
    if isinstance(hint, type):
        kind = hint
    else:
        kind = type(default) if default not in (None, inspect.Parameter.empty) else str
    return Parameter(name, kind, default, help_text, low, high, choices, optional, exclusive)


@dataclass
class Entry(Generic[T]):
    """One registered component and what it declares about itself."""

    name: str
    target: Callable[..., T]
    kind: str
    summary: str = ""
    reference: str = ""
    aliases: tuple[str, ...] = ()
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    fixed: tuple[str, ...] = ()

    def parameters(self) -> tuple[Parameter, ...]:
        """The user-settable parameters: every constructor argument not in ``fixed``, in signature order."""
        function = self.target.__init__ if inspect.isclass(self.target) else self.target  # type: ignore[misc]
        hints = typing.get_type_hints(function, include_extras=True)
        found = []
        for name, arg in inspect.signature(function).parameters.items():
            if name == "self" or name in self.fixed or arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD):
                continue
            default = None if arg.default is inspect.Parameter.empty else arg.default
            found.append(_parameter(name, hints.get(name, Any), default))
        return tuple(found)

    def defaults(self) -> dict[str, Any]:
        """Every parameter at its default."""
        return {p.name: p.default for p in self.parameters()}

    def resolve(self, params: Mapping[str, Any] | None = None, preset: str | None = None) -> dict[str, Any]:
        """Every parameter's value: defaults < ``preset`` < ``params``, validated and converted."""
        declared = {p.name: p for p in self.parameters()}
        chosen: dict[str, Any] = {}
        if preset is not None:
            if preset not in self.presets:
                shown = ", ".join(self.presets) or "none"
                raise ConfigError(f"{self.kind} {self.name} has no preset {preset!r}; its presets: {shown}")
            chosen.update(self.presets[preset])
        chosen.update(params or {})
        unknown = sorted(set(chosen) - set(declared))
        if unknown:
            raise ConfigError(
                f"{self.kind} {self.name} has no parameter(s) {', '.join(unknown)}; "
                f"it accepts {', '.join(declared) or 'none'}"
            )
        values = {name: p.default for name, p in declared.items()}
        for key, value in chosen.items():
            values[key] = declared[key].validate(value, f"{self.kind} {self.name}")
        return values

    def build(self, *args: Any, preset: str | None = None, **params: Any) -> T:
        """Instantiate the component: the ``fixed`` arguments positionally or by keyword, the rest validated."""
        fixed = {k: params.pop(k) for k in list(params) if k in self.fixed}
        return self.target(*args, **fixed, **self.resolve(params, preset))

    def describe(self, verbose: bool = False) -> str:
        """One line (name, summary, reference); with ``verbose`` one more line per parameter."""
        line = self.name + (f": {self.summary}" if self.summary else "")
        missing = [part.strip() for part in self.reference.split(";") if part.strip() not in self.summary]
        if self.reference and missing:
            line += f" ({'; '.join(part for part in missing if part)})"
        if not verbose:
            return line
        details = [f"    {p.describe()}" for p in self.parameters()]
        details += [f"    preset {name}: {values}" for name, values in self.presets.items() if values]
        return "\n".join([line, *details])


def constructor_values(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``{name: obj.name}`` for every keyword of ``type(obj).__init__`` (minus ``skip``): the parameters an
    object was built with, read back from the attributes of the same names. Plug-ins whose constructor
    stores its arguments under their own names get ``params()`` for free, and it cannot drift from the
    registry's declaration."""
    signature = inspect.signature(type(obj).__init__)
    return {
        name: getattr(obj, name)
        for name, arg in signature.parameters.items()
        if name != "self" and name not in skip and arg.kind not in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD)
    }


class Registry(Mapping[str, Entry[T]]):
    """Name -> :class:`Entry` of one kind of component (a read-only mapping, in registration order)."""

    def __init__(self, kind: str, fixed: tuple[str, ...] = (), normalise: Callable[[str], str] | None = None) -> None:
        self.kind = kind
        self.fixed = tuple(fixed)
        self._normalise = normalise or (lambda name: name.lower())
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(
        self,
        name: str | None = None,
        *,
        summary: str | None = None,
        reference: str = "",
        aliases: tuple[str, ...] = (),
        presets: dict[str, dict[str, Any]] | None = None,
        **attributes: Any,
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering a class or factory under ``name`` (default: its ``name`` attribute)."""

        def decorate(target: Callable[..., T]) -> Callable[..., T]:
            key = name or getattr(target, "name", "")
            if not key:
                raise TypeError(f"{target!r} needs a registry name")
            key = self._normalise(key)
            if key in self._entries or key in self._aliases:
                raise TypeError(f"{self.kind} {key!r} is registered twice")
            doc = inspect.getdoc(target) or ""
            entry = Entry(
                key,
                target,
                self.kind,
                summary if summary is not None else " ".join(doc.split("\n\n")[0].split()),
                reference or getattr(target, "reference", ""),
                tuple(aliases),
                {k: dict(v) for k, v in (presets or {}).items()},
                dict(attributes),
                self.fixed,
            )
            self._entries[key] = entry
            for alias in aliases:
                self._aliases[self._normalise(alias)] = key
            return target

        return decorate

    def key(self, name: str) -> str:
        """The registered name of ``name`` (normalised, aliases resolved); unknown names raise ConfigError."""
        key = self._normalise(str(name))
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}")
        return key

    def entry(self, name: str) -> Entry[T]:
        """The entry registered as ``name``."""
        return self._entries[self.key(name)]

    def build(self, name: str, *args: Any, preset: str | None = None, **params: Any) -> T:
        """Instantiate ``name`` with the ``fixed`` arguments and validated parameters."""
        return self.entry(name).build(*args, preset=preset, **params)

    def where(self, **attributes: Any) -> list[str]:
        """Names of the entries whose attributes equal all of ``attributes``."""
        return [k for k, e in self._entries.items() if all(e.attributes.get(a) == v for a, v in attributes.items())]

    def describe(self, verbose: bool = False) -> str:
        """One line per entry (with its parameters when ``verbose``)."""
        return "\n".join(entry.describe(verbose) for entry in self._entries.values())

    def __getitem__(self, name: str) -> Entry[T]:
        return self.entry(name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._normalise(name)
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
