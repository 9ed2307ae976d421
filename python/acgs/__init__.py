"""ACGS: constitutional governance for AI agents.

``acgs.Engine`` loads an OPA bundle compiled to WebAssembly and evaluates policy decisions in
the Rust core, with the GIL released.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from acgs import errors
from acgs._acgs import Engine, __version__
from acgs.errors import ApprovalPending, ApprovalRequired, SandboxError, ToolDenied, ToolInputError, ToolOutputError

if TYPE_CHECKING:
    from acgs.guard import Guard, ReviewApprover, code_tool

__all__ = [
    "SEED_REQUEST",
    "ApprovalPending",
    "ApprovalRequired",
    "Engine",
    "Guard",
    "ReviewApprover",
    "SandboxError",
    "ToolDenied",
    "ToolInputError",
    "ToolOutputError",
    "__version__",
    "code_tool",
    "default_bundle_path",
    "errors",
]


def __getattr__(name: str) -> Any:
    # The guard pulls in the HTTP client and the audit outbox: imported on first use only.
    if name == "Guard":
        from acgs.guard import Guard

        return Guard
    if name == "ReviewApprover":
        from acgs.guard import ReviewApprover

        return ReviewApprover
    if name == "code_tool":
        from acgs.guard import code_tool

        return code_tool
    raise AttributeError(f"module 'acgs' has no attribute {name!r}")

_BUNDLES = Path(__file__).parent / "bundles"


def default_bundle_path() -> Path:
    """The constitution bundle shipped inside the package, so a wheel works on its own."""
    return _BUNDLES / "constitution.tar.gz"


#: The decision request from the original ACGS API documentation, with its resources inside
#: the constitution's limits: allowed with compliance score 0.96.
SEED_REQUEST: dict[str, object] = {
    "type": "constitutional_evaluation",
    "constitutional_hash": "cdd01ef066bc6cf2",
    "action": "data.read_public",
    "context": {
        "environment": {"sandbox_enabled": True, "audit_enabled": True, "isolation_level": "strict"},
        "agent": {
            "trust_level": 0.9,
            "requested_resources": {"cpu_cores": 2, "memory_gb": 4, "disk_gb": 10, "network_mbps": 10},
            "capabilities": ["data_read", "compute_analysis"],
        },
        "responsible_party": "user@example.com",
        "explanation": "Reading public dataset for analysis",
        "urgency": "normal",
        "session_id": "sess_123456",
    },
}
