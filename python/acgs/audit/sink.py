"""Audit sinks for the other services: where their outbox relays hand events.

``HttpAuditSink`` posts to the audit service's ``POST /audit/event``; ``LocalAuditSink``
appends to an ``AuditLog`` in the same process. Both return only once the event is durable and
raise otherwise, so an outbox relay keeps the event and retries. ``record`` is a coroutine, as
the evolution service's ``AuditSink`` protocol has it; ``BlockingHttpAuditSink`` serves callers
with a synchronous ``record`` (the sandbox controller's protocol). Events that carry
``metadata.idempotency_key`` are stored once however often they are delivered.

When the audit service requires credentials (``ACGS_AUTH``), the HTTP sinks send the API key
or JWT in ``ACGS_AUDIT_API_KEY`` (or the ``api_key`` argument) as a bearer token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from acgs.audit.events import Appended
from acgs.audit.log import AuditLog
from acgs.errors import AuditError


class AuditDeliveryError(AuditError):
    """The audit service did not acknowledge an event."""

    code = "audit_delivery_failed"


def audit_auth_headers(api_key: str | None = None) -> dict[str, str]:
    """The bearer header for ``api_key``, else ``ACGS_AUDIT_API_KEY``; none when neither is set."""
    token = api_key if api_key is not None else os.environ.get("ACGS_AUDIT_API_KEY", "")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise AuditDeliveryError(f"audit service answered {response.status_code}: {response.text[:500]}")
    body: dict[str, Any] = response.json()
    if body.get("ingested") is not True:
        raise AuditDeliveryError(f"audit service did not ingest the event: {body}")
    return body


class HttpAuditSink:
    """Records events through the audit service at ``url`` (e.g. ``http://127.0.0.1:8003``)."""

    def __init__(
        self, url: str, *, timeout: float = 10.0, client: httpx.AsyncClient | None = None, api_key: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=timeout, headers=audit_auth_headers(api_key))
        self._own_client = client is None

    async def record(self, event: Mapping[str, Any]) -> None:
        await self.record_receipt(event)

    async def record_receipt(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Like ``record``, returning the service's receipt (event id, hash, index)."""
        try:
            response = await self._client.post(f"{self.url}/audit/event", json=dict(event))
        except httpx.HTTPError as exc:
            raise AuditDeliveryError(f"audit service unreachable: {type(exc).__name__}: {exc}") from exc
        return _check(response)

    async def record_many(self, events: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        try:
            response = await self._client.post(f"{self.url}/audit/events", json=[dict(e) for e in events])
        except httpx.HTTPError as exc:
            raise AuditDeliveryError(f"audit service unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise AuditDeliveryError(f"audit service answered {response.status_code}: {response.text[:500]}")
        receipts: list[dict[str, Any]] = response.json()["receipts"]
        return receipts

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


class BlockingHttpAuditSink:
    """``HttpAuditSink`` with a synchronous ``record``."""

    def __init__(self, url: str, *, timeout: float = 10.0, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(timeout=timeout, headers=audit_auth_headers(api_key))

    def record(self, event: Mapping[str, Any]) -> None:
        try:
            response = self._client.post(f"{self.url}/audit/event", json=dict(event))
        except httpx.HTTPError as exc:
            raise AuditDeliveryError(f"audit service unreachable: {type(exc).__name__}: {exc}") from exc
        _check(response)

    def close(self) -> None:
        self._client.close()


class LocalAuditSink:
    """Records events into an ``AuditLog`` of this process (opened by its owner)."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    async def record(self, event: Mapping[str, Any]) -> None:
        await self.log.append([event])

    async def record_many(self, events: list[Mapping[str, Any]]) -> list[Appended]:
        return await self.log.append(events)


if TYPE_CHECKING:
    # mypy holds the sinks to the protocols of the services that use them.
    from acgs.services.evolution.audit import AuditSink as EvolutionAuditSink
    from acgs.services.sandbox.audit import AuditSink as SandboxAuditSink

    def _conforms(url: str, audit_log: AuditLog) -> tuple[EvolutionAuditSink, EvolutionAuditSink, SandboxAuditSink]:
        return HttpAuditSink(url), LocalAuditSink(audit_log), BlockingHttpAuditSink(url)
