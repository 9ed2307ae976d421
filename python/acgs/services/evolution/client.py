"""A client for agents: submit a change, wait for its decision, read its conditions, deploy or
roll it back. It talks HTTP to a running service, or runs the service inside the process
(``EvolutionClient.embedded``) through the same routes, so both paths validate alike.

    async with EvolutionClient("http://127.0.0.1:8002", identity="agent-7") as evolution:
        request = await evolution.submit({...})
        decided = await evolution.wait_for_decision(request["request_id"], timeout=600)
        if decided["status"] == "approved":
            apply(decided["conditions"])
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from acgs.errors import AcgsError

#: Statuses in which a request is still waiting for someone.
UNDECIDED = frozenset({"pending"})


class EvolutionRequestError(AcgsError):
    """The service refused a call; ``status`` is the HTTP status, ``code`` the service's code
    (``invalid_request``, ``self_review``, ``invalid_transition``, ...)."""

    code = "evolution_request_error"

    def __init__(self, status: int, code: str, message: str, errors: list[Any] | None = None) -> None:
        super().__init__(message, code)
        self.status = status
        self.errors = errors or []


class DecisionTimeout(AcgsError, TimeoutError):
    """No decision before the caller's deadline; ``request`` is the request as last seen."""

    code = "decision_timeout"

    def __init__(self, message: str, request: dict[str, Any]) -> None:
        super().__init__(message)
        self.request = request


class EvolutionClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8002",
        *,
        identity: str | None = None,
        roles: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {}
        if identity:
            headers["X-ACGS-Identity"] = identity
        if roles:
            headers["X-ACGS-Role"] = roles
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    @classmethod
    @asynccontextmanager
    async def embedded(cls, settings: Any = None, **client_args: Any) -> AsyncIterator[EvolutionClient]:
        """The service in this process (``EvolutionSettings``; SQLite under ``ACGS_DATA_DIR`` by
        default), with a client bound to it."""
        from acgs.services.evolution.app import create_app

        app = create_app(settings)
        async with app.router.lifespan_context(app):
            client = cls("http://localhost", transport=httpx.ASGITransport(app=app), **client_args)
            async with client:
                yield client

    async def __aenter__(self) -> EvolutionClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        r = await self._http.request(method, path, json=json, params=params)
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = {}
            if not isinstance(body, dict):
                body = {}
            raise EvolutionRequestError(
                r.status_code, str(body.get("code", "http_error")), str(body.get("message", r.text)), body.get("errors")
            )
        return r.json()

    async def submit(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Submits a change; the answer already carries the constitution's route and scores."""
        out: dict[str, Any] = await self._call("POST", "/evolution/request", json=dict(request))
        return out

    async def get(self, request_id: str) -> dict[str, Any]:
        out: dict[str, Any] = await self._call("GET", f"/evolution/requests/{request_id}")
        return out

    async def list_requests(
        self, *, status: str | None = None, agent_id: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if agent_id:
            params["agent_id"] = agent_id
        out: dict[str, Any] = await self._call("GET", "/evolution/requests", params=params)
        return out

    async def wait_for_decision(
        self, request_id: str, *, timeout: float, poll_interval: float = 1.0, max_interval: float = 15.0
    ) -> dict[str, Any]:
        """The request once it is no longer pending (approved, rejected, expired, ...). Polls,
        backing off from ``poll_interval`` to ``max_interval``; raises ``DecisionTimeout``
        after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            request = await self.get(request_id)
            if request["status"] not in UNDECIDED:
                return request
            left = deadline - time.monotonic()
            if left <= 0:
                raise DecisionTimeout(f"request {request_id} is still {request['status']} after {timeout:g}s", request)
            await asyncio.sleep(min(interval, left))
            interval = min(max_interval, interval * 1.5)

    async def approve(self, request_id: str, reason: str) -> dict[str, Any]:
        out: dict[str, Any] = await self._call("POST", f"/evolution/requests/{request_id}/approve", {"reason": reason})
        return out

    async def reject(self, request_id: str, reason: str) -> dict[str, Any]:
        out: dict[str, Any] = await self._call("POST", f"/evolution/requests/{request_id}/reject", {"reason": reason})
        return out

    async def cancel(self, request_id: str, reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = await self._call("POST", f"/evolution/requests/{request_id}/cancel", {"reason": reason})
        return out

    async def deploy(self, request_id: str, note: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = await self._call("POST", f"/evolution/requests/{request_id}/deploy", {"note": note})
        return out

    async def rollback(self, request_id: str, reason: str, *, attest_manual: bool = False) -> dict[str, Any]:
        body = {"reason": reason, "attest_manual": attest_manual}
        out: dict[str, Any] = await self._call("POST", f"/evolution/requests/{request_id}/rollback", body)
        return out
