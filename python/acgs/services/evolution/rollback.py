"""Carrying out a rollback plan: each step of the plan is run by a ``RollbackExecutor``.

The default, ``NamedActionExecutor``, runs a step by looking its ``action`` up among registered
Python callables; an action nobody registered fails its step. Deployments register the actions
their platform needs (``register``, or ``ACGS_EVOLUTION_ROLLBACK_EXECUTOR=module:factory``).
``CommandExecutor`` runs steps as commands and is never the default: a rollback plan comes from
the agent whose change is being undone, and running its text would hand that agent a shell.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from acgs.services.evolution.records import EvolutionRecord

log = logging.getLogger("acgs.services.evolution")


@dataclass(frozen=True, slots=True)
class RollbackStep:
    action: str
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None

    @classmethod
    def from_json(cls, value: Any) -> RollbackStep:
        """A stored step: a bare action name or ``{action, params, description}``."""
        if isinstance(value, str):
            return cls(action=value)
        if isinstance(value, dict) and isinstance(value.get("action"), str):
            params = value.get("params")
            description = value.get("description")
            return cls(
                action=value["action"],
                params=dict(params) if isinstance(params, dict) else {},
                description=description if isinstance(description, str) else None,
            )
        raise ValueError(f"not a rollback step: {value!r}")


class StepFailed(Exception):
    """Raised by an action whose step did not succeed; the message says why."""


class RollbackExecutor(Protocol):
    async def run_step(self, request: EvolutionRecord, step: RollbackStep) -> str:
        """Carries out one step and returns a short account of what it did; raises (any
        exception) when the step failed."""
        ...


#: A named action: given the request being rolled back and the step's params, does the work
#: and returns a short account of it.
RollbackAction = Callable[[EvolutionRecord, Mapping[str, Any]], Awaitable[str]]


async def _notify(request: EvolutionRecord, params: Mapping[str, Any]) -> str:
    message = params.get("message")
    text = message if isinstance(message, str) and message else f"rolling back {request.request_id}"
    log.warning("rollback of %s (agent %s): %s", request.request_id, request.agent_id, text)
    return f"notified: {text}"


_MAX_WAIT = 60.0


async def _wait(request: EvolutionRecord, params: Mapping[str, Any]) -> str:
    seconds = params.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= _MAX_WAIT:
        raise StepFailed(f"wait needs params.seconds between 0 and {_MAX_WAIT:g}")
    await asyncio.sleep(float(seconds))
    return f"waited {seconds}s"


#: Actions every ``NamedActionExecutor`` starts with; none of them touches anything outside
#: the service.
BUILTIN_ACTIONS: dict[str, RollbackAction] = {"notify": _notify, "wait": _wait}


class NamedActionExecutor:
    """Runs each step as the registered action of its name."""

    def __init__(self, actions: Mapping[str, RollbackAction] | None = None, *, builtins: bool = True) -> None:
        self.actions: dict[str, RollbackAction] = dict(BUILTIN_ACTIONS) if builtins else {}
        if actions:
            self.actions.update(actions)

    def register(self, name: str, action: RollbackAction) -> None:
        self.actions[name] = action

    async def run_step(self, request: EvolutionRecord, step: RollbackStep) -> str:
        action = self.actions.get(step.action)
        if action is None:
            raise StepFailed(f"no rollback action named {step.action!r} is registered")
        return await action(request, step.params)


class CommandExecutor:
    """Runs a step's ``params.argv`` (a list of strings, never through a shell) with a time
    limit, in ``cwd``, and only when ``argv[0]`` is one of ``allowed``. Opt-in only."""

    def __init__(self, allowed: Sequence[str], *, cwd: str | None = None, timeout: float = 60.0) -> None:
        if not allowed:
            raise ValueError("CommandExecutor needs the list of programs it may run")
        self.allowed = frozenset(allowed)
        self.cwd = cwd
        self.timeout = timeout

    async def run_step(self, request: EvolutionRecord, step: RollbackStep) -> str:
        argv = step.params.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise StepFailed("a command step needs params.argv, a non-empty list of strings")
        if argv[0] not in self.allowed:
            raise StepFailed(f"program {argv[0]!r} is not allowed")
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ACGS_REQUEST_ID": request.request_id},
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise StepFailed(f"{argv[0]} did not finish within {self.timeout:g}s") from None
        text = out.decode("utf-8", "replace").strip()[-500:]
        if proc.returncode != 0:
            raise StepFailed(f"{argv[0]} exited with status {proc.returncode}: {text}")
        return text or f"{argv[0]} succeeded"


def load_executor(spec: str | None) -> RollbackExecutor:
    """The executor named by ``module:factory`` (called with no arguments), or the default."""
    if not spec:
        return NamedActionExecutor()
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"rollback executor {spec!r}: expected module:factory")
    factory = getattr(importlib.import_module(module_name), attr)
    executor = factory()
    if not callable(getattr(executor, "run_step", None)):
        raise ValueError(f"rollback executor {spec!r} returned {executor!r}, which has no run_step")
    result: RollbackExecutor = executor
    return result
