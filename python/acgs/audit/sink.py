"""Audit sinks for the other services: where their outbox relays hand events.

``HttpAuditSink`` posts to the audit service's ``POST /audit/event``; ``LocalAuditSink``
appends to an ``AuditLog`` in the same process. Both return only once the event is durable and
raise otherwise, so the outbox relay (``acgs.audit.outbox``) keeps the event and retries. ``record`` is a coroutine, as
the evolution service's ``AuditSink`` protocol has it; ``BlockingHttpAuditSink`` serves callers
with a synchronous ``record`` (the sandbox controller's protocol). Events that carry
``metadata.idempotency_key`` are stored once however often they are delivered.

When the audit service requires credentials (``ACGS_AUTH``), the HTTP sinks send the API key
or JWT in ``ACGS_AUDIT_API_KEY`` (or the ``api_key`` argument) as a bearer token.

A refusal of the event itself (``400``, ``413``, ``422``; ``InvalidAuditEvent`` in process)
raises ``DeliveryRejected``, which a producer dead-letters instead of retrying (see
``acgs.audit.delivery``); any other failure raises ``AuditDeliveryError`` and is retried.
``record_many`` sends a batch in bodies of at most ``max_body`` bytes (the audit service's
default body limit), each all or none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from acgs.audit.delivery import REJECTED_STATUSES, AuditDeliveryError, DeliveryRejected, encode
from acgs.audit.events import Appended
from acgs.audit.log import AuditLog
from acgs.errors import InvalidAuditEvent

#: Largest request body a sink sends (the audit service's default limit is 1 MiB).
MAX_BODY = 1024 * 1024 - 1024
_JSON = {"Content-Type": "application/json"}


def audit_auth_headers(api_key: str | None = None) -> dict[str, str]:
    """The bearer header for ``api_key``, else ``ACGS_AUDIT_API_KEY``; none when neither is set."""
    token = api_key if api_key is not None else os.environ.get("ACGS_AUDIT_API_KEY", "")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _failure(response: httpx.Response) -> AuditDeliveryError:
    message = f"audit service answered {response.status_code}: {response.text[:500]}"
    if response.status_code in REJECTED_STATUSES:
        return DeliveryRejected(message, response.status_code)
    return AuditDeliveryError(message)


def bodies(events: list[Mapping[str, Any]], max_body: int = MAX_BODY) -> list[bytes]:
    """JSON array bodies of at most ``max_body`` bytes holding ``events`` in order. An event
    too large to travel alone raises ``DeliveryRejected`` (the service would refuse it)."""
    out: list[bytes] = []
    chunk: list[bytes] = []
    size = 2
    for event in events:
        data = encode(event)
        if len(data) + 2 > max_body:
            raise DeliveryRejected(f"the event is {len(data)} bytes as JSON; the audit service takes at most {max_body}", 413)
        if chunk and size + len(data) + 1 > max_body:
            out.append(b"[" + b",".join(chunk) + b"]")
            chunk, size = [], 2
        chunk.append(data)
        size += len(data) + 1
    if chunk:
        out.append(b"[" + b",".join(chunk) + b"]")
    return out


def _unreachable(exc: httpx.HTTPError, delivered: int = 0) -> AuditDeliveryError:
    failure = AuditDeliveryError(f"audit service unreachable: {type(exc).__name__}: {exc}")
    failure.delivered = delivered
    return failure


def _collect(response: httpx.Response, receipts: list[dict[str, Any]]) -> None:
    """Adds the receipts of one batch body to ``receipts``; a failure carries how many events
    of the batch came back acknowledged before it."""
    if response.status_code != 200:
        failure = _failure(response)
        failure.delivered = len(receipts)
        raise failure
    receipts.extend(response.json()["receipts"])


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise _failure(response)
    body: dict[str, Any] = response.json()
    if body.get("ingested") is not True:
        raise AuditDeliveryError(f"audit service did not ingest the event: {body}")
    return body


class HttpAuditSink:
    """Records events through the audit service at ``url`` (e.g. ``http://127.0.0.1:8003``)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
        api_key: str | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        self.url = url.rstrip("/")
        self.max_body = max_body
        self._client = client or httpx.AsyncClient(timeout=timeout, headers=audit_auth_headers(api_key))
        self._own_client = client is None

    async def record(self, event: Mapping[str, Any]) -> None:
        await self.record_receipt(event)

    async def record_receipt(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Like ``record``, returning the service's receipt (event id, hash, index)."""
        try:
            response = await self._client.post(f"{self.url}/audit/event", content=encode(event), headers=_JSON)
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from exc
        return _check(response)

    async def record_many(self, events: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        receipts: list[dict[str, Any]] = []
        for body in bodies(events, self.max_body):
            try:
                response = await self._client.post(f"{self.url}/audit/events", content=body, headers=_JSON)
            except httpx.HTTPError as exc:
                raise _unreachable(exc, len(receipts)) from exc
            _collect(response, receipts)
        return receipts

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


class BlockingHttpAuditSink:
    """``HttpAuditSink`` with a synchronous ``record``."""

    def __init__(self, url: str, *, timeout: float = 10.0, api_key: str | None = None, max_body: int = MAX_BODY) -> None:
        self.url = url.rstrip("/")
        self.max_body = max_body
        self._api_key = api_key
        self._client = httpx.Client(timeout=timeout)

    def _headers(self) -> dict[str, str]:
        # Read per request: ``acgs serve`` mints its delivery key after the sinks are built.
        return {**_JSON, **audit_auth_headers(self._api_key)}

    def record(self, event: Mapping[str, Any]) -> None:
        try:
            response = self._client.post(f"{self.url}/audit/event", content=encode(event), headers=self._headers())
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from exc
        _check(response)

    def record_many(self, events: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        receipts: list[dict[str, Any]] = []
        for body in bodies(events, self.max_body):
            try:
                response = self._client.post(f"{self.url}/audit/events", content=body, headers=self._headers())
            except httpx.HTTPError as exc:
                raise _unreachable(exc, len(receipts)) from exc
            _collect(response, receipts)
        return receipts

    def close(self) -> None:
        self._client.close()


#: Who submitted an event appended in process (no request, no principal).
LOCAL_SUBMITTER = {"subject": "acgs", "via": "process", "roles": ["service"]}


class LocalAuditSink:
    """Records events into an ``AuditLog`` of this process (opened by its owner)."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    async def record(self, event: Mapping[str, Any]) -> None:
        await self.record_many([event])

    async def record_many(self, events: list[Mapping[str, Any]]) -> list[Appended]:
        try:
            return await self.log.append(events, submitter=LOCAL_SUBMITTER)
        except InvalidAuditEvent as exc:
            raise DeliveryRejected(exc.message) from None


if TYPE_CHECKING:
    # mypy holds the sinks to the protocols of the services that use them.
    from acgs.services.evolution.audit import AuditSink as EvolutionAuditSink
    from acgs.services.sandbox.audit import AuditSink as SandboxAuditSink

    def _conforms(url: str, audit_log: AuditLog) -> tuple[EvolutionAuditSink, EvolutionAuditSink, SandboxAuditSink]:
        return HttpAuditSink(url), LocalAuditSink(audit_log), BlockingHttpAuditSink(url)
