"""Request and response bodies of the audit service, for validation and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from acgs.audit.events import MAX_FIELD


class EventIn(BaseModel):
    """The seed's audit event. ``metadata`` must have an RFC 8785 canonical form (no NaN, no
    integers beyond 2^53 unless JCS prints them exactly); ``metadata.idempotency_key`` makes
    a re-delivered event acknowledged instead of stored twice."""

    model_config = ConfigDict(extra="forbid", strict=True)

    event_type: str = Field(min_length=1, max_length=MAX_FIELD)
    agent_id: str = Field(min_length=1, max_length=MAX_FIELD)
    action: str = Field(min_length=1, max_length=MAX_FIELD)
    result: str = Field(min_length=1, max_length=MAX_FIELD)
    metadata: dict[str, Any] = Field(default_factory=dict)
    decision_id: str | None = Field(default=None, max_length=MAX_FIELD)
    constitutional_hash: str | None = Field(default=None, max_length=MAX_FIELD)
    #: Set by the service from the caller's credential; whatever the caller sends is dropped.
    submitted_by: Any = Field(default=None, exclude=True, description="ignored: the service records who submitted the event")

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Receipt(BaseModel):
    event_id: str
    hash: str = Field(description="sha256:<hex> of the event's canonical JSON")
    chain_hash: str = Field(description="sha256:<hex> of the previous chain hash and this hash")
    timestamp: str
    ingested: bool
    index: int
    duplicate: bool = Field(description="an event with this idempotency key was already stored; this is it")


class Receipts(BaseModel):
    receipts: list[Receipt]


class StoredEventOut(BaseModel):
    index: int
    event: dict[str, Any]
    hash: str
    chain_hash: str


class EventPage(BaseModel):
    events: list[StoredEventOut]
    next_after: int | None = Field(description="pass as ?after= for the next page; null on the last page")


class InclusionProof(BaseModel):
    leaf_index: int
    tree_size: int
    leaf_hash: str
    hashes: list[str] = Field(description="RFC 9162 audit path, hex, from the leaf up")
    checkpoint: str = Field(description="the signed checkpoint note the proof is against")


class EventWithProof(StoredEventOut):
    proof: InclusionProof | None = Field(description="null while no checkpoint covers the event")


class CheckpointOut(BaseModel):
    origin: str
    size: int
    root: str = Field(description="hex Merkle root")
    checkpoint: str = Field(description="the C2SP signed note")
    verifier_key: str


class ConsistencyOut(BaseModel):
    from_size: int = Field(alias="from")
    to_size: int = Field(alias="to")
    root_from: str
    root_to: str
    hashes: list[str]

    model_config = ConfigDict(populate_by_name=True)


#: Largest index or size a request may name: the stores keep them as 64-bit signed integers.
MAX_INDEX = (1 << 63) - 1


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_index: int = Field(default=0, ge=0, le=MAX_INDEX, alias="from")
    to_index: int | None = Field(default=None, ge=0, le=MAX_INDEX, alias="to")


class ErrorOut(BaseModel):
    """Every error the service answers: 400 (malformed body or range), 403 (an event type
    reserved to ACGS's services), 404, 413 (body past the limit), 422 (an event or query the
    log refuses), 500."""

    code: str
    message: str
    errors: list[dict[str, Any]] = Field(default_factory=list)
