"""The base of every typed settings object: fields that check themselves, errors that name them.

A capability's settings are a frozen dataclass deriving from :class:`Settings`; each field is made
with :func:`setting`, which records the check that normalises its value and a one-line doc. The
checks run when the object is made, so a bad value fails at once with a :class:`SettingError`
naming the setting (``learning_rate must be ...``); :meth:`Settings.from_config` puts where the
value came from in front (``MLTK_TRAIN_EPOCHS: ...``, ``my.yaml: ...``) and the CLI turns an error
about a value it was given on the command line into a usage error naming the option.

The public way to build one is :func:`mltk.settings.load` (defaults < config file <
environment < explicit values).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from mltk.errors import ConfigError

Check = Callable[[str, Any], Any]
S = TypeVar("S", bound="Settings")


class SettingError(ConfigError):
    """A setting of the wrong type or out of range; ``key`` names it, ``problem`` says why."""

    def __init__(self, key: str, problem: str, origin: str | None = None) -> None:
        self.key, self.problem, self.origin = key, problem, origin
        super().__init__(f"{origin}: {problem}" if origin else problem)

    def at(self, origin: str | None) -> SettingError:
        """The same error, naming where the value came from (an env var, a config file)."""
        return SettingError(self.key, self.problem, origin)


def check_known(section: str, given: Iterable[Any], known: Sequence[str],
                where: str | None = None) -> None:
    """A ConfigError naming the keys of ``given`` that are not settings of ``section``: a typo
    in a config file or a keyword must not be ignored. ``where`` names the file."""
    unknown = sorted(str(k) for k in set(given) - set(known))
    if unknown:
        raise ConfigError(f"{where + ': ' if where else ''}unknown setting(s) for {section}: "
                          f"{', '.join(unknown)} (known: {', '.join(known)})")


def fail(key: str, expected: str, value: Any) -> SettingError:
    """``KEY must be EXPECTED, got VALUE``, raised by the checks below (``key`` may be dotted)."""
    return SettingError(key.split(".")[0], f"{key} must be {expected}, got {value!r}")


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(key: str, value: Any, low: int, high: int | None = None) -> int:
    if not is_int(value) or value < low or (high is not None and value > high):
        span = f"an integer from {low} to {high}" if high is not None else (
            "a positive integer" if low == 1 else f"an integer of at least {low}")
        raise fail(key, span, value)
    return int(value)


def as_number(value: Any) -> Any:
    """A number written as text (``"1e-3"``: YAML 1.1, which PyYAML reads, needs a dot for a
    float) as the float it spells; anything else unchanged."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def check_number(key: str, value: Any, low: float, high: float, high_open: bool = False,
                 low_open: bool = False) -> float:
    value = as_number(value)
    if not is_number(value) or value != value or not (low <= value <= high) or (
            high_open and value == high) or (low_open and value == low):
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise fail(key, f"a number in {span}", value)
    return float(value)


# -- check factories: setting(default, integer(1)) and so on ------------------------------------


def integer(low: int = 1, high: int | None = None) -> Check:
    return lambda key, value: check_int(key, value, low, high)


def number(low: float = 0.0, high: float = float("inf"), *, low_open: bool = False,
           high_open: bool = False) -> Check:
    """A number in range; a whole number stays an int, so a saved config.yaml records ``8``
    as written, not ``8.0``."""
    def check(key: str, value: Any) -> float:
        checked = check_number(key, value, low, high, high_open, low_open)
        return int(value) if is_int(value) else checked
    return check


def off_when_null(inner: Check, off: Any) -> Check:
    """``None`` (``null`` in YAML) meaning "off": ``off`` (e.g. 0.0 or False), else ``inner``."""
    return lambda key, value: off if value is None else inner(key, value)


def boolean() -> Check:
    def check(key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise fail(key, "true or false", value)
        return value
    return check


def choice(*values: Any) -> Check:
    """One of ``values``; strings are matched without regard to case and returned as listed."""
    def check(key: str, value: Any) -> Any:
        for allowed in values:
            if value == allowed or (isinstance(value, str) and isinstance(allowed, str)
                                    and value.lower() == allowed.lower()):
                return allowed
        raise fail(key, " | ".join(map(str, values)), value)
    return check


def text() -> Check:
    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise fail(key, "a non-empty string", value)
        return value
    return check


def optional(inner: Check) -> Check:
    """``None`` (meaning "not set": a default decided later) or what ``inner`` accepts."""
    return lambda key, value: None if value is None else inner(key, value)


def either(*checks: Check) -> Check:
    """The first check that accepts the value; the error of the last one otherwise."""
    def check(key: str, value: Any) -> Any:
        error: SettingError | None = None
        for inner in checks:
            try:
                return inner(key, value)
            except SettingError as exc:
                error = exc
        assert error is not None
        raise error
    return check


def sequence(item: Check, min_len: int = 0, max_len: int | None = None) -> Check:
    """A list of items each passing ``item``; returned as a tuple (settings are frozen)."""
    def check(key: str, value: Any) -> tuple[Any, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) < \
                min_len or (max_len is not None and len(value) > max_len):
            size = f"{min_len}" if max_len == min_len else f"at least {min_len}"
            raise fail(key, f"a list of {size} values", value)
        return tuple(item(f"{key}[{i}]", v) for i, v in enumerate(value))
    return check


def mapping(value_check: Check | None = None) -> Check:
    """A mapping (``{name: value}``), each value passing ``value_check`` when one is given."""
    def check(key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise fail(key, "a mapping", value)
        return {str(k): (value_check(f"{key}.{k}", v) if value_check else v)
                for k, v in value.items()}
    return check


def section(cls: type[Settings]) -> Check:
    """A nested settings object, from a mapping (keys unknown to ``cls`` are an error)."""
    def check(key: str, value: Any) -> Settings:
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise fail(key, f"a mapping of {', '.join(cls.field_names())}", value)
        unknown = sorted(str(k) for k in set(value) - set(cls.field_names()))
        if unknown:
            raise SettingError(key, f"{key} has unknown key(s) {', '.join(unknown)} "
                               f"(known: {', '.join(cls.field_names())})")
        try:
            return cls(**value)
        except SettingError as exc:
            raise SettingError(key, f"{key}.{exc.problem}") from None
    return check


def setting(default: Any = None, check: Check | None = None, doc: str = "", *,
            factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its check and its one-line doc (mutable defaults are copied;
    ``factory`` makes a default that is only known when an object is made)."""
    metadata = {"check": check, "doc": doc}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: _copy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _copy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of the typed settings: checked when made, frozen, dumped back to plain YAML."""

    #: The name of the defaults file (configs/SECTION.yaml) and of the MLTK_SECTION_* variables.
    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(self, f.name, check(f.name, getattr(self, f.name)))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def docs(cls) -> dict[str, str]:
        """Each setting's one-line description."""
        return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}

    @classmethod
    def from_config(cls: type[S], cfg: Mapping[str, Any],
                    origins: Mapping[str, str] | None = None) -> S:
        """Settings from a resolved mapping; an error names where the bad value came from.

        Keys the class does not know are an error naming them (a typo in a config file or in a
        keyword must not be ignored).
        """
        check_known(cls.SECTION or cls.__name__, cfg, cls.field_names())
        try:
            return cls(**cfg)
        except SettingError as exc:
            raise exc.at((origins or {}).get(exc.key)) from None

    def replace(self: S, **changes: Any) -> S:
        """A copy with some settings changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (nested settings as mappings, tuples as lists), in field order."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, Settings):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
