"""Reading a service's settings from ``ACGS_*`` environment variables, shared by every service."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any


def read_env(
    names: Mapping[str, str],
    parsers: Mapping[str, Callable[[str], Any]],
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Parses each set variable in ``names`` (field -> variable) with its parser. A malformed
    variable raises ``ValueError`` naming it and its value."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, var in names.items():
        text = env.get(var)
        if text is None:
            continue
        try:
            values[name] = parsers[name](text.strip())
        except ValueError as exc:
            raise ValueError(f"{var}={text!r}: {exc}") from None
    return values


# -- parsers shared by the settings classes: each raises ValueError saying what is wrong --------


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses NaN
        raise ValueError("must not be negative")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # also refuses NaN
        raise ValueError("must be positive")
    return value


def optional_text(text: str) -> str | None:
    """Empty text means "not set"."""
    return text or None


def optional_non_negative_int(text: str) -> int | None:
    return non_negative_int(text) if text else None


_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))


def flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false")


def names(text: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def mask_password(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***`` (the user stays)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        if ":" in userinfo:
            return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
    return url
