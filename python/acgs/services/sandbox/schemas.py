"""Request and response bodies of the sandbox controller.

The request is checked here only for shape; what it may do (language, runtime, limits,
network) is the constitution's call, so limits and the agent pass through to ``acgs.sandbox``
as sent (numbers as the client spelt them: ``ExactObject``) and its reasons are what a denied
caller reads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from acgs._acgs import exact_json

ExecutionStatus = Literal["queued", "running", "completed", "timeout", "killed", "denied", "error"]
FINAL_STATUSES = frozenset(("completed", "timeout", "killed", "denied", "error"))


class ExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: str
    #: Source in ``language``, saved as the work dir's main file (main.py, main.sh, main.js).
    code: str | None = None
    #: argv to run in the work dir instead of the main file (it may run the main file).
    command: list[str] | None = None
    #: Extra files for the work dir: relative path -> UTF-8 text.
    files: dict[str, str] = Field(default_factory=dict)
    stdin: str = ""
    #: cpu_seconds, memory_mb, disk_mb, timeout_s, pids, network; absent ones take the
    #: constitution's defaults.
    limits: dict[str, Any] = Field(default_factory=dict)
    runtime: str = "auto"
    agent_id: str
    #: What the constitution needs to know about the agent: ``trust_level`` (0..1) and
    #: optionally ``class``.
    agent: dict[str, Any] = Field(default_factory=dict)
    #: The policy decision this run belongs to; the execution is audited under it (a new id
    #: is made when absent). An id that already names a run is refused (409): one decision,
    #: one run, so a caller cannot file its run under another caller's decision.
    decision_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    #: The constitution the caller expects; the loaded one's when absent.
    constitutional_hash: str | None = None
    #: A claim by the caller: the guard's tool decision (``acgs/tools/decision``) this run
    #: carries out (``acgs.guard.code``). Recorded with the execution and in its audit event
    #: (``claimed_tool_decision_id``) to link the two trails; never part of the constitution's
    #: input, so it changes nothing the sandbox decides.
    tool_decision_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")

    @model_validator(mode="after")
    def _code_or_command(self) -> ExecuteRequest:
        if self.code is None and not self.command:
            raise ValueError("give code or command")
        if self.command is not None and (not self.command or not all(self.command)):
            raise ValueError("command must be a non-empty list of non-empty strings")
        return self


    def keep_exact_numbers(self, raw: bytes) -> None:
        """Makes ``agent`` and ``limits`` remember their text in ``raw`` (the request body this
        request was parsed from), so the constitution compares the numbers the client wrote
        (``0.79999999999999999999`` stays below a tier's 0.8; a double would say 0.8). Raises
        ``acgs.errors.InvalidInputError`` for a body that repeats a key (parsers disagree on
        which one wins) or that is not one JSON document."""
        for name in _EXACT_MEMBERS:
            text = exact_json(raw, name)
            if text is not None:
                setattr(self, name, ExactObject(getattr(self, name), text))


#: The members of an execute request whose numbers the constitution compares.
_EXACT_MEMBERS = ("agent", "limits")


class ExactObject(dict[str, Any]):
    """A JSON object as Python reads it (numbers as doubles: for the controller's own use and
    the stored request) that keeps the client's text of it (``exact``: compact JSON, every
    number as spelt) for the constitution. Never changed after parsing: the text would no
    longer match."""

    __slots__ = ("exact",)

    def __init__(self, parsed: dict[str, Any], exact: bytes) -> None:
        super().__init__(parsed)
        self.exact = exact


class ResourceUsage(BaseModel):
    cpu_s: float = 0.0
    #: Peak memory of the whole run, every process together (its memory cgroup's peak:
    #: resident memory, plus the tmpfs work dir and page cache the run caused).
    max_rss_mb: float = 0.0
    wall_ms: float = 0.0


class Violation(BaseModel):
    syscall: str
    action: str
    count: int


class Execution(BaseModel):
    execution_id: str
    status: ExecutionStatus
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    resource_usage: ResourceUsage = Field(default_factory=ResourceUsage)
    violations: list[Violation] = Field(default_factory=list)
    #: Limits the run reached: timeout_s, cpu_seconds, memory_mb, pids, disk_mb.
    limits_hit: list[str] = Field(default_factory=list)
    runtime: str | None = None
    decision_id: str
    #: The caller's claimed tool decision id, as sent (``ExecuteRequest.tool_decision_id``).
    tool_decision_id: str | None = None
    agent_id: str
    language: str
    #: The limits the run got (the constitution's effective limits).
    limits: dict[str, Any] = Field(default_factory=dict)
    #: The constitution's reasons (why denied, or what it allowed).
    reasons: list[str] = Field(default_factory=list)
    error: str | None = None
    created_at: float
    #: When the run left the queue (None for runs that never started).
    started_at: float | None = None
    finished_at: float | None = None


class RuntimeInfo(BaseModel):
    name: str
    available: bool
    isolation: str
    reason: str | None = None
    version: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class RuntimesResponse(BaseModel):
    runtimes: list[RuntimeInfo]
    #: What ``runtime: auto`` tries, in order, among those the constitution allows.
    auto_order: list[str]
    concurrency: int
    max_queue: int


class ErrorBody(BaseModel):
    code: str
    message: str
