"""Running code in the ACGS sandbox as a guarded tool: ``code_tool(guard, sandbox)`` gives back
``run_code(code, language="python", stdin="")``, the catalogue's ``run_code`` tool, whose every
call goes through two decisions and leaves two linked audit trails.

1. The guard decides the call (``acgs/tools/decision``: the catalogue's argument constraints on
   ``language`` and ``code``, approval when the constitution asks for it). A call it denies (or
   a reviewer rejects) never reaches the sandbox.
2. The sandbox controller (the service's URL, or a ``SandboxService`` in this process) admits
   the run by its own decision (``acgs/sandbox/decision``: trust tier, runtime, limits), under
   its own decision id, runs it, and returns the execution.
3. The run carries the guard's decision id (``tool_decision_id``, recorded by the sandbox as the
   caller's claim); the guard's audit event carries the execution id, the sandbox's decision id
   and the run's status (metadata ``sandbox``).

The tool is marked ``sandboxed``: the constitution's condition ``sandbox: true`` on ``run_code``
is honoured. A guard denies any tool not so marked whose decision requires the sandbox.

The result is the execution as the sandbox reports it (``CodeResult``), whatever its status:
``completed`` (see ``exit_code``), ``timeout``, ``killed``, ``denied`` (the sandbox's own
admission said no: ``reasons``) or ``error``. ``SandboxError`` when there is no execution to
report (the controller is unreachable, or refused the request as malformed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypedDict

import httpx
import orjson

from acgs.errors import SandboxError
from acgs.guard.guard import Guard, note, running_decision

#: The tool's name in the constitution's catalogue.
TOOL: Final = "run_code"
#: The statuses of an execution the sandbox recorded (anything else is no execution).
STATUSES: Final = frozenset({"completed", "timeout", "killed", "denied", "error"})
_LINKABLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class CodeResult(TypedDict):
    """One execution as the sandbox recorded it."""

    execution_id: str
    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    #: Limits the run reached (timeout_s, cpu_seconds, memory_mb, pids, disk_mb).
    limits_hit: list[str]
    #: The sandbox's own reasons (why it denied the run, or what it allowed).
    reasons: list[str]
    runtime: str | None
    error: str | None
    #: The sandbox's own decision id (its admission and its audit event).
    decision_id: str
    #: The guard's decision id the run was linked to.
    tool_decision_id: str | None


def _result(record: Any, http_status: int) -> CodeResult:
    if not isinstance(record, dict) or record.get("status") not in STATUSES:
        raise SandboxError(f"the sandbox answered {http_status} with no execution", status=http_status)
    execution_id, decision_id = record.get("execution_id"), record.get("decision_id")
    if not isinstance(execution_id, str) or not isinstance(decision_id, str):
        raise SandboxError(f"the sandbox answered {http_status} with a malformed execution", status=http_status)
    exit_code = record.get("exit_code")
    reasons, hit = record.get("reasons"), record.get("limits_hit")
    return CodeResult(
        execution_id=execution_id,
        status=record["status"],
        exit_code=exit_code if type(exit_code) is int else None,
        stdout=str(record.get("stdout") or ""),
        stderr=str(record.get("stderr") or ""),
        stdout_truncated=record.get("stdout_truncated") is True,
        stderr_truncated=record.get("stderr_truncated") is True,
        limits_hit=[str(h) for h in hit] if isinstance(hit, list) else [],
        reasons=[str(r) for r in reasons] if isinstance(reasons, list) else [],
        runtime=record.get("runtime") if isinstance(record.get("runtime"), str) else None,
        error=record.get("error") if isinstance(record.get("error"), str) else None,
        decision_id=decision_id,
        tool_decision_id=record.get("tool_decision_id") if isinstance(record.get("tool_decision_id"), str) else None,
    )


def _linked(result: CodeResult) -> CodeResult:
    """Records the execution in the guard's audit event of the running call."""
    note(
        "sandbox",
        {
            "execution_id": result["execution_id"],
            "decision_id": result["decision_id"],
            "status": result["status"],
            "exit_code": result["exit_code"],
        },
    )
    return result


class _Runner:
    """Submits runs to one sandbox controller for one guard."""

    def __init__(
        self,
        guard: Guard,
        sandbox: Any,
        api_key: str | None,
        agent: Mapping[str, Any] | None,
        runtime: str,
        limits: Mapping[str, Any] | None,
        timeout: float,
    ) -> None:
        self.guard = guard
        self.url = sandbox.rstrip("/") if isinstance(sandbox, str) else None
        self.service = None if isinstance(sandbox, str) else sandbox
        if self.service is not None and not callable(getattr(self.service, "execute", None)):
            raise TypeError("sandbox must be the sandbox service's URL or an acgs.services.sandbox.SandboxService")
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        if agent is None:
            # The facts the embedding program gave the guard, as the run's claim about the agent.
            trusted = orjson.loads(guard._trusted) if guard._trusted is not None else {}  # noqa: SLF001
            agent = trusted.get("agent") if isinstance(trusted.get("agent"), dict) else {}
        self.agent = dict(agent or {})
        self.runtime = runtime
        self.limits = dict(limits or {})
        self.timeout = timeout

    def body(self, code: str, language: str, stdin: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "language": language,
            "code": code,
            "stdin": stdin,
            "agent_id": self.guard.agent_id,
            "agent": self.agent,
            "runtime": self.runtime,
            "limits": self.limits,
        }
        decision = running_decision()
        if decision is not None and _LINKABLE.match(decision.decision_id):
            body["tool_decision_id"] = decision.decision_id
        return body

    # -- the sandbox service over HTTP ------------------------------------------------------

    def _reply(self, response: httpx.Response) -> CodeResult:
        try:
            record = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise SandboxError(f"the sandbox answered {response.status_code} with unreadable JSON", status=response.status_code) from None
        status = response.status_code
        if status in (400, 401, 403, 404, 413) and not (isinstance(record, dict) and "execution_id" in record):
            message = record.get("message") if isinstance(record, dict) else None
            raise SandboxError(f"the sandbox refused the request ({status}): {message or response.text[:300]}", status=status)
        return _result(record, response.status_code)

    def post(self, body: dict[str, Any]) -> CodeResult:
        assert self.url is not None
        try:
            with httpx.Client(timeout=self.timeout) as http:
                response = http.post(f"{self.url}/execute", content=orjson.dumps(body), headers=self.headers)
        except httpx.HTTPError as exc:
            raise SandboxError(f"the sandbox is unreachable: {type(exc).__name__}: {exc}") from None
        return self._reply(response)

    async def apost(self, body: dict[str, Any]) -> CodeResult:
        assert self.url is not None
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                response = await http.post(f"{self.url}/execute", content=orjson.dumps(body), headers=self.headers)
        except httpx.HTTPError as exc:
            raise SandboxError(f"the sandbox is unreachable: {type(exc).__name__}: {exc}") from None
        return self._reply(response)

    # -- a controller in this process -------------------------------------------------------

    async def aexecute(self, body: dict[str, Any]) -> CodeResult:
        from pydantic import ValidationError

        from acgs.services.sandbox.schemas import ExecuteRequest

        try:
            request = ExecuteRequest.model_validate(body)
        except ValidationError as exc:
            raise SandboxError(f"the sandbox refused the request: {exc.errors()[0].get('msg', exc)}", status=400) from None
        # In process the embedding program vouches for the guard's facts, as it does for the guard.
        result = await self.service.execute(request, self.guard._trusted)  # type: ignore[union-attr]  # noqa: SLF001
        return _result(result.record, result.http_status)

    def execute(self, body: dict[str, Any]) -> CodeResult:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.aexecute(body))
        # Called from a coroutine: the run waits in a thread of its own, not on this loop.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self.aexecute(body)).result()

    # -- one run --------------------------------------------------------------------------

    def run(self, code: str, language: str, stdin: str) -> CodeResult:
        body = self.body(code, language, stdin)
        return _linked(self.post(body) if self.url is not None else self.execute(body))

    async def arun(self, code: str, language: str, stdin: str) -> CodeResult:
        body = self.body(code, language, stdin)
        return _linked(await self.apost(body) if self.url is not None else await self.aexecute(body))


def code_tool(
    guard: Guard,
    sandbox: Any,
    *,
    api_key: str | None = None,
    name: str = TOOL,
    agent: Mapping[str, Any] | None = None,
    runtime: str = "auto",
    limits: Mapping[str, Any] | None = None,
    timeout: float = 120.0,
    asynchronous: bool = False,
) -> Callable[..., CodeResult] | Callable[..., Awaitable[CodeResult]]:
    """A guarded ``run_code(code, language="python", stdin="")`` that runs code in the sandbox.

    ``sandbox``: the sandbox service's URL (``api_key``: the agent's credential for it) or an
    ``acgs.services.sandbox.SandboxService`` running in this process. ``name``: the tool's
    catalogue name. ``agent``: what the run claims about the agent (``trust_level``, ``class``;
    default: the guard's ``trusted`` agent facts; a service with authentication believes the
    agent's registered trust over any claim). ``runtime`` and ``limits``: asked of the sandbox,
    which grants what its constitution allows. ``asynchronous``: give a coroutine function."""
    runner = _Runner(guard, sandbox, api_key, agent, runtime, limits, timeout)

    if asynchronous:

        async def arun_code(code: str, language: str = "python", stdin: str = "") -> CodeResult:
            """Runs ``code`` (in ``language``, reading ``stdin``) in the ACGS sandbox."""
            return await runner.arun(code, language, stdin)

        arun_code.__name__ = arun_code.__qualname__ = "run_code"
        return guard.tool(arun_code, name=name, sandboxed=True)  # type: ignore[no-any-return]

    def run_code(code: str, language: str = "python", stdin: str = "") -> CodeResult:
        """Runs ``code`` (in ``language``, reading ``stdin``) in the ACGS sandbox."""
        return runner.run(code, language, stdin)

    return guard.tool(run_code, name=name, sandboxed=True)  # type: ignore[no-any-return]


__all__ = ["STATUSES", "TOOL", "CodeResult", "code_tool"]
