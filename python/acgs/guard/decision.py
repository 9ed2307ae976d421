"""The constitution's word on one tool call (``acgs/tools/decision``), read so that anything but
a well-formed decision is a deny with a reason, and the exact JSON of a call's arguments."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import orjson

from acgs.errors import ToolInputError

ENTRYPOINT: Final = "acgs/tools/decision"
OUTCOMES: Final = frozenset({"allow", "deny", "require_approval"})
#: Deepest nesting of arguments converted (deeper, or a cycle, has no JSON form here).
MAX_DEPTH: Final = 64


@dataclass(slots=True)
class ToolDecision:
    """One decision on one tool call. ``fault`` is set when no decision could be had (the
    engine failed, the service was unreachable, the result was malformed): the outcome is then
    ``deny`` and the reasons say what went wrong. (Not frozen: a frozen dataclass costs
    microseconds per decision; treat it as read-only.)"""

    outcome: str
    decision_id: str
    tool: str
    reasons: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    known: bool = False
    risk: str | None = None
    sandbox: bool = False
    redact_arguments: bool = False
    approval: dict[str, Any] | None = None
    constitutional_hash: str | None = None
    fault: str | None = None
    #: The decision as the constitution returned it (None on a fault).
    raw: dict[str, Any] | None = None

    @property
    def allow(self) -> bool:
        return self.outcome == "allow"

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "decision_id": self.decision_id,
            "tool": self.tool,
            "reasons": list(self.reasons),
            "labels": list(self.labels),
            "known": self.known,
            "risk": self.risk,
            "conditions": {"sandbox": self.sandbox, "redact_arguments": self.redact_arguments},
            "approval": self.approval,
            "constitutional_hash": self.constitutional_hash,
            "fault": self.fault,
        }


def fault(decision_id: str, tool: str, reason: str) -> ToolDecision:
    """The deny that stands for a decision that could not be had. Arguments are redacted: what
    the catalogue says of them is unknown."""
    return ToolDecision("deny", decision_id, tool, [reason], redact_arguments=True, fault=reason)


def _strings(value: Any) -> list[str] | None:
    if type(value) is not list:
        return None
    for v in value:
        if type(v) is not str:
            return None
    return value


def read_decision(result: Any, decision_id: str, tool: str) -> ToolDecision:
    """``result`` (the entrypoint's value) as a decision; a deny with a reason when it is not
    one: a missing or unknown outcome, ``allow`` disagreeing with the outcome, reasons or labels
    that are not lists of strings, a require_approval without its approval, malformed
    conditions."""
    if not isinstance(result, dict):
        return fault(decision_id, tool, "the constitution returned no tool decision")
    outcome = result.get("outcome")
    if outcome not in OUTCOMES:
        return fault(decision_id, tool, f"the tool decision has no valid outcome: {str(outcome)[:100]!r}")
    if result.get("allow") is not (outcome == "allow"):
        return fault(decision_id, tool, "the tool decision's allow disagrees with its outcome")
    reasons = _strings(result.get("reasons", []))
    labels = _strings(result.get("labels", []))
    if reasons is None or labels is None:
        return fault(decision_id, tool, "the tool decision's reasons or labels are not lists of strings")
    conditions = result.get("conditions")
    if conditions is None:
        conditions = {}
    if type(conditions) is not dict:
        return fault(decision_id, tool, "the tool decision's conditions are malformed")
    sandbox = conditions.get("sandbox", False)
    redact = conditions.get("redact_arguments", False)
    if type(sandbox) is not bool or type(redact) is not bool:
        return fault(decision_id, tool, "the tool decision's conditions are malformed")
    approval = result.get("approval")
    if outcome == "require_approval" and not isinstance(approval, dict):
        return fault(decision_id, tool, "the tool decision requires approval but names no approval")
    canonical = result.get("tool")
    chash = result.get("constitutional_hash")
    risk = result.get("risk")
    if outcome == "deny" and not reasons:
        reasons = ["denied by the constitution"]
    return ToolDecision(
        outcome,
        decision_id,
        canonical if type(canonical) is str and canonical else tool,
        reasons,
        labels,
        result.get("known") is True,
        risk if type(risk) is str else None,
        sandbox,
        redact,
        approval if type(approval) is dict else None,
        chash if type(chash) is str else None,
        None,
        result,
    )


#: Decisions read, by the result set's bytes and the tool's name as called: a constitution gives
#: the same few answers over and over (an allow's reasons and labels do not name the arguments),
#: so most calls find theirs here and neither parse nor check it again. Emptied when full.
_READ: dict[tuple[bytes, str], ToolDecision] = {}
READ_MAX: Final = 512


def read_result_set(raw: bytes, decision_id: str, tool: str) -> ToolDecision:
    """The engine's result set (``[{"result": ...}]``, empty when undefined) as a decision.
    The same bytes always read the same (the reading depends on nothing else), so a decision
    read before is copied under the new id (its own lists of reasons and labels; ``raw`` and
    ``approval`` are shared, read-only)."""
    key = (raw, tool)
    seen = _READ.get(key)
    if seen is None:
        seen = _read_result_set(raw, "", tool)
        if len(_READ) >= READ_MAX:
            _READ.clear()
        _READ[key] = seen
    return ToolDecision(
        seen.outcome, decision_id, seen.tool, list(seen.reasons), list(seen.labels), seen.known, seen.risk, seen.sandbox,
        seen.redact_arguments, seen.approval, seen.constitutional_hash, seen.fault, seen.raw,
    )  # fmt: skip


def _read_result_set(raw: bytes, decision_id: str, tool: str) -> ToolDecision:
    try:
        rows = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return fault(decision_id, tool, "the engine returned unreadable JSON")
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
        return fault(decision_id, tool, "the constitution has no tool decision for this call (undefined)")
    return read_decision(rows[0].get("result"), decision_id, tool)


# -- arguments as exact JSON --------------------------------------------------------------------


class _NoJson(Exception):
    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")


def _exact(value: Any, where: str, depth: int) -> Any:
    """``value`` with every member checked to have one exact JSON form; Decimals become JSON
    numbers as written, tuples arrays."""
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        # Past 64 bits orjson has no exact form: written as the digits.
        return value if -(2**63) <= value < 2**64 else orjson.Fragment(str(value).encode())
    if t is float:
        if not math.isfinite(value):
            raise _NoJson(where, f"{value!r} is not a JSON number")
        return value
    if depth >= MAX_DEPTH:
        raise _NoJson(where, f"nested deeper than {MAX_DEPTH} levels (or a cycle)")
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _NoJson(where, f"key {k!r} is not a string")
            out[k] = _exact(v, f"{where}.{k}", depth + 1)
        return out
    if t is list or t is tuple:
        return [_exact(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, bool | int | str):  # subclasses (enums over int/str): their plain value
        base = bool if isinstance(value, bool) else int if isinstance(value, int) else str
        return _exact(base(value), where, depth)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _NoJson(where, f"{value!r} is not a JSON number")
        return orjson.Fragment(str(value).encode())
    raise _NoJson(where, f"a {t.__name__} has no JSON form")


def _plain(arguments: Mapping[str, Any]) -> bool:
    """Whether ``arguments`` is a dict of string keys to values orjson writes exactly as
    ``_exact`` would have them (strings, booleans, None, integers in 64 bits, finite floats):
    the common call, written without a converted copy."""
    if type(arguments) is not dict:
        return False
    for k, v in arguments.items():
        t = type(v)
        if type(k) is not str:
            return False
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if not -(2**63) <= v < 2**64:
                return False
        elif t is not float or not math.isfinite(v):
            return False
    return True


def arguments_json(arguments: Mapping[str, Any], tool: str) -> bytes:
    """The arguments' JSON bytes, every number exact (integers of any size, Decimals as
    written); ``ToolInputError`` naming the argument when one has no JSON form."""
    if _plain(arguments):
        return orjson.dumps(arguments)
    try:
        return orjson.dumps({k: _exact(v, k, 0) for k, v in arguments.items()})
    except _NoJson as exc:
        raise ToolInputError(f"tool {tool!r}: argument {exc} (the call was not made)", tool) from None
    except (orjson.JSONEncodeError, RecursionError) as exc:
        raise ToolInputError(f"tool {tool!r}: arguments have no JSON form: {exc}", tool) from None
