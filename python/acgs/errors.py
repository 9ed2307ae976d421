"""Exceptions raised by ACGS. Every one derives from :class:`AcgsError` and carries a stable
``code`` (the same codes the REST API returns)."""

from __future__ import annotations

from typing import Any


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


class ToolDenied(AcgsError):
    """A guarded tool call was refused and did not run: the constitution denied it, an
    approver rejected it, or deciding failed (a fault in the policy path is a deny). Carries
    the decision (``decision``: outcome, reasons, decision id, tool)."""

    code = "tool_denied"

    def __init__(self, message: str, decision: Any = None, *, outcome: str = "deny", code: str | None = None) -> None:
        super().__init__(message, code)
        self.decision = decision
        #: ``deny`` or ``rejected`` (an approver said no).
        self.outcome = outcome
        self.reasons: list[str] = list(getattr(decision, "reasons", None) or [message])
        self.decision_id: str | None = getattr(decision, "decision_id", None)
        self.tool: str | None = getattr(decision, "tool", None)


class ApprovalRequired(AcgsError):
    """The constitution requires approval of a guarded tool call and no approver was given: the
    call did not run. Carries the decision and its ``approval`` member (reviewers, expiry,
    roles)."""

    code = "approval_required"

    def __init__(self, message: str, decision: Any = None) -> None:
        super().__init__(message)
        self.decision = decision
        self.approval: dict[str, Any] | None = getattr(decision, "approval", None)
        self.reasons: list[str] = list(getattr(decision, "reasons", None) or [])
        self.decision_id: str | None = getattr(decision, "decision_id", None)
        self.tool: str | None = getattr(decision, "tool", None)


class ToolInputError(InvalidInputError):
    """A guarded tool's arguments have no exact JSON form (an object JSON cannot hold, NaN or
    infinity, a non-string key, a cycle): the call was refused without running."""

    code = "tool_input_error"

    def __init__(self, message: str, tool: str | None = None, decision_id: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool
        self.decision_id = decision_id


class ToolOutputError(AcgsError):
    """A guarded tool ran, but its result failed the tool's output checks (``check_output``
    raised, or the result passed ``max_output_bytes`` or has no JSON form to measure): the
    result is withheld."""

    code = "tool_output_rejected"

    def __init__(self, message: str, tool: str | None = None, decision_id: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool
        self.decision_id = decision_id


class ApprovalPending(ApprovalRequired):
    """A guarded tool call waits for reviewers: its approval request (``request_id``, in the
    evolution service at ``url``) was still pending when the approver stopped waiting. The
    call did not run; ``acgs.guard.approval.resume`` runs it once the request is approved."""

    code = "approval_pending"

    def __init__(
        self, message: str, decision: Any = None, *, request_id: str, url: str | None = None, status: str = "pending"
    ) -> None:
        super().__init__(message, decision)
        self.request_id = request_id
        self.url = url
        self.status = status

    def handle(self) -> dict[str, Any]:
        """What an agent checkpoints to resume later: plain JSON."""
        return {"request_id": self.request_id, "url": self.url, "tool": self.tool, "decision_id": self.decision_id}


class SandboxError(AcgsError):
    """The sandbox controller could not take a run or answered no execution (unreachable, a
    malformed request or reply): the code did not run, or what became of it is unknown.
    ``status``: the HTTP status when there was one."""

    code = "sandbox_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


__all__ = [
    "AcgsError",
    "ApprovalPending",
    "ApprovalRequired",
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
    "SandboxError",
    "SigningKeyError",
    "ToolDenied",
    "ToolInputError",
    "ToolOutputError",
    "UnknownBuiltinError",
    "UnknownEntrypointError",
]
