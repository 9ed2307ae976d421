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


class AuditError(AcgsError):
    """A fault in the audit log's formats or proofs."""

    code = "audit_error"


class CanonicalJsonError(AuditError, ValueError):
    """A value or JSON text has no RFC 8785 canonical form (invalid JSON, duplicate keys,
    NaN or infinity, an integer a double would alter, a lone surrogate, non-str keys), or bytes
    that should be canonical are not. ``code`` says which."""

    code = "invalid_json"


class AuditArgumentError(AuditError, ValueError):
    """Arguments that do not fit: a hash that is not 32 bytes, lists of different lengths, a
    proof request beyond the tree."""

    code = "invalid_argument"


class ProofError(AuditError):
    """A Merkle proof does not verify."""

    code = "proof_failed"


class SigningKeyError(AuditError, ValueError):
    """A signing or verifier key string does not parse, or its key id does not match."""

    code = "invalid_key"


class CheckpointFormatError(AuditError, ValueError):
    """A signed note or checkpoint breaks the C2SP format."""

    code = "malformed_checkpoint"


class CheckpointSignatureError(AuditError):
    """A checkpoint carries no valid signature by the expected key."""

    code = "bad_signature"


class InconsistentCheckpointError(AuditError):
    """Signing would contradict a checkpoint the log signed before."""

    code = "inconsistent_checkpoint"


class InvalidAuditEvent(AuditError, ValueError):
    """An event the audit log refuses: a missing or malformed field, or metadata JSON cannot
    hold canonically."""

    code = "invalid_event"


class AuditIntegrityError(AuditError):
    """Stored events do not verify (a payload, hash or row was altered, removed or moved), so
    the log refuses to sign or prove over them."""

    code = "integrity_failure"


__all__ = [
    "AcgsError",
    "AuditArgumentError",
    "AuditError",
    "AuditIntegrityError",
    "BundleError",
    "CanonicalJsonError",
    "CheckpointFormatError",
    "CheckpointSignatureError",
    "ConstitutionalHashMismatch",
    "EvaluationError",
    "EvaluationTimeout",
    "InconsistentCheckpointError",
    "InternalError",
    "InvalidAuditEvent",
    "InvalidInputError",
    "ProofError",
    "ResourceLimitExceeded",
    "SigningKeyError",
    "UnknownBuiltinError",
    "UnknownEntrypointError",
]
