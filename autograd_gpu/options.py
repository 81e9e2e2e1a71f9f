"""Enums for configuration options that also accept their names as strings.

``CheckpointStrategy.parse("selective")`` and ``CheckpointStrategy.SELECTIVE`` mean the same; an
unknown value raises ArgumentError naming the config, the argument and the accepted values.
"""

from __future__ import annotations

import enum

from .errors import ArgumentError

__all__ = ["OptionEnum"]


class OptionEnum(enum.Enum):
    """Base of the option enums (CheckpointStrategy, PrecisionMode, SchedulingStrategy, ...)."""

    @classmethod
    def _aliases(cls) -> dict:
        """Extra accepted spellings per member (lower case)."""
        return {}

    @classmethod
    def parse(cls, value, where: str | None = None, what: str = "value"):
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.strip().lower()
            aliases = cls._aliases()
            for member in cls:
                if key in (str(member.value).lower(), member.name.lower()) or key in aliases.get(
                    member, ()
                ):
                    return member
        names = ", ".join(repr(m.value) for m in cls)
        raise ArgumentError(
            f"{where or cls.__name__}: argument '{what}' expected a {cls.__name__} or one of "
            f"{names}, got {value!r}"
        )
