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
