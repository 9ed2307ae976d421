"""What a request handler of the policy service needs, as small ``Annotated`` dependencies.

Handlers on the hot path read ``request.app.state.policy`` directly (one attribute lookup);
the others take :data:`ServiceDep`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends
from starlette.requests import Request

import acgs
from acgs.services.policy.metrics import PolicyMetrics
from acgs.services.policy.pipeline import DecisionPipeline
from acgs.services.policy.settings import PolicySettings

if TYPE_CHECKING:
    from acgs.audit.decision_log import DecisionLog
    from acgs.trust import TrustedFacts
    from acgs.trust.sessions import SessionLedger


@dataclass(slots=True)
class PolicyService:
    """One running policy service: its settings, the decision pipeline and its metrics."""

    settings: PolicySettings
    pipeline: DecisionPipeline
    metrics: PolicyMetrics
    version: str = field(default=acgs.__version__)
    #: Writes one audit event per decision when configured (``decision_log`` setting).
    decision_log: DecisionLog | None = None
    #: The ``trusted`` document of every evaluation (acgs.trust); None: requests are admitted
    #: without facts (their own ``trusted`` is still dropped).
    facts: TrustedFacts | None = None
    #: Each session's tool decisions (acgs.trust.sessions): the history the tool decision
    #: reads, and where it is recorded; None: the tool decision reads the request's history.
    sessions: SessionLedger | None = None

    def provenance(self) -> dict[str, Any]:
        """OPA's ``provenance`` object (``?provenance=true``)."""
        return {
            "version": self.version,
            "build_commit": "",
            "build_timestamp": "",
            "build_hostname": "",
            "bundles": {"acgs": {"revision": self.pipeline.revision}},
        }


def service_of(request: Request) -> PolicyService:
    service: PolicyService = request.app.state.policy
    return service


def pipeline_of(request: Request) -> DecisionPipeline:
    return service_of(request).pipeline


ServiceDep = Annotated[PolicyService, Depends(service_of)]
PipelineDep = Annotated[DecisionPipeline, Depends(pipeline_of)]
