"""Admin REST routes of the agent registry: ``GET/POST /v1/agents`` and
``GET/PATCH/DELETE /v1/agents/{agent_id}``, JSON in and out with exact numbers, errors in OPA's
body (``{"code", "message", "errors": [{"code", "message", "field"}]}``).

:func:`agent_routes` builds the router; mount it on a service with ``app.include_router`` and
add :data:`ACCESS_RULES` to that service's access table (admin only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from acgs.registry.cache import CachedRegistry
from acgs.registry.errors import AgentExists, AgentNotFound, InvalidAgentError, RegistryError, RegistryUnavailable
from acgs.registry.records import UNSET, AgentRecord, AgentUpdate, check_agent_id, dumps_exact, loads_exact, new_agent
from acgs.registry.store import AgentRegistry
from acgs.security.access import Rule
from acgs.security.principal import ADMIN
from acgs.services.common.errors import ServiceError
from acgs.services.common.http import read_body

#: Routes of the registry for a service's ``Access`` table: administrators only.
ACCESS_RULES: Final = (
    Rule("GET,POST /v1/agents", ADMIN),
    Rule("GET,PATCH,DELETE /v1/agents/{agent_id}", ADMIN),
)

#: Largest request body accepted (an agent's attributes are capped well below it).
BODY_LIMIT: Final = 64 * 1024
_JSON_TYPES = frozenset(("application/json", "application/merge-patch+json"))
_CREATE_FIELDS = frozenset(("agent_id", "trust_level", "tier", "owner", "attributes", "disabled"))
_PATCH_FIELDS = frozenset(("trust_level", "tier", "owner", "attributes", "disabled"))

_FIELDS_SCHEMA: Final[dict[str, Any]] = {
    "agent_id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"},
    "trust_level": {
        "oneOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "string", "pattern": r"^[0-9]{0,3}(\.[0-9]{1,30})?$"}]
    },
    "tier": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"},
    "owner": {"type": ["string", "null"], "maxLength": 256},
    "attributes": {"type": "object"},
    "disabled": {"type": "boolean"},
}


def _body_doc(required: tuple[str, ...], fields: frozenset[str], media: tuple[str, ...]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {k: v for k, v in _FIELDS_SCHEMA.items() if k in fields},
        "required": list(required),
        "additionalProperties": False,
    }
    return {"requestBody": {"required": True, "content": {m: {"schema": schema} for m in media}}}


#: Called after each successful write with ``"added" | "updated" | "removed"``, the record
#: (after the change; before it for a removal) and the request, e.g. to audit who did it.
OnChange = Callable[[str, AgentRecord, Request], Awaitable[None]]


def _json(status: int, value: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps_exact(value, sort_keys=False), status, headers=dict(headers or {}), media_type="application/json")


def _error(status: int, code: str, detail: str, message: str, field: str | None = None) -> Response:
    entry: dict[str, Any] = {"code": detail, "message": message}
    if field is not None:
        entry["field"] = field
    return _json(status, {"code": code, "message": message, "errors": [entry]})


def _refusal(exc: Exception) -> Response:
    if isinstance(exc, InvalidAgentError):
        return _error(400, "invalid_parameter", exc.code, exc.message, exc.field)
    if isinstance(exc, AgentNotFound):
        return _error(404, "resource_not_found", exc.code, exc.message)
    if isinstance(exc, AgentExists):
        return _error(409, "resource_conflict", exc.code, exc.message)
    if isinstance(exc, RegistryUnavailable):
        return _error(503, "internal_error", exc.code, exc.message)
    if isinstance(exc, RegistryError):
        return _error(400, "invalid_parameter", exc.code, exc.message)
    if isinstance(exc, ServiceError):
        return _error(exc.status, exc.code, exc.detail_code or exc.code, exc.message)
    raise exc


class _BadBody(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _object_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object with exact numbers, or :class:`_BadBody`."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in _JSON_TYPES:
        raise _BadBody(415, f"send the body as application/json (got {media or 'no content type'!r})")
    try:
        raw = await read_body(request.scope, request.receive, BODY_LIMIT)
    except ServiceError as exc:
        raise _BadBody(exc.status, exc.message) from None
    try:
        text = raw.decode("utf-8")
        value = loads_exact(text)
    except UnicodeDecodeError:
        raise _BadBody(400, "the body is not UTF-8") from None
    except RecursionError:
        raise _BadBody(400, "the body is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise _BadBody(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _BadBody(400, "the body must be a JSON object")
    return value


def _unknown_fields(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in body:
        if key not in allowed:
            shown = key if len(key) <= 40 else key[:40] + "..."
            raise InvalidAgentError(shown, f"unknown field; expected some of {', '.join(sorted(allowed))}")


def agent_routes(
    registry: AgentRegistry | Callable[[Request], AgentRegistry],
    *,
    prefix: str = "/v1/agents",
    on_change: OnChange | None = None,
) -> APIRouter:
    """The registry's admin routes. ``registry`` is the registry itself (a store or a
    :class:`~acgs.registry.cache.CachedRegistry`) or a function of the request returning it
    (e.g. from ``request.app.state``). With a ``CachedRegistry``, the routes read its store
    directly and write through it."""
    if callable(registry) and not hasattr(registry, "add"):
        registry_of: Callable[[Request], AgentRegistry] = registry
    else:
        fixed: AgentRegistry = registry  # type: ignore[assignment]

        def registry_of(request: Request) -> AgentRegistry:
            return fixed

    def reader_of(request: Request) -> AgentRegistry:
        # Reads go to the store itself: an administrator sees every node's latest writes, not
        # this node's copy from its last reload. Writes go through the cache, so this node
        # serves them at once.
        registry = registry_of(request)
        return registry.store if isinstance(registry, CachedRegistry) else registry

    router = APIRouter(prefix=prefix, tags=["agents"])

    async def changed(action: str, record: AgentRecord, request: Request) -> None:
        if on_change is not None:
            await on_change(action, record, request)

    @router.get("", summary="List registered agents")
    async def list_agents(request: Request) -> Response:
        try:
            found = await reader_of(request).list()
        except Exception as exc:
            return _refusal(exc)
        return _json(200, {"agents": [r.to_json_value() for r in found]})

    @router.post(
        "",
        summary="Register an agent",
        status_code=201,
        openapi_extra=_body_doc(("agent_id", "trust_level"), _CREATE_FIELDS, ("application/json",)),
    )
    async def add_agent(request: Request) -> Response:
        try:
            body = await _object_body(request)
            _unknown_fields(body, _CREATE_FIELDS)
            if "agent_id" not in body or "trust_level" not in body:
                missing = "agent_id" if "agent_id" not in body else "trust_level"
                raise InvalidAgentError(missing, "is required")
            record = new_agent(
                body["agent_id"],
                body["trust_level"],
                tier=body.get("tier"),
                owner=body.get("owner"),
                attributes=body.get("attributes"),
                disabled=body.get("disabled", False),
            )
            added = await registry_of(request).add(record)
            await changed("added", added, request)
        except _BadBody as exc:
            return _error(exc.status, "invalid_parameter", "invalid_body", exc.message)
        except Exception as exc:
            return _refusal(exc)
        return _json(201, added.to_json_value(), {"Location": f"{prefix}/{added.agent_id}"})

    @router.get("/{agent_id}", summary="One agent's record")
    async def get_agent(request: Request, agent_id: str) -> Response:
        try:
            record = await reader_of(request).get(check_agent_id(agent_id))
            if record is None:
                raise AgentNotFound(f"no agent {agent_id!r} is registered")
        except Exception as exc:
            return _refusal(exc)
        return _json(200, record.to_json_value())

    @router.patch(
        "/{agent_id}",
        summary="Change some fields of an agent (JSON merge patch)",
        openapi_extra=_body_doc((), _PATCH_FIELDS | {"agent_id"}, tuple(sorted(_JSON_TYPES))),
    )
    async def patch_agent(request: Request, agent_id: str) -> Response:
        try:
            check_agent_id(agent_id)
            body = await _object_body(request)
            if "agent_id" in body and body["agent_id"] != agent_id:
                raise InvalidAgentError("agent_id", "cannot be changed (remove the agent and add it again)")
            body.pop("agent_id", None)
            _unknown_fields(body, _PATCH_FIELDS)
            for name in ("trust_level", "disabled"):
                if name in body and body[name] is None:
                    raise InvalidAgentError(name, "cannot be removed")
            attributes = body.get("attributes", UNSET)
            change = AgentUpdate.of(
                trust_level=body.get("trust_level", UNSET),
                tier=body.get("tier", UNSET),
                owner=body.get("owner", UNSET),
                disabled=body.get("disabled", UNSET),
                # RFC 7396: null removes every attribute, an object merges into them.
                **({"attributes": {}} if "attributes" in body and attributes is None else {}),
                **({"attributes_patch": attributes} if attributes is not UNSET and attributes is not None else {}),
            )
            if change.empty:
                raise InvalidAgentError("body", f"nothing to change; give some of {', '.join(sorted(_PATCH_FIELDS))}")
            updated = await registry_of(request).update(agent_id, change)
            await changed("updated", updated, request)
        except _BadBody as exc:
            return _error(exc.status, "invalid_parameter", "invalid_body", exc.message)
        except Exception as exc:
            return _refusal(exc)
        return _json(200, updated.to_json_value())

    @router.delete("/{agent_id}", summary="Remove an agent")
    async def remove_agent(request: Request, agent_id: str) -> Response:
        try:
            removed = await registry_of(request).remove(check_agent_id(agent_id))
            await changed("removed", removed, request)
        except Exception as exc:
            return _refusal(exc)
        return _json(200, removed.to_json_value())

    return router
