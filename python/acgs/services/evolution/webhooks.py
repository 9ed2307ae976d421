"""Webhook notifications of evolution state changes: signed, in order, retried until delivered.

Every state change already writes an event to the outbox (``evolution_audit_outbox``) in the
transaction that makes the change. One ``WebhookRelay`` per configured URL walks that outbox
from its own cursor (``evolution_webhook_cursors``, in the same database) and POSTs each event;
the cursor moves only past events the receiver acknowledged with a 2xx. A failure (refused
connection, timeout, any other status) is retried with exponential backoff, and no later event
overtakes it, so a receiver sees every transition once its endpoint works again, in order. After
a crash between a delivery and its bookkeeping an event can arrive twice: ``X-ACGS-Delivery``
names it so receivers can drop repeats.

Each request carries ``X-ACGS-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
HMAC-SHA256 with the shared secret over ``"<t>." + body``. A receiver recomputes it (see
``verify_signature``) and rejects stale timestamps, which stops replays of captured requests.

The secret setting may be a reference into a secrets store (``acgs.security.secrets``): it is
read again before a delivery once ``ACGS_SECRETS_TTL`` has passed, and at once after a receiver
answers 401 or 403, so a rotated secret signs the next deliveries without a restart. A secret
that cannot be read fails the delivery (retried like any other failure); nothing is sent
unsigned or signed with an empty key.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from acgs.security.secrets import SecretInvalid, SecretResolver, default_resolver
from acgs.services.evolution.records import OutboxEntry
from acgs.services.evolution.store import EvolutionStore

log = logging.getLogger("acgs.services.evolution")

SIGNATURE_HEADER = "X-ACGS-Signature"
DELIVERY_HEADER = "X-ACGS-Delivery"
EVENT_HEADER = "X-ACGS-Event"
#: Seconds a receiver should accept between the signed timestamp and its clock.
DEFAULT_TOLERANCE = 300.0


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``X-ACGS-Signature`` value for ``body`` sent at ``timestamp``."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str | bytes, header: str | None, body: bytes, *, tolerance: float = DEFAULT_TOLERANCE, now: float | None = None
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` at a time within ``tolerance`` seconds
    of ``now``. For receivers; compares in constant time."""
    if not header:
        return False
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", []))


def payload(entry: OutboxEntry) -> dict[str, Any]:
    """What a receiver gets for one outbox entry."""
    event = entry.event
    meta = event.get("metadata", {})
    return {
        "id": meta.get("idempotency_key") or f"evolution-outbox:{entry.id}",
        "type": event.get("action"),
        "sequence": entry.id,
        "created_at": entry.created_at,
        "request_id": meta.get("request_id"),
        "kind": meta.get("kind", "change"),
        "agent_id": event.get("agent_id"),
        "from_status": meta.get("from_status"),
        "to_status": meta.get("to_status"),
        "decision_id": event.get("decision_id"),
        "event": event,
    }


class WebhookRelay:
    """Delivers the outbox to one URL, in order, from the URL's stored cursor."""

    def __init__(
        self,
        store: EvolutionStore,
        url: str,
        secret: str,
        *,
        interval: float = 1.0,
        max_backoff: float = 300.0,
        timeout: float = 10.0,
        batch: int = 100,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        secrets: SecretResolver | None = None,
    ) -> None:
        self.store = store
        self.url = url
        #: The setting: the secret itself or a reference to it (never logged).
        self.secret = secret
        self._secrets = secrets
        # Fail closed at start: a service whose webhook secret cannot be read does not start.
        self.signing_key()
        self.interval = interval
        self.max_backoff = max_backoff
        self.batch = batch
        self.clock = clock
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._own_client = client is None
        self._wake = asyncio.Event()
        self.delivered = 0
        self.failures = 0
        self.last_error: str | None = None

    def signing_key(self) -> str:
        """The secret that signs the next delivery; ``SecretError`` when it cannot be had."""
        resolver = self._secrets or default_resolver()
        key = resolver.resolve(self.secret) if self.secret else ""
        if not key.strip():
            raise SecretInvalid("ACGS_EVOLUTION_WEBHOOK_SECRET", "the webhook secret is empty")
        return key

    def notify(self) -> None:
        """Something was written to the outbox: deliver now instead of at the next tick."""
        self._wake.set()

    async def deliver(self, entry: OutboxEntry) -> None:
        body = orjson.dumps(payload(entry))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "acgs-evolution-webhook",
            EVENT_HEADER: str(entry.event.get("action", "")),
            DELIVERY_HEADER: str(payload(entry)["id"]),
            SIGNATURE_HEADER: sign(await asyncio.to_thread(self.signing_key), body, int(self.clock())),
        }
        response = await self._client.post(self.url, content=body, headers=headers)
        if response.status_code in (401, 403):
            # The receiver may hold a rotated secret already: the retry reads the store again.
            (self._secrets or default_resolver()).forget(self.secret)
        if not 200 <= response.status_code < 300:
            raise WebhookRefused(f"{self.url} answered {response.status_code}")

    async def deliver_once(self) -> int:
        """Delivers everything past the cursor; returns how many. Raises on the first failure,
        leaving the cursor on the last success."""
        sent = 0
        while True:
            cursor = await self.store.webhook_cursor(self.url)
            entries = await self.store.outbox(pending_only=False, limit=self.batch, after_id=cursor)
            if not entries:
                return sent
            for entry in entries:
                await self.deliver(entry)
                await self.store.set_webhook_cursor(self.url, entry.id)
                sent += 1
                self.delivered += 1

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self.deliver_once()
                failures = 0
                self.last_error = None
                delay = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is retried, none skips an event
                failures += 1
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = min(self.max_backoff, self.interval * 2 ** min(failures, 16))
                log.warning("webhook %s: delivery failed (%s, attempt %d); retrying in %.1fs", self.url, self.last_error, failures, delay)
            self._wake.clear()
            if failures:
                # A new event does not cut a backoff short: a down receiver is not hammered.
                await asyncio.sleep(delay)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


class WebhookRefused(Exception):
    """The receiver answered with a status other than 2xx."""
