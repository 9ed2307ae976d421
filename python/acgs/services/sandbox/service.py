"""The sandbox controller's work, apart from HTTP: admit a run by the constitution, pick its
runtime, queue it, run it, persist and audit the result; and at start, clean up after a
controller that died."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from acgs import Engine
from acgs.audit.outbox import OutboxRelay
from acgs.audit.sink import BlockingHttpAuditSink
from acgs.errors import AcgsError, InvalidInputError
from acgs.services.common.observability import note_decision
from acgs.services.sandbox import limits as cgroups
from acgs.services.sandbox import workdir
from acgs.services.sandbox.admission import Admission, admit
from acgs.services.sandbox.audit import ACTION, EVENT_TYPE, AuditEvent, AuditSink
from acgs.services.sandbox.metrics import SandboxMetrics
from acgs.services.sandbox.queue import ExecutionQueue, QueueFull
from acgs.services.sandbox.runtimes import (
    BwrapRuntime,
    Host,
    Job,
    Outcome,
    Runtime,
    RuntimeStatus,
    RuntimeUnavailable,
    all_runtimes,
)
from acgs.services.sandbox.runtimes import network
from acgs.services.sandbox.schemas import ExecuteRequest
from acgs.services.sandbox.seccomp import Profile, load_profile, notification_available
from acgs.services.sandbox.settings import SandboxSettings
from acgs.services.sandbox.store import ExecutionStore, OutboxAuditSink

log = logging.getLogger("acgs.services.sandbox")


@dataclass(frozen=True, slots=True)
class Language:
    main_file: str
    argv: tuple[str, ...]
    #: The interpreter on the host's /usr, which the sandboxes see read-only.
    interpreter: str


LANGUAGES: dict[str, Language] = {
    "python": Language("main.py", ("python3", "main.py"), "/usr/bin/python3"),
    "bash": Language("main.sh", ("bash", "main.sh"), "/usr/bin/bash"),
    "sh": Language("main.sh", ("sh", "main.sh"), "/usr/bin/sh"),
    "javascript": Language("main.js", ("node", "main.js"), "/usr/bin/node"),
}


class ExecutionError(AcgsError):
    """A run the constitution allowed could not happen here; the execution records why."""

    code = "execution_error"

    def __init__(self, message: str, code: str, http_status: int) -> None:
        super().__init__(message, code)
        self.http_status = http_status


@dataclass
class Result:
    record: dict[str, Any]
    http_status: int


class SandboxService:
    def __init__(
        self,
        settings: SandboxSettings,
        *,
        engine: Engine | None = None,
        audit: AuditSink | None = None,
        metrics: SandboxMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or SandboxMetrics()
        self.metrics.service = self
        self.engine = engine if engine is not None else Engine.load(settings.bundle)
        self.store = ExecutionStore(settings.database_path)
        self.audit: AuditSink = audit if audit is not None else OutboxAuditSink(self.store)
        self.relay: OutboxRelay | None = None
        if audit is None and settings.audit_url:
            self.relay = OutboxRelay(self.store.outbox, BlockingHttpAuditSink(settings.audit_url))
        self.profile: Profile = load_profile(settings.seccomp_profile)
        self.queue = ExecutionQueue(settings.concurrency, settings.max_queue)
        self.layout = cgroups.detect_layout()
        self.instance: workdir.Instance | None = None
        self.host: Host | None = None
        self.runtimes: dict[str, Runtime] = {}
        self.statuses: dict[str, RuntimeStatus] = {}
        self.swept: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, *, probe: bool = True) -> None:
        """Clean up after dead controllers, claim an instance, find out what runs here."""
        self.swept = self.sweep()
        self.recover()
        self.instance = workdir.Instance(self.settings.runs_dir)
        monitoring = notification_available() if self.settings.monitor_syscalls else "turned off in the settings"
        self.host = Host(
            self.layout, self.instance, self.settings.cgroup_parent, self.profile, self.settings.cpu_cores, monitoring
        )
        self.runtimes = all_runtimes(self.host, self.settings.gvisor_platform)
        if probe:
            self.probe()
        self._start_pool()
        if self.relay is not None:
            self.relay.start_thread()

    def _start_pool(self) -> None:
        """Warm bwrap sandboxes, where bwrap works here (the trial run passed)."""
        bwrap = self.runtimes.get("bwrap")
        status = self.statuses.get("bwrap")
        if not isinstance(bwrap, BwrapRuntime) or status is None or not status.available:
            return
        why_not = bwrap.start_pool(self.settings.pool_size, self.settings.pool_disk_mb)
        if why_not is not None and self.settings.pool_size > 0:
            log.warning("no warm pool: %s; every bwrap run starts cold", why_not)
        self.statuses["bwrap"] = RuntimeStatus(
            status.name,
            status.available,
            status.isolation,
            status.reason,
            status.version,
            {**status.details, "warm_pool": why_not or "on"},
        )

    def pool_state(self) -> dict[str, object] | None:
        bwrap = self.runtimes.get("bwrap")
        if isinstance(bwrap, BwrapRuntime) and bwrap.pool is not None:
            return bwrap.pool.describe()
        return None

    def pool_waiting(self) -> list[str]:
        """Names (cgroup and work dir) of the warm sandboxes waiting for a run."""
        bwrap = self.runtimes.get("bwrap")
        if isinstance(bwrap, BwrapRuntime) and bwrap.pool is not None:
            return bwrap.pool.waiting()
        return []

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until the warm pool has removed used sandboxes and refilled (tests)."""
        bwrap = self.runtimes.get("bwrap")
        if isinstance(bwrap, BwrapRuntime) and bwrap.pool is not None:
            return bwrap.pool.settle(timeout)
        return True

    def sweep(self) -> list[str]:
        """Unmount and delete the work dirs, and kill and remove the cgroups, of controller
        instances that no longer run."""
        live, removed = workdir.sweep(self.settings.runs_dir)
        if self.instance is not None:
            live.add(self.instance.id)
        tag = workdir.runs_dir_tag(self.settings.runs_dir)
        removed += cgroups.sweep(self.layout, self.settings.cgroup_parent, tag, live)
        if removed:
            log.warning("removed %d work dirs and cgroups left by stopped controllers", len(removed))
        return removed

    def recover(self) -> None:
        """Close the executions a dead controller never finished."""
        for record in self.store.unfinished():
            record.update(
                status="error",
                error="the controller stopped before the run finished",
                finished_at=time.time(),
            )
            self._finish(record)

    def probe(self) -> dict[str, RuntimeStatus]:
        """Each runtime's own checks, then a trial run of /usr/bin/true for those that pass,
        timed: that figure is the runtime's cold start on this host."""
        statuses: dict[str, RuntimeStatus] = {}
        for name, rt in self.runtimes.items():
            status = rt.probe()
            if status.available:
                status = self._trial(rt, status)
            statuses[name] = status
        self.statuses = statuses
        return statuses

    def _trial(self, rt: Runtime, status: RuntimeStatus) -> RuntimeStatus:
        limits = cgroups.Limits(cpu_seconds=10, memory_mb=64, disk_mb=1, timeout_s=30, pids=16, network=False)
        job = Job(f"probe-{uuid.uuid4().hex[:12]}", "probe", ("/usr/bin/true",), {}, b"", limits, 4096)
        t = time.perf_counter()
        try:
            out = rt.run(job)
        except AcgsError as exc:
            return RuntimeStatus(status.name, False, status.isolation, f"trial run failed: {exc.message}", status.version, status.details)
        except OSError as exc:
            return RuntimeStatus(status.name, False, status.isolation, f"trial run failed: {exc}", status.version, status.details)
        ms = (time.perf_counter() - t) * 1000
        if out.status != "completed" or out.exit_code != 0:
            why = (out.error or out.stderr.decode(errors="replace").strip() or f"{out.status}, exit code {out.exit_code}")[:500]
            return RuntimeStatus(status.name, False, status.isolation, f"trial run failed: {why}", status.version, status.details)
        return RuntimeStatus(
            status.name, True, status.isolation, None, status.version, {**status.details, "trial_run_ms": round(ms, 1)}
        )

    def close(self) -> None:
        self.queue.shutdown()
        if self.relay is not None:
            self.relay.close()
        bwrap = self.runtimes.get("bwrap")
        if isinstance(bwrap, BwrapRuntime):
            bwrap.close_pool()
        if self.host is not None:
            self.host.forkserver.close()
        if self.instance is not None:
            cgroups.remove_instance(self.layout, self.settings.cgroup_parent, self.instance.cgroup_name)
            self.instance.close()
            self.instance = None
        self.store.close()

    # -- executions --------------------------------------------------------------------------

    async def execute(self, req: ExecuteRequest, trusted: bytes | None = None) -> Result:
        """One run: ``trusted`` is the caller's facts (acgs.trust), which the constitution
        believes over the request's claims (a claimed trust level only lowers the registered
        one)."""
        now = time.time()
        execution_id = uuid.uuid4().hex
        decision_id = req.decision_id or str(uuid.uuid4())
        note_decision(decision_id)
        policy_input = {
            "agent_id": req.agent_id,
            "agent": req.agent,
            "language": req.language,
            "runtime": req.runtime,
            "limits": req.limits,
            "constitutional_hash": req.constitutional_hash or self.engine.constitutional_hash,
        }
        # A Wasm evaluation (bounded by its deadline): off the event loop the services share.
        admission = await asyncio.to_thread(admit, self.engine, policy_input, trusted)
        record: dict[str, Any] = {
            "execution_id": execution_id,
            "status": "denied",
            "exit_code": None,
            "stdout": "",
            "stderr": "",
            "stdout_truncated": False,
            "stderr_truncated": False,
            "resource_usage": {"cpu_s": 0.0, "max_rss_mb": 0.0, "wall_ms": 0.0},
            "violations": [],
            "limits_hit": [],
            "runtime": None,
            "decision_id": decision_id,
            "tool_decision_id": req.tool_decision_id,
            "agent_id": req.agent_id,
            "language": req.language,
            "limits": admission.limits,
            "reasons": admission.reasons,
            "error": None,
            "created_at": now,
            "started_at": None,
            "finished_at": None,
            "_admission": {
                "trust_tier": admission.trust_tier,
                "minimum_runtime": admission.minimum_runtime,
                "allowed_runtimes": admission.allowed_runtimes,
                "constitutional_hash": admission.constitutional_hash,
                "code_sha256": _digest(req),
            },
        }
        stored_request = req.model_dump()
        if not admission.allow:
            record["finished_at"] = time.time()
            self.store.create(_public(record), stored_request)
            self._finish(record)
            return Result(_public(record), 403)
        try:
            runtime_name, runtime = self._choose(req.runtime, admission)
            record["runtime"] = runtime_name
            job = self._job(execution_id, req, admission)
        except ExecutionError as exc:
            record.update(status="error", error=exc.message, finished_at=time.time())
            self.store.create(_public(record), stored_request)
            self._finish(record)
            return Result(_public(record), exc.http_status)
        record["status"] = "queued"
        self.store.create(_public(record), stored_request)

        def on_start() -> None:
            record["status"] = "running"
            record["started_at"] = time.time()
            self.store.update(_public(record), started=True)

        try:
            final = await self.queue.run(lambda: self._run(runtime, job, record), on_start)
        except QueueFull as exc:
            record.update(status="error", error=f"the run queue is full: {exc.message}", finished_at=time.time())
            self._finish(record)
            return Result(_public(record), 429)
        status = record.get("_http_status") or (500 if final["status"] == "error" else 200)
        return Result(final, status)

    def _choose(self, requested: str, admission: Admission) -> tuple[str, Runtime]:
        if requested != "auto":
            status = self.statuses.get(requested)
            if status is None or not status.available or requested not in self.runtimes:
                why = status.reason if status is not None else "unknown runtime"
                raise ExecutionError(f"runtime {requested} is not available on this host: {why}", "runtime_unavailable", 422)
            return requested, self.runtimes[requested]
        for name in self.settings.auto_order:
            status = self.statuses.get(name)
            if name in admission.allowed_runtimes and status is not None and status.available:
                return name, self.runtimes[name]
        here = [n for n, s in self.statuses.items() if s.available]
        raise ExecutionError(
            f"no runtime on this host is as strong as the constitution requires for this agent "
            f"(allowed: {', '.join(admission.allowed_runtimes)}; available here: {', '.join(here) or 'none'})",
            "runtime_unavailable",
            422,
        )

    def _job(self, execution_id: str, req: ExecuteRequest, admission: Admission) -> Job:
        lang = LANGUAGES.get(req.language)
        if lang is None:
            raise ExecutionError(f"the controller cannot run {req.language}", "language_unsupported", 422)
        files = {name: text.encode() for name, text in req.files.items()}
        if req.code is not None:
            if lang.main_file in files:
                raise ExecutionError(f"files and code both give {lang.main_file}", "invalid_request", 400)
            files[lang.main_file] = req.code.encode()
        argv = tuple(req.command) if req.command else lang.argv
        if not req.command and not os.path.exists(lang.interpreter):
            raise ExecutionError(f"this host has no {lang.interpreter} for {req.language}", "language_unsupported", 422)
        limits = admission.run_limits()
        if limits.network:
            problem = network.tools_problem()
            if problem is not None:
                # Never the host's network instead: the run does not happen.
                raise ExecutionError(problem, "network_unavailable", 422)
        try:
            workdir.check_files(files, limits.disk_mb * cgroups.MiB)
        except InvalidInputError as exc:
            raise ExecutionError(exc.message, exc.code, 400) from exc
        return Job(execution_id, req.language, argv, files, req.stdin.encode(), limits, self.settings.output_cap)

    def _run(self, runtime: Runtime, job: Job, record: dict[str, Any]) -> dict[str, Any]:
        """In a worker thread: the run itself, then the record and its audit event."""
        try:
            out = runtime.run(job)
        except InvalidInputError as exc:
            # Found only once the host tried (the files' blocks and inodes did not fit the
            # work dir): the request's fault, not the controller's.
            out = Outcome("error", error=exc.message)
            record["_http_status"] = 400
        except RuntimeUnavailable as exc:
            out = Outcome("error", error=f"runtime {runtime.name} failed: {exc.message}")
        except AcgsError as exc:
            out = Outcome("error", error=exc.message)
        except Exception as exc:
            log.exception("run %s failed", job.execution_id)
            out = Outcome("error", error=f"internal error: {type(exc).__name__}: {exc}")
        record.update(
            status=out.status,
            exit_code=out.exit_code,
            stdout=out.stdout.decode(errors="replace"),
            stderr=out.stderr.decode(errors="replace"),
            stdout_truncated=out.stdout_truncated,
            stderr_truncated=out.stderr_truncated,
            resource_usage={
                "cpu_s": out.cpu_s,
                "max_rss_mb": out.max_rss_mb,
                "wall_ms": out.wall_ms,
            },
            violations=out.violations,
            limits_hit=out.limits_hit,
            error=out.error,
            finished_at=time.time(),
        )
        self._finish(record)
        return _public(record)

    def _finish(self, record: dict[str, Any]) -> None:
        """Audit first, then the final record: a crash in between leaves the run unfinished,
        and the next start closes it (with a second event) rather than losing the event."""
        meta = dict(record.get("_admission") or {})
        meta.update(
            execution_id=record["execution_id"],
            runtime=record.get("runtime"),
            language=record.get("language"),
            exit_code=record.get("exit_code"),
            limits=record.get("limits"),
            limits_hit=record.get("limits_hit"),
            violations=record.get("violations"),
            resource_usage=record.get("resource_usage"),
            reasons=record.get("reasons"),
            error=record.get("error"),
        )
        if record.get("tool_decision_id") is not None:
            # The caller's claim, named as one: it links trails, it proves nothing.
            meta["claimed_tool_decision_id"] = record["tool_decision_id"]
        event: AuditEvent = {
            "event_type": EVENT_TYPE,
            "agent_id": record["agent_id"],
            "action": ACTION,
            "result": record["status"],
            "metadata": meta,
            "decision_id": record["decision_id"],
        }
        if isinstance(self.audit, OutboxAuditSink) and self.audit.store is self.store:
            # The execution's final state and its event, in one transaction.
            self.store.update(_public(record), event=event)
        else:
            try:
                self.audit.record(event)
            except Exception:
                log.exception("audit sink failed for execution %s", record["execution_id"])
            self.store.update(_public(record))
        if self.relay is not None:
            self.relay.notify()
        self.metrics.finished(record)

    def get(self, execution_id: str) -> dict[str, Any] | None:
        return self.store.get(execution_id)

    def recent(self, agent_id: str | None, limit: int) -> list[dict[str, Any]]:
        return self.store.recent(agent_id, limit)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def _digest(req: ExecuteRequest) -> str:
    h = hashlib.sha256()
    h.update((req.code or "").encode())
    for name in sorted(req.files):
        h.update(b"\0" + name.encode() + b"\0" + req.files[name].encode())
    return h.hexdigest()
