"""YAML loading that resolves scalars the way OPA's case loader does.

OPA reads its case files with go-yaml v3 (YAML 1.2 core schema) and then goes
through JSON. PyYAML implements YAML 1.1, where ``yes``/``on`` are booleans,
``1e3`` is a string, ``1:30`` is a sexagesimal integer and dates become
datetime objects. Any of those would silently change a case's data, so plain
scalars are resolved here with go-yaml's rules instead.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

import yaml

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUES = {"true", "True", "TRUE"}
_FALSES = {"false", "False", "FALSE"}
_INFS = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"}
_NEG_INFS = {"-.inf", "-.Inf", "-.INF"}
_NANS = {".nan", ".NaN", ".NAN"}
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_INT64_MIN = -(1 << 63)
_UINT64_MAX = (1 << 64) - 1

_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_STR_TAG = "tag:yaml.org,2002:str"


def _go_parse_int(text: str) -> int | None:
    """Mimics strconv.ParseInt(text, 0, 64) falling back to ParseUint."""
    sign = 1
    body = text
    if body[:1] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if not body:
        return None
    lower = body.lower()
    try:
        if lower.startswith("0x"):
            value = int(body[2:], 16)
        elif lower.startswith("0o"):
            value = int(body[2:], 8)
        elif lower.startswith("0b"):
            value = int(body[2:], 2)
        elif len(body) > 1 and body[0] == "0":
            value = int(body[1:], 8)
        elif body.isdigit() and body.isascii():
            value = int(body, 10)
        else:
            return None
    except ValueError:
        return None
    value *= sign
    if value < _INT64_MIN or value > _UINT64_MAX:
        return None
    return value


def _resolve_plain(text: str) -> tuple[str, Any]:
    if text in _NULLS:
        return _NULL_TAG, None
    if text in _TRUES:
        return _BOOL_TAG, True
    if text in _FALSES:
        return _BOOL_TAG, False
    if text in _INFS:
        return _FLOAT_TAG, math.inf
    if text in _NEG_INFS:
        return _FLOAT_TAG, -math.inf
    if text in _NANS:
        return _FLOAT_TAG, math.nan
    first = text[:1]
    if first == "." or first.isdigit() or first in "+-":
        plain = text.replace("_", "")
        as_int = _go_parse_int(plain)
        if as_int is not None:
            return _INT_TAG, as_int
        if _GO_FLOAT.match(plain):
            return _FLOAT_TAG, float(plain)
    # go-yaml would resolve timestamps here; OPA re-tags them as strings.
    return _STR_TAG, text


class CoreLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader with YAML 1.2 core-schema scalar resolution."""

    def resolve(self, kind, value, implicit):  # noqa: D401 - PyYAML hook
        if kind is yaml.ScalarNode and implicit[0]:
            if value == "<<":
                return "tag:yaml.org,2002:merge"
            return _resolve_plain(value)[0]
        return super().resolve(kind, value, implicit)


def _construct_scalar(loader: CoreLoader, node: yaml.ScalarNode) -> Any:
    tag, value = _resolve_plain(node.value)
    if tag == node.tag:
        return value
    # An explicit tag (e.g. "!!str 1") or a quoted scalar lands here.
    if node.tag == _STR_TAG:
        return node.value
    if node.tag == _FLOAT_TAG and tag == _INT_TAG:
        return float(value)
    raise yaml.constructor.ConstructorError(
        None, None, f"cannot decode {node.value!r} as {node.tag}", node.start_mark
    )


for _tag in (_NULL_TAG, _BOOL_TAG, _INT_TAG, _FLOAT_TAG):
    CoreLoader.add_constructor(_tag, _construct_scalar)


def _construct_mapping(loader: CoreLoader, node: yaml.MappingNode) -> Any:
    # Keys become JSON key strings right away: in a Python dict 1 and True
    # would collide, while on OPA's side they are the keys "1" and "true".
    result: dict[str, Any] = {}
    yield result
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (list, dict)):
            raise yaml.constructor.ConstructorError(
                None, None, "unhashable mapping key", key_node.start_mark
            )
        result[key_text(key)] = loader.construct_object(value_node, deep=True)


CoreLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
# Timestamps are never resolved implicitly (see _resolve_plain); an explicit
# !!timestamp tag is kept as its text too, as OPA does.
CoreLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)


def load(text: str) -> Any:
    return yaml.load(text, Loader=CoreLoader)  # noqa: S506 - safe loader subclass


# --- JSON output -------------------------------------------------------------


def go_float_text(value: float) -> str:
    """Formats a float like Go's encoding/json does (shortest round-trip)."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"JSON cannot represent {value!r}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    dec = Decimal(repr(value))
    magnitude = abs(value)
    if 1e-6 <= magnitude < 1e21:
        text = format(dec, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    sign, digits, exponent = dec.as_tuple()
    digit_text = "".join(str(d) for d in digits).rstrip("0") or "0"
    # Scientific exponent of the first significant digit.
    sci_exp = exponent + len(digits) - 1
    mantissa = digit_text[0]
    if len(digit_text) > 1:
        mantissa += "." + digit_text[1:]
    exp_sign = "-" if sci_exp < 0 else "+"
    return f"{'-' if sign else ''}{mantissa}e{exp_sign}{abs(sci_exp)}"


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def json_string(text: str) -> str:
    out = ['"']
    for ch in text:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif ch in "<>&\u2028\u2029":
            # Go's encoder escapes these by default.
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def to_json(value: Any) -> str:
    """Serialises a loaded YAML value to compact JSON text, Go style.

    Object keys are sorted, as Go's encoder does for maps.
    """
    parts: list[str] = []
    _emit(value, parts)
    return "".join(parts)


def _emit(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(go_float_text(value))
    elif isinstance(value, Decimal):
        # Numbers read from Rego text keep their original spelling.
        out.append(getattr(value, "text", None) or str(value))
    elif isinstance(value, str):
        out.append(json_string(value))
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _emit(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        keyed = sorted((key_text(k), v) for k, v in value.items())
        for i, (k, v) in enumerate(keyed):
            if i:
                out.append(",")
            out.append(json_string(k))
            out.append(":")
            _emit(v, out)
        out.append("}")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def key_text(key: Any) -> str:
    """The JSON object key a YAML mapping key turns into on OPA's side."""
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if key is True:
        return "true"
    if key is False:
        return "false"
    if isinstance(key, float):
        return go_float_text(key)
    return str(key)


def normalize(value: Any) -> Any:
    """Returns value with every mapping key converted to its JSON string."""
    if isinstance(value, dict):
        return {key_text(k): normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value
