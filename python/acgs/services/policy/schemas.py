"""Request and response shapes of the policy service, for the OpenAPI document.

The handlers do not parse through these models (they read bodies with orjson and check types by
hand, which is several times cheaper); the models say what goes over the wire."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="ACGS's specific code, e.g. constitutional_hash_mismatch")
    message: str


class ErrorBody(BaseModel):
    """OPA's error body."""

    code: str = Field(description="OPA's code: invalid_parameter, internal_error, resource_not_found, ...")
    message: str
    errors: list[ErrorDetail] | None = None


class Warning(BaseModel):
    code: str
    message: str


class DataRequest(BaseModel):
    """OPA's Data API request. ``input`` is the document the policy sees as ``input``."""

    input: Any = None


class DataResponse(BaseModel):
    """OPA's Data API response. No ``result`` key means the document is undefined (not false).
    ``warning`` is set when the input key was missing, or when an engine fault turned a
    decision into a deny (its code names the fault)."""

    result: Any = None
    decision_id: str
    warning: Warning | None = None
    metrics: dict[str, int] | None = None
    provenance: dict[str, Any] | None = None


class DecisionRequest(BaseModel):
    """The seed's bare decision request, sent without an ``input`` wrapper."""

    model_config = ConfigDict(extra="allow")

    type: str | None = Field(None, examples=["constitutional_evaluation"])
    constitutional_hash: str | None = Field(
        None, description="If present, must equal the loaded constitution's; otherwise HTTP 400"
    )
    action: str | None = Field(None, examples=["data.read_public"])
    context: dict[str, Any] | None = None


class DecisionResponse(BaseModel):
    """The seed's flat decision: the policy's decision object plus what the service adds."""

    model_config = ConfigDict(extra="allow")

    allow: bool
    compliance_score: float | None = None
    constitutional_hash: str | None
    reasons: list[str] = []
    conditions: list[Any] | None = None
    evaluation_details: dict[str, Any] | None = None
    error: ErrorDetail | None = Field(None, description="Set on a fail-closed deny: the fault")
    decision_id: str
    bundle_digest: str
    cache_hit: bool
    fast_path: bool = Field(description="Answered by the partial evaluator's fast path")
    evaluation_time_ms: float


class BatchRequest(BaseModel):
    """Many inputs for one path. ``inputs`` as an object (OPA Enterprise's shape, keyed by the
    caller's ids) or as an array (answered in order). ``common_input`` is deep-merged under
    each input (the input's own keys win)."""

    inputs: dict[str, Any] | list[Any]
    common_input: dict[str, Any] | None = None


class BatchResponse(BaseModel):
    """``responses`` (object inputs) or ``results`` (array inputs); each entry is a
    DataResponse or an ErrorBody with ``http_status_code``. HTTP 207 when any entry failed."""

    batch_decision_id: str
    responses: dict[str, Any] | None = None
    results: list[Any] | None = None


class Health(BaseModel):
    status: str = Field(description="ok, or unavailable (HTTP 503) when no bundle is loaded")
    bundle_loaded: bool
    bundle_digest: str | None
    revision: str | None
    constitutional_hash: str | None
    entrypoints: list[str]
    evaluator: str | None = Field(
        default=None,
        description="What evaluates acgs/main/decision on a cache miss: native (the Rust evaluator of the "
        "shipped constitution) or wasm",
    )
    l2: str = Field(description="disabled, up, or down (decisions go on with L1 only)")
    error: str | None = None
