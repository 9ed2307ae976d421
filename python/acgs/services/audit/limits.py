"""The audit service's request body limit: an ASGI middleware that answers 413 in the service's
error shape when a body is (or declares itself) larger than ``max_body`` bytes, before the
routes parse it."""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLarge(HTTPException):
    """Raised from ``receive`` as the body crosses the limit: an HTTP exception, so the routes'
    body parsing passes it on and the service's error handler answers it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large (limit {limit} bytes)")


def _answer(limit: int) -> tuple[Message, Message]:
    body = orjson.dumps(
        {"code": "request_too_large", "message": f"request body too large (limit {limit} bytes)", "errors": []}
    )
    start: Message = {
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimit:
    """Refuses request bodies past ``max_body`` bytes with 413: by ``Content-Length`` before
    anything is read, otherwise as the streamed body crosses the limit."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = limit + 1
                if declared > limit:
                    await self._refuse(send)
                    return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        start, body = _answer(self.max_body)
        await send(start)
        await send(body)
