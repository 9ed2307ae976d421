"""OPA's error body (``{"code", "message", "errors"}``) for every error a service returns, and
the exception handlers that make FastAPI and Starlette speak it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from acgs.errors import AcgsError

log = logging.getLogger("acgs.services")

# OPA's error codes (server/types); ACGS's own codes go in ``errors[].code``.
INVALID_PARAMETER = "invalid_parameter"
INVALID_OPERATION = "invalid_operation"
INTERNAL_ERROR = "internal_error"
EVALUATION_ERROR = "evaluation_error"
RESOURCE_NOT_FOUND = "resource_not_found"
UNDEFINED_DOCUMENT = "undefined_document"

_CODE_BY_STATUS = {
    400: INVALID_PARAMETER,
    404: RESOURCE_NOT_FOUND,
    405: INVALID_OPERATION,
    413: INVALID_PARAMETER,
    415: INVALID_PARAMETER,
    501: INVALID_OPERATION,
}


class ServiceError(Exception):
    """An error answered with OPA's error body. ``detail_code`` is ACGS's specific code (for
    example ``constitutional_hash_mismatch``), sent as ``errors[0].code``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        detail_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail_code = detail_code
        self.headers = headers

    @classmethod
    def bad_request(cls, message: str, detail_code: str | None = None) -> ServiceError:
        return cls(400, INVALID_PARAMETER, message, detail_code=detail_code)

    @classmethod
    def from_acgs(cls, status: int, code: str, exc: AcgsError) -> ServiceError:
        return cls(status, code, exc.message, detail_code=exc.code)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail_code is not None:
            out["errors"] = [{"code": self.detail_code, "message": self.message}]
        return out

    def response(self) -> Response:
        return Response(
            orjson.dumps(self.body()), self.status, headers=self.headers, media_type="application/json"
        )

    def payload(self) -> bytes:
        return orjson.dumps(self.body())

    @property
    def metric_code(self) -> str:
        return self.detail_code or self.code


def install_error_handlers(app: FastAPI, count_error: Callable[[str], None]) -> None:
    """Every error, including routing's 404/405 and a bug's 500, leaves as OPA's error body and
    is counted under its code."""

    async def on_service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        count_error(exc.metric_code)
        return exc.response()

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _CODE_BY_STATUS.get(exc.status_code, INTERNAL_ERROR if exc.status_code >= 500 else INVALID_PARAMETER)
        err = ServiceError(exc.status_code, code, str(exc.detail), headers=exc.headers)
        count_error(err.metric_code)
        return err.response()

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        count_error(INVALID_PARAMETER)
        return ServiceError.bad_request(f"invalid request: {exc.errors()}").response()

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        count_error(INTERNAL_ERROR)
        return ServiceError(500, INTERNAL_ERROR, "internal error").response()

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
