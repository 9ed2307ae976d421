"""An agent as the registry knows it (:class:`AgentRecord`), a partial change to one
(:class:`AgentUpdate`), and the checks every value passes before it is stored or served.

Numbers stay exact: a trust level is a :class:`~decimal.Decimal` kept as its decimal text, and
numbers inside ``attributes`` are read and written as decimals too, so what the constitution
compares is what the operator typed, never a double near it."""

from __future__ import annotations

import json
import math
import re
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from acgs.registry.errors import InvalidAgentError

#: An agent id: an ASCII letter or digit, then up to 127 of letters, digits and ``._:@-``.
#: ASCII only, so no confusable, invisible or control character can reach a match.
AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}", re.ASCII)
#: A tier or class name.
TIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", re.ASCII)
#: A trust level written as text: plain decimal digits (no sign, exponent, space or
#: underscore, no digits of other scripts), at most 30 after the point.
TRUST_TEXT = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,30})?|\.[0-9]{1,30}", re.ASCII)
#: Digits after the point a trust level may carry.
TRUST_DIGITS: Final = 30
#: Size of ``attributes`` as compact JSON (UTF-8 bytes), depth of nesting, and per-key length.
MAX_ATTRIBUTES_BYTES: Final = 16 * 1024
MAX_ATTRIBUTES_DEPTH: Final = 8
MAX_KEY_CHARS: Final = 128
MAX_OWNER_CHARS: Final = 256
#: Significant digits and decimal exponent range of a number inside ``attributes``.
MAX_NUMBER_DIGITS: Final = 64
MAX_NUMBER_EXPONENT: Final = 400

#: Names of the record's own fields: an attribute may not take one (it would shadow the field
#: wherever the record is flattened into one document).
RESERVED_ATTRIBUTES: Final = frozenset(
    ("agent_id", "trust_level", "tier", "owner", "attributes", "disabled", "created_at", "updated_at")
)

# Control, format (zero-width, bidi), surrogate, private-use and unassigned characters, and
# line or paragraph separators: none belongs in a name a person reads or a policy matches.
_INVISIBLE = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def _visible_text(field_name: str, value: Any, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidAgentError(field_name, f"must be a string, not {_kind(value)}")
    if not value:
        raise InvalidAgentError(field_name, "must not be empty")
    if len(value) > max_chars:
        raise InvalidAgentError(field_name, f"longer than {max_chars} characters")
    if value.isascii() and value.isprintable() and value[0] != " " and value[-1] != " ":
        return value  # the common case: printable ASCII is visible and already NFC
    for ch in value:
        if unicodedata.category(ch) in _INVISIBLE:
            raise InvalidAgentError(field_name, f"holds the control or invisible character U+{ord(ch):04X}")
    if value != value.strip():
        raise InvalidAgentError(field_name, "must not start or end with white space")
    if unicodedata.normalize("NFC", value) != value:
        raise InvalidAgentError(field_name, "must be in Unicode normal form NFC")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _shown(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def check_agent_id(value: Any) -> str:
    """``value`` if it is a well-formed agent id, else :class:`InvalidAgentError`."""
    if not isinstance(value, str):
        raise InvalidAgentError("agent_id", f"must be a string, not {_kind(value)}")
    if AGENT_ID.fullmatch(value) is None:
        raise InvalidAgentError(
            "agent_id",
            f"{_shown(value)} is not an agent id: 1 to 128 ASCII letters, digits and . _ : @ -, "
            "starting with a letter or digit",
        )
    return value


def check_tier(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidAgentError("tier", f"must be a string or null, not {_kind(value)}")
    if TIER.fullmatch(value) is None:
        raise InvalidAgentError(
            "tier", f"{_shown(value)} is not a tier: 1 to 64 ASCII letters, digits and . _ : -, starting with a letter or digit"
        )
    return value


def check_owner(value: Any) -> str | None:
    if value is None:
        return None
    return _visible_text("owner", value, MAX_OWNER_CHARS)


def check_disabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidAgentError("disabled", f"must be true or false, not {_kind(value)}")
    return value


def check_trust_level(value: Any) -> Decimal:
    """The trust level as an exact decimal in [0, 1], without trailing zeros.

    Accepted: a :class:`~decimal.Decimal` or an ``int`` (as a JSON parser with
    ``parse_float=Decimal`` yields them), a finite ``float`` (taken as its shortest repr, the
    number a person wrote), or a string of plain decimal digits (``"0.8"``, ``"1"``).
    Refused, with the reason: booleans, NaN and infinities, strings with an exponent, sign,
    spaces or non-ASCII digits, values outside [0, 1], more than 30 digits after the point."""
    name = "trust_level"
    if isinstance(value, bool):
        raise InvalidAgentError(name, "must be a number in [0, 1], not a boolean")
    if isinstance(value, str):
        if TRUST_TEXT.fullmatch(value) is None:
            raise InvalidAgentError(
                name, f"{_shown(value)} is not a plain decimal number (digits and one point, at most {TRUST_DIGITS} after it)"
            )
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidAgentError(name, f"must be a finite number, not {value!r}")
        number = Decimal(repr(value))
    else:
        raise InvalidAgentError(name, f"must be a number in [0, 1], not {_kind(value)}")
    if not number.is_finite():
        raise InvalidAgentError(name, f"must be a finite number, not {number}")
    # Exact comparisons: Decimal never rounds to compare.
    if number < 0 or number > 1:
        raise InvalidAgentError(name, f"{_number_text(number)} is outside [0, 1]")
    return _exact_unit(number)


def _exact_unit(number: Decimal) -> Decimal:
    """``number`` (finite, in [0, 1]) with its trailing zeros dropped, refused past
    ``TRUST_DIGITS`` digits after the point. Works on the digits, never through a context that
    could round them."""
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    kept = list(digits)
    while exponent < 0 and len(kept) > 1 and kept[-1] == 0:
        kept.pop()
        exponent += 1
    if all(d == 0 for d in kept):
        return Decimal(0)
    if exponent < -TRUST_DIGITS:
        raise InvalidAgentError("trust_level", f"more than {TRUST_DIGITS} digits after the point")
    return Decimal((0, tuple(kept), exponent))


def trust_text(number: Decimal) -> str:
    """The text a trust level is stored and sent as: ``0``, ``1`` or ``0.`` and digits."""
    return _number_text(number)


def _number_text(number: Decimal) -> str:
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if len(digits) + abs(exponent) > 80:
        return str(number)  # never expand a huge exponent into digits
    return format(number, "f")


# -- exact JSON -------------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def loads_exact(text: str | bytes) -> Any:
    """JSON text to Python, with every non-integer number as a :class:`Decimal` (exact), and
    NaN, Infinity and duplicate keys refused (``ValueError``)."""
    return _DECODER.decode(text.decode("utf-8") if isinstance(text, bytes) else text)


def dumps_exact(value: Any, *, sort_keys: bool = True) -> str:
    """Compact JSON (keys sorted unless told otherwise); a :class:`Decimal` is written as its
    own digits."""
    if isinstance(value, Decimal):
        return _number_text(value) if value.is_finite() else _refuse_constant(str(value))
    if isinstance(value, Mapping):
        items = sorted(value.items()) if sort_keys else value.items()
        return "{" + ",".join(_ENCODE(k) + ":" + dumps_exact(v, sort_keys=sort_keys) for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps_exact(v, sort_keys=sort_keys) for v in value) + "]"
    return _ENCODE(value)


def check_attributes(value: Any) -> dict[str, Any]:
    """A JSON object of bounded size and depth; keys visible text, top-level keys not a
    record field; numbers finite and exact (floats become their shortest decimal). Returns a
    fresh copy that shares nothing with ``value``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidAgentError("attributes", f"must be a JSON object, not {_kind(value)}")
    for key in value:
        if key in RESERVED_ATTRIBUTES:
            raise InvalidAgentError(f"attributes.{key}", "is a field of the record itself, not an attribute")
    copied = _copy_json(value, "attributes", 0)
    size = len(dumps_exact(copied).encode("utf-8"))
    if size > MAX_ATTRIBUTES_BYTES:
        raise InvalidAgentError("attributes", f"{size} bytes as JSON, more than the {MAX_ATTRIBUTES_BYTES} allowed")
    assert isinstance(copied, dict)
    return copied


def _copy_json(value: Any, where: str, depth: int) -> Any:
    if depth > MAX_ATTRIBUTES_DEPTH:
        raise InvalidAgentError(where, f"nested deeper than {MAX_ATTRIBUTES_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidAgentError(where, "holds a lone surrogate (not encodable as UTF-8)") from None
        if len(value) > MAX_ATTRIBUTES_BYTES:
            raise InvalidAgentError(where, f"a string longer than {MAX_ATTRIBUTES_BYTES} characters")
        return value
    if isinstance(value, int):
        if abs(value) >= 10**MAX_NUMBER_DIGITS:
            raise InvalidAgentError(where, f"an integer of more than {MAX_NUMBER_DIGITS} digits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidAgentError(where, f"{value!r} is not a JSON number")
        return Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidAgentError(where, f"{value} is not a JSON number")
        _, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        if len(digits) > MAX_NUMBER_DIGITS or abs(exponent) > MAX_NUMBER_EXPONENT:
            raise InvalidAgentError(where, f"a number with more than {MAX_NUMBER_DIGITS} digits or an exponent past {MAX_NUMBER_EXPONENT}")
        return value
    if isinstance(value, list | tuple):
        if len(value) > MAX_ATTRIBUTES_BYTES:
            raise InvalidAgentError(where, "an array too long")
        return [_copy_json(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if len(value) > MAX_ATTRIBUTES_BYTES:
            raise InvalidAgentError(where, "an object with too many keys")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidAgentError(where, f"object keys must be strings, not {_kind(key)}")
            name = f"{where}.{key}" if len(key) <= 40 else f"{where}.{key[:40]}..."
            try:
                _visible_text(name, key, MAX_KEY_CHARS)
            except InvalidAgentError as exc:
                raise InvalidAgentError(name, f"bad key: {exc.message.removeprefix(name + ': ')}") from None
            out[key] = _copy_json(item, name, depth + 1)
        return out
    raise InvalidAgentError(where, f"{_kind(value)} is not a JSON value")


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch: ``null`` removes a key, an object merges, anything else
    replaces."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            current = out.get(key)
            out[key] = merge_patch(current if isinstance(current, Mapping) else {}, value)
        else:
            out[key] = value
    return out


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """One registered agent: what ACGS may rely on about it. Build one with :func:`new_agent`
    (which checks every field); the stores only hand out checked records.

    ``attributes`` is shared by every reader of a cached record: read it, never change it
    (``facts()`` gives a private copy)."""

    agent_id: str
    #: Exact, in [0, 1], without trailing zeros.
    trust_level: Decimal
    tier: str | None = None
    owner: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    #: Unix seconds.
    created_at: float = 0.0
    updated_at: float = 0.0
    #: A disabled agent is kept (its history stays readable) but gets no trust.
    disabled: bool = False

    @property
    def trust_text(self) -> str:
        return trust_text(self.trust_level)

    def facts(self) -> dict[str, Any]:
        """What a policy may read about the agent, as a fresh document (numbers as Decimal)."""
        out = self.to_json_value(copy=True)
        for stamp in ("created_at", "updated_at"):
            out.pop(stamp)
        return out

    def facts_json(self) -> str:
        """``facts()`` as JSON text with exact numbers, ready to splice into a policy input."""
        out = self.to_json_value()
        for stamp in ("created_at", "updated_at"):
            out.pop(stamp)
        return dumps_exact(out, sort_keys=False)

    def to_json_value(self, *, copy: bool = False) -> dict[str, Any]:
        """Every field, JSON-ready for :func:`dumps_exact` (numbers as Decimal, times ISO 8601);
        ``copy``: with a private copy of ``attributes``."""
        return {
            "agent_id": self.agent_id,
            "trust_level": self.trust_level,
            "tier": self.tier,
            "owner": self.owner,
            "attributes": loads_exact(dumps_exact(self.attributes)) if copy else self.attributes,
            "disabled": self.disabled,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }

    def to_json(self) -> str:
        """The record as JSON text with exact numbers (what the CLI and the REST routes send)."""
        return dumps_exact(self.to_json_value(), sort_keys=False)

    @property
    def attributes_json(self) -> str:
        return dumps_exact(self.attributes)


def _iso(ts: float) -> str:
    whole = int(ts)
    micros = int(round((ts - whole) * 1_000_000))
    if micros >= 1_000_000:
        whole, micros = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


def new_agent(
    agent_id: Any,
    trust_level: Any,
    *,
    tier: Any = None,
    owner: Any = None,
    attributes: Any = None,
    disabled: Any = False,
    now: float | None = None,
) -> AgentRecord:
    """A checked record, stamped ``now`` (default: the current time)."""
    at = time.time() if now is None else now
    return AgentRecord(
        agent_id=check_agent_id(agent_id),
        trust_level=check_trust_level(trust_level),
        tier=check_tier(tier),
        owner=check_owner(owner),
        attributes=check_attributes(attributes),
        created_at=at,
        updated_at=at,
        disabled=check_disabled(disabled),
    )


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


#: A field an update leaves as it is.
UNSET: Final = _Unset()

#: Fields an update may change, each with its check.
_UPDATABLE = {
    "trust_level": check_trust_level,
    "tier": check_tier,
    "owner": check_owner,
    "attributes": check_attributes,
    "disabled": check_disabled,
}


@dataclass(frozen=True, slots=True)
class AgentUpdate:
    """A partial change: fields left ``UNSET`` stay as they are; ``tier=None`` or
    ``owner=None`` clears them; ``attributes`` replaces the whole object, while
    ``attributes_patch`` merges into it (RFC 7396: a ``null`` value removes its key).
    Build one with :meth:`of`, which checks what it is given."""

    trust_level: Decimal | _Unset = UNSET
    tier: str | None | _Unset = UNSET
    owner: str | None | _Unset = UNSET
    attributes: dict[str, Any] | _Unset = UNSET
    attributes_patch: dict[str, Any] | _Unset = UNSET
    disabled: bool | _Unset = UNSET

    @classmethod
    def of(cls, **changes: Any) -> AgentUpdate:
        """Checks each given field (``UNSET`` values are skipped); an unknown field is an
        :class:`InvalidAgentError` naming it."""
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if value is UNSET:
                continue
            if name == "attributes_patch":
                if not isinstance(value, Mapping):
                    raise InvalidAgentError("attributes", f"a patch must be a JSON object, not {_kind(value)}")
                for key in value:
                    if key in RESERVED_ATTRIBUTES:
                        raise InvalidAgentError(f"attributes.{key}", "is a field of the record itself, not an attribute")
                # Checked whole once applied; here only that it is JSON at all.
                values[name] = _copy_json(value, "attributes", 0)
                continue
            check = _UPDATABLE.get(name)
            if check is None:
                raise InvalidAgentError(name, f"is not a field an update may change ({', '.join(sorted(_UPDATABLE))})")
            values[name] = check(value)
        if "attributes" in values and "attributes_patch" in values:
            raise InvalidAgentError("attributes", "give either a whole object or a patch, not both")
        return cls(**values)

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is UNSET for name in (*_UPDATABLE, "attributes_patch"))

    def apply(self, record: AgentRecord, now: float | None = None) -> AgentRecord:
        """``record`` changed, checked whole and stamped ``now``."""
        attributes = record.attributes
        if not isinstance(self.attributes, _Unset):
            attributes = self.attributes
        elif not isinstance(self.attributes_patch, _Unset):
            attributes = check_attributes(merge_patch(record.attributes, self.attributes_patch))
        return AgentRecord(
            agent_id=record.agent_id,
            trust_level=record.trust_level if isinstance(self.trust_level, _Unset) else self.trust_level,
            tier=record.tier if isinstance(self.tier, _Unset) else self.tier,
            owner=record.owner if isinstance(self.owner, _Unset) else self.owner,
            attributes=attributes,
            created_at=record.created_at,
            updated_at=time.time() if now is None else now,
            disabled=record.disabled if isinstance(self.disabled, _Unset) else self.disabled,
        )


def record_from_row(
    agent_id: str,
    trust_level: str,
    tier: str | None,
    owner: str | None,
    attributes: str,
    created_at: float,
    updated_at: float,
    disabled: Any,
) -> AgentRecord:
    """A stored row back to a record, checked like new input: a row edited in the database
    into something malformed is refused (:class:`InvalidAgentError`), never served."""
    try:
        attrs = loads_exact(attributes)
    except (ValueError, TypeError) as exc:
        raise InvalidAgentError("attributes", f"stored value is not JSON: {exc}") from None
    return AgentRecord(
        agent_id=check_agent_id(agent_id),
        trust_level=check_trust_level(trust_level),
        tier=check_tier(tier),
        owner=check_owner(owner),
        attributes=check_attributes(attrs),
        created_at=float(created_at),
        updated_at=float(updated_at),
        disabled=bool(disabled),
    )

