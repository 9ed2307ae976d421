"""Exceptions raised by ACGS. Every one derives from :class:`AcgsError` and carries a stable
``code`` (the same codes the REST API returns)."""

from __future__ import annotations


class AcgsError(Exception):
    """Root of all ACGS errors."""

    code: str = "acgs_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BundleError(AcgsError):
    """A bundle is malformed or incomplete, or its Wasm module breaks the OPA ABI."""

    code = "bundle_error"


class UnknownBuiltinError(BundleError):
    """The policy calls a builtin the host does not implement; the message names it."""

    code = "unknown_builtin"


class UnknownEntrypointError(AcgsError, LookupError):
    """The requested entrypoint is not in the bundle."""

    code = "unknown_entrypoint"


class InvalidInputError(AcgsError, ValueError):
    """The input is not a JSON value (or holds a value JSON cannot express)."""

    code = "invalid_input"


class ConstitutionalHashMismatch(InvalidInputError):
    """The request names a constitutional hash other than the loaded constitution's; it was
    not evaluated."""

    code = "constitutional_hash_mismatch"


class EvaluationError(AcgsError):
    """The policy aborted (e.g. a conflict error) or trapped."""

    code = "evaluation_error"


class EvaluationTimeout(EvaluationError):
    """The evaluation passed its deadline."""

    code = "evaluation_timeout"


class ResourceLimitExceeded(EvaluationError):
    """The evaluation passed its memory cap."""

    code = "resource_limit_exceeded"


class InternalError(AcgsError):
    """A fault inside ACGS itself."""

    code = "internal_error"


__all__ = [
    "AcgsError",
    "BundleError",
    "ConstitutionalHashMismatch",
    "EvaluationError",
    "EvaluationTimeout",
    "InternalError",
    "InvalidInputError",
    "ResourceLimitExceeded",
    "UnknownBuiltinError",
    "UnknownEntrypointError",
]
