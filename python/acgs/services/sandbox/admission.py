"""The constitution's word on a run (``acgs/sandbox/decision``), failing closed: anything but a
well-formed allow is a deny with a reason."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from acgs import Engine
from acgs.trust import admit as admit_input
from acgs.services.sandbox.limits import Limits
from acgs.services.sandbox.schemas import ExactObject

ENTRYPOINT = "acgs/sandbox/decision"
log = logging.getLogger("acgs.services.sandbox")


@dataclass(frozen=True, slots=True)
class Admission:
    allow: bool
    reasons: list[str]
    #: The effective limits as the constitution states them (also shown when denied).
    limits: dict[str, Any] = field(default_factory=dict)
    allowed_runtimes: list[str] = field(default_factory=list)
    minimum_runtime: str | None = None
    trust_tier: str | None = None
    constitutional_hash: str | None = None

    def run_limits(self) -> Limits:
        lim = self.limits
        return Limits(
            cpu_seconds=float(lim["cpu_seconds"]),
            memory_mb=int(lim["memory_mb"]),
            disk_mb=int(lim["disk_mb"]),
            timeout_s=float(lim["timeout_s"]),
            pids=int(lim["pids"]),
            network=lim.get("network") is True,
        )


def _deny(reason: str) -> Admission:
    return Admission(False, [reason])


def policy_input(request: dict[str, Any]) -> bytes:
    """``request`` as the constitution's input: JSON, with every ``ExactObject`` member in the
    client's own text, so no number is rounded to a double on its way to the policy."""
    return orjson.dumps({k: orjson.Fragment(v.exact) if isinstance(v, ExactObject) else v for k, v in request.items()})


def admit(engine: Engine, request: dict[str, Any], trusted: bytes | None = None) -> Admission:
    """The constitution's word on ``request``, with ``trusted`` (the service's facts about the
    caller: acgs.trust) in place of anything the request claims under that key."""
    try:
        rows = orjson.loads(engine.evaluate_json(admit_input(policy_input(request), trusted), ENTRYPOINT))
        result = rows[0]["result"] if rows else None
    except Exception as exc:  # any engine fault is a deny
        log.exception("constitution check failed")
        return _deny(f"the constitution check failed: {exc}")
    if not isinstance(result, dict) or not isinstance(result.get("allow"), bool):
        return _deny("the constitution returned no decision for this run")
    reasons = result.get("reasons")
    reasons = [str(r) for r in reasons] if isinstance(reasons, list) else []
    limits = result.get("limits") if isinstance(result.get("limits"), dict) else {}
    runtimes = result.get("allowed_runtimes")
    admission = Admission(
        allow=result["allow"],
        reasons=reasons,
        limits=dict(limits) if isinstance(limits, dict) else {},
        allowed_runtimes=[str(r) for r in runtimes] if isinstance(runtimes, list) else [],
        minimum_runtime=result.get("minimum_runtime") if isinstance(result.get("minimum_runtime"), str) else None,
        trust_tier=result.get("trust_tier") if isinstance(result.get("trust_tier"), str) else None,
        constitutional_hash=result.get("constitutional_hash") if isinstance(result.get("constitutional_hash"), str) else None,
    )
    if admission.allow:
        try:
            lim = admission.run_limits()
        except (KeyError, TypeError, ValueError):
            return _deny("the constitution allowed the run without complete limits")
        if min(lim.cpu_seconds, lim.memory_mb, lim.disk_mb, lim.timeout_s, lim.pids) <= 0:
            return _deny("the constitution allowed the run with a non-positive limit")
        if not admission.allowed_runtimes:
            return _deny("the constitution allowed the run on no runtime")
    elif not admission.reasons:
        return Admission(False, ["denied by the constitution"], admission.limits)
    return admission
