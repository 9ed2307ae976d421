"""Comparing ACGS results (parsed Rego values) with OPA's expected values.

Expected values come from YAML and are plain JSON data, so a set in a result
is written there as an array. Where the result shows a set, the array is
compared as a multiset; everywhere else arrays compare in order. Numbers
compare by value (OPA compares 1 and 1.0 as equal).
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from decimal import Decimal
from typing import Any

from . import yamlcore
from .regoterm import RegoObject, RegoSet


class _Ambiguous(Exception):
    """A value with a set inside has no order-independent canonical key."""


def _num(value: Any) -> Decimal:
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def key_text(key: Any) -> str:
    """JSON object key of a result object key, as OPA's JSON conversion does
    (non-string keys become their compact JSON encoding)."""
    if isinstance(key, str):
        return key
    return yamlcore.to_json(to_plain(key))


def to_plain(value: Any) -> Any:
    """Result value as plain JSON data: sets become arrays in printed order."""
    if isinstance(value, RegoSet):
        return [to_plain(v) for v in value.items]
    if isinstance(value, RegoObject):
        return {key_text(k): to_plain(v) for k, v in value.items}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def _want_canon(value: Any) -> Any:
    if value is None:
        return ("z",)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float, Decimal)):
        return ("n", _num(value))
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("a", tuple(_want_canon(v) for v in value))
    if isinstance(value, dict):
        return ("o", tuple(sorted((k, _want_canon(v)) for k, v in value.items())))
    raise TypeError(f"unexpected value {value!r}")


def _got_canon(value: Any) -> Any:
    if value is None:
        return ("z",)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, Decimal):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("a", tuple(_got_canon(v) for v in value))
    if isinstance(value, RegoObject):
        items = {}
        for k, v in value.items:
            kt = key_text(k)
            if kt in items:
                raise _Ambiguous()
            items[kt] = _got_canon(v)
        return ("o", tuple(sorted(items.items())))
    if isinstance(value, RegoSet):
        raise _Ambiguous()
    raise TypeError(f"unexpected value {value!r}")


def equal(want: Any, got: Any) -> bool:
    if want is None:
        return got is None
    if isinstance(want, bool):
        return isinstance(got, bool) and got == want
    if isinstance(want, (int, float)):
        return isinstance(got, Decimal) and got == _num(want)
    if isinstance(want, str):
        return isinstance(got, str) and got == want
    if isinstance(want, list):
        if isinstance(got, RegoSet):
            return multiset_equal(want, got.items)
        if isinstance(got, list):
            return len(want) == len(got) and all(equal(w, g) for w, g in zip(want, got))
        return False
    if isinstance(want, dict):
        if not isinstance(got, RegoObject):
            return False
        got_items: dict[str, Any] = {}
        for k, v in got.items:
            kt = key_text(k)
            if kt in got_items:
                return False  # e.g. keys 1 and "1": JSON would merge them
            got_items[kt] = v
        if set(got_items) != set(want):
            return False
        return all(equal(want[k], got_items[k]) for k in want)
    return False


def multiset_equal(want: list[Any], got: list[Any]) -> bool:
    """True when want and got hold the same elements, ignoring order."""
    if len(want) != len(got):
        return False
    try:
        return Counter(_want_canon(w) for w in want) == Counter(_got_canon(g) for g in got)
    except _Ambiguous:
        pass
    # Sets inside elements: one element may match several candidates, so
    # find a perfect matching (augmenting paths) instead of matching greedily.
    n = len(want)
    adj = [[j for j in range(n) if equal(want[j], got[i])] for i in range(n)]
    match_of_want: list[int | None] = [None] * n

    def augment(i: int, seen: list[bool]) -> bool:
        for j in adj[i]:
            if seen[j]:
                continue
            seen[j] = True
            owner = match_of_want[j]
            if owner is None or augment(owner, seen):
                match_of_want[j] = i
                return True
        return False

    return all(augment(i, [False] * n) for i in range(n))


def rows_equal(want_rows: list[dict[str, Any]], got_rows: list[RegoObject],
               sort_bindings: bool) -> bool:
    """Compares result sets the way OPA's Wasm runner does: as sets of
    binding rows; with sort_bindings, array bindings ignore order."""
    want_unique: dict[Any, dict[str, Any]] = {}
    for row in want_rows:
        want_unique.setdefault(_want_canon(row), row)
    wants = list(want_unique.values())
    if len(wants) != len(got_rows):
        return False
    if not sort_bindings:
        return multiset_equal(wants, list(got_rows))
    n = len(wants)
    used = [False] * n
    for got in got_rows:
        for j in range(n):
            if not used[j] and _row_equal_sorted(wants[j], got):
                used[j] = True
                break
        else:
            return False
    return True


def _row_equal_sorted(want: dict[str, Any], got: RegoObject) -> bool:
    got_items = {key_text(k): v for k, v in got.items}
    if set(got_items) != set(want):
        return False
    for k, w in want.items():
        g = got_items[k]
        if isinstance(w, list) and isinstance(g, (list, RegoSet)):
            items = g.items if isinstance(g, RegoSet) else g
            if not multiset_equal(w, items):
                return False
        elif not equal(w, g):
            return False
    return True


# --- diffs ---------------------------------------------------------------


def _scalar_text(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return yamlcore.go_float_text(value)
    if isinstance(value, Decimal):
        return getattr(value, "text", None) or str(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _display(value: Any) -> Any:
    """Plain data with set elements in a stable order, for display."""
    if isinstance(value, RegoSet):
        items = [_display(v) for v in value.items]
        return sorted(items, key=_one_line)
    if isinstance(value, RegoObject):
        return {key_text(k): _display(v) for k, v in value.items}
    if isinstance(value, list):
        return [_display(v) for v in value]
    return value


def _one_line(value: Any) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_one_line(v)}"
                          for k, v in sorted(value.items()))
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_one_line(v) for v in value) + "]"
    return _scalar_text(value)


def _pretty(value: Any, indent: str = "", width: int = 72) -> list[str]:
    flat = _one_line(value)
    if len(indent) + len(flat) <= width or not isinstance(value, (dict, list)) or not value:
        return [indent + flat]
    inner = indent + " "
    lines: list[str] = []
    if isinstance(value, dict):
        lines.append(indent + "{")
        for k, v in sorted(value.items()):
            sub = _pretty(v, inner + " ", width)
            lines.append(f"{inner}{json.dumps(k, ensure_ascii=False)}:")
            lines.extend(sub)
        lines.append(indent + "}")
    else:
        lines.append(indent + "[")
        for v in value:
            lines.extend(_pretty(v, inner, width))
        lines.append(indent + "]")
    return lines


def short(value: Any, limit: int = 300) -> str:
    text = _one_line(_display(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def diff(want: Any, got: Any, max_lines: int = 20) -> str:
    """A short unified diff between an expected and an actual value."""
    want_lines = _pretty(_display(want))
    got_lines = _pretty(_display(got))
    if len(want_lines) == 1 and len(got_lines) == 1:
        return f"  want: {want_lines[0][:400]}\n  got:  {got_lines[0][:400]}"
    out = list(difflib.unified_diff(want_lines, got_lines, "want", "got", n=1, lineterm=""))
    if len(out) > max_lines:
        out = out[:max_lines] + [f"... ({len(out) - max_lines} more diff lines)"]
    return "\n".join("  " + line for line in out)
