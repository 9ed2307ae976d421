"""The constitutional assessment of a change: the ``acgs.evolution`` policy evaluated by the
engine. The risk model is the constitution's; this module only carries the request to the
engine and refuses any answer it cannot trust.

Fail closed: when the engine is missing, faults, or answers something that is not a well-formed
evolution decision, the assessment is a rejection whose reason names the fault. Such a request
is stored as ``rejected`` (never pending, never approved): a human could not review it against a
constitution that did not answer, and the agent may submit it again once the engine is back.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from acgs import Engine
from acgs.trust import admit

log = logging.getLogger("acgs.services.evolution")

#: The least number of reviewers each route may ask for. A decision asking for fewer is not
#: trusted: the constitution may raise these, never lower them.
MIN_REVIEWERS = {"auto_approve": 0, "fast_track": 1, "human_review": 2, "rejected": 0}


@dataclass(frozen=True, slots=True)
class Assessment:
    """The policy's decision (``approval_type``, ``reviewers_required``, scores, ``reasons``,
    ``conditions``, ``violations``, ``factors``, ...) plus where it came from."""

    decision: dict[str, Any]
    bundle_digest: str | None
    engine_fault: str | None = None

    def as_json(self) -> dict[str, Any]:
        out = dict(self.decision)
        out["bundle_digest"] = self.bundle_digest
        out["engine_fault"] = self.engine_fault
        return out


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_fraction(x: Any) -> bool:
    return _is_number(x) and 0 <= x <= 1


def _is_str_list(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(s, str) for s in x)


def check_decision(result: Any, constitutional_hash: str | None) -> str | None:
    """What is wrong with an evolution decision, or None when it is well formed."""
    if not isinstance(result, dict):
        return f"the decision is {type(result).__name__}, not an object"
    approval_type = result.get("approval_type")
    if approval_type not in MIN_REVIEWERS:
        return f"unknown approval_type {approval_type!r}"
    reviewers = result.get("reviewers_required")
    if not isinstance(reviewers, int) or isinstance(reviewers, bool):
        return "reviewers_required is not an integer"
    if approval_type == "auto_approve" and reviewers != 0:
        return "auto_approve with reviewers required"
    if reviewers < MIN_REVIEWERS[approval_type]:
        return f"{approval_type} with {reviewers} reviewers (at least {MIN_REVIEWERS[approval_type]})"
    for key in ("risk_score", "evolution_score"):
        if not _is_fraction(result.get(key)):
            return f"{key} is not a number in [0, 1]"
    for key in ("reasons", "conditions", "violations"):
        if not _is_str_list(result.get(key)):
            return f"{key} is not a list of strings"
    if approval_type != "rejected" and result["violations"]:
        return f"{approval_type} despite violations"
    factors = result.get("factors")
    if not isinstance(factors, list) or not all(
        isinstance(f, dict) and isinstance(f.get("name"), str) and _is_number(f.get("contribution")) for f in factors
    ):
        return "factors is not a list of {name, contribution}"
    if constitutional_hash is not None and result.get("constitutional_hash") != constitutional_hash:
        return "the decision names another constitutional hash"
    return None


def fault_decision(reason: str, constitutional_hash: str | None) -> dict[str, Any]:
    message = f"policy engine fault: {reason}"
    return {
        "approval_type": "rejected",
        "reviewers_required": 0,
        "risk_score": 1.0,
        "risk_level": "critical",
        "evolution_score": 0.0,
        "reasons": [message],
        "conditions": [],
        "violations": [message],
        "factors": [],
        "score_components": {},
        "constitutional_hash": constitutional_hash,
    }


class Assessor:
    """Holds the engine (or why there is none) and asks it about each request."""

    def __init__(self, engine: Engine | None, entrypoint: str, *, load_error: str | None = None) -> None:
        self.engine = engine
        self.entrypoint = entrypoint
        self.load_error = load_error
        self.constitutional_hash: str | None = engine.constitutional_hash if engine is not None else None
        self.bundle_digest: str | None = engine.bundle_digest if engine is not None else None
        self.known_types: frozenset[str] | None = self._known_types()

    @classmethod
    def load(cls, bundle: str, entrypoint: str) -> Assessor:
        """Loads the bundle; a bundle that does not load leaves an assessor that rejects every
        request with the load error as its reason."""
        try:
            return cls(Engine.load(bundle), entrypoint)
        except Exception as exc:
            log.error("evolution: cannot load the policy bundle %s: %s", bundle, exc)
            return cls(None, entrypoint, load_error=f"cannot load the policy bundle: {exc}")

    def _known_types(self) -> frozenset[str] | None:
        """The change types the constitution's risk model prices, or None when the bundle
        carries no such model (its requests then fail closed at evaluation)."""
        if self.engine is None:
            return None
        try:
            base_risk = self.engine.data["acgs"]["constitution"]["evolution"]["base_risk"]
        except (KeyError, TypeError):
            return None
        return frozenset(base_risk) if isinstance(base_risk, dict) and base_risk else None

    @property
    def healthy(self) -> bool:
        return self.engine is not None and self.entrypoint in self.engine.entrypoints

    def problem(self) -> str | None:
        if self.engine is None:
            return self.load_error or "no policy engine"
        if self.entrypoint not in self.engine.entrypoints:
            return f"the bundle has no entrypoint {self.entrypoint}"
        return None

    async def assess(self, policy_input: dict[str, Any], trusted: bytes | None = None) -> Assessment:
        """Never raises: every fault becomes a rejection naming it. ``trusted`` is the caller's
        facts (``acgs.trust``: principal, registry record, the count of change requests past
        the constitution's per-minute limit); it replaces whatever the input holds there."""
        if self.engine is None:
            return self._fault(self.load_error or "no policy engine")
        engine = self.engine
        try:
            raw = admit(orjson.dumps(policy_input), trusted)
            rows = orjson.loads(await asyncio.to_thread(engine.evaluate_json, raw, self.entrypoint))
            result: Any = rows[0]["result"] if rows else None
        except Exception as exc:
            code = getattr(exc, "code", type(exc).__name__)
            return self._fault(f"{code}: {exc}")
        problem = check_decision(result, self.constitutional_hash)
        if problem is not None:
            return self._fault(f"malformed decision from {self.entrypoint}: {problem}")
        return Assessment(decision=result, bundle_digest=self.bundle_digest)

    def _fault(self, reason: str) -> Assessment:
        log.error("evolution: %s; the request is rejected", reason)
        return Assessment(
            decision=fault_decision(reason, self.constitutional_hash),
            bundle_digest=self.bundle_digest,
            engine_fault=reason,
        )
