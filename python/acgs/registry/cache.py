"""The registry as the request path reads it: every record held in memory, reloaded in the
background every ``refresh`` seconds when the store's generation moved, so a lookup is one dict
access and a change made on any node reaches every node within one interval."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time

from acgs.registry.errors import RegistryUnavailable
from acgs.registry.records import AgentRecord, AgentUpdate, check_agent_id
from acgs.registry.store import AgentRegistry

log = logging.getLogger("acgs.registry")


class CachedRegistry:
    """An :class:`AgentRegistry` in front of a store. Reads come from memory; writes go to the
    store and are applied to memory at once (other nodes see them at their next reload).

    Call :meth:`start` once in the event loop that serves requests (it loads the records and
    starts the background reload) and :meth:`close` at shutdown. ``refresh`` 0 reloads before
    every async read (tests; :meth:`lookup` then serves what the last read loaded).

    If a reload fails, the records already held stay in force (a store outage must not make
    every agent unknown) and the next interval retries; with ``max_age`` set, records older than
    that many seconds are no longer served and a lookup raises :class:`RegistryUnavailable`.
    Before the first successful load every lookup raises it: callers fail closed."""

    def __init__(self, store: AgentRegistry, refresh: float = 5.0, *, max_age: float | None = None) -> None:
        if not refresh >= 0:
            raise ValueError("refresh must be a non-negative number of seconds")
        self.store = store
        self.refresh_interval = refresh
        self.max_age = max_age
        self._records: dict[str, AgentRecord] | None = None
        self._generation: int | None = None
        #: ``time.monotonic()`` of the last successful reload.
        self.loaded_at: float | None = None
        #: Reloads attempted and failed so far (for metrics and tests).
        self.refreshes = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        #: agent id -> (the record, its facts as JSON text), filled on first use.
        self._facts: dict[str, tuple[AgentRecord, str]] = {}

    # -- loading --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the records (a failure is logged; lookups raise until a reload succeeds) and
        starts the background reload."""
        await self.refresh()
        if self.refresh_interval > 0 and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._reload_forever(), name="acgs-agent-registry")

    async def _reload_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            await self.refresh()

    async def refresh(self) -> bool:
        """Reloads now if the store changed since the last load; True when memory is current."""
        try:
            generation = await self.store.generation()
            if self._records is None or generation != self._generation:
                records = await self.store.list()
                self._records = {r.agent_id: r for r in records}
                self._generation = generation
            self.loaded_at = time.monotonic()
            return True
        except Exception as exc:
            self.failures += 1
            held = "nothing loaded yet" if self._records is None else f"keeping {len(self._records)} record(s)"
            log.error("agent registry: cannot reload (%s: %s); %s", type(exc).__name__, exc, held)
            return False
        finally:
            self.refreshes += 1

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.store.close()

    # -- the request path ----------------------------------------------------------------------

    def _held(self) -> dict[str, AgentRecord]:
        records = self._records
        if records is None:
            raise RegistryUnavailable("the agent registry has not been readable since start")
        if self.max_age is not None and self.loaded_at is not None and time.monotonic() - self.loaded_at > self.max_age:
            raise RegistryUnavailable(f"the agent registry has not been readable for more than {self.max_age:g} s")
        return records

    def lookup(self, agent_id: str) -> AgentRecord | None:
        """The record of ``agent_id`` (exact id, disabled or not) from memory, or None. Never
        waits; :class:`RegistryUnavailable` when nothing (fresh enough) is held."""
        return self._held().get(agent_id)

    def trusted(self, agent_id: str) -> AgentRecord | None:
        """The record of an agent that may be trusted: None for an unknown or disabled agent."""
        record = self._held().get(agent_id)
        return None if record is None or record.disabled else record

    def facts_json(self, agent_id: str) -> str | None:
        """``trusted(agent_id).facts_json()``, computed once per record version: None for an
        unknown or disabled agent."""
        record = self.trusted(agent_id)
        if record is None:
            return None
        held = self._facts.get(agent_id)
        if held is not None and held[0] is record:
            return held[1]
        if len(self._facts) > 2 * len(self._records or {}) + 64:
            self._facts = {}  # records removed since: drop what they left
        text = record.facts_json()
        self._facts[agent_id] = (record, text)
        return text

    @property
    def size(self) -> int:
        return len(self._records or {})

    # -- AgentRegistry --------------------------------------------------------------------------

    async def _current(self) -> dict[str, AgentRecord]:
        if self._records is None or self.refresh_interval == 0:
            await self.refresh()
        return self._held()

    async def get(self, agent_id: str) -> AgentRecord | None:
        check_agent_id(agent_id)
        return (await self._current()).get(agent_id)

    async def list(self) -> builtins.list[AgentRecord]:
        return sorted((await self._current()).values(), key=lambda r: r.agent_id)

    def _apply(self, agent_id: str, record: AgentRecord | None) -> None:
        if self._records is None:
            return
        records = dict(self._records)
        if record is None:
            records.pop(agent_id, None)
        else:
            records[agent_id] = record
        self._records = records

    async def add(self, record: AgentRecord) -> AgentRecord:
        added = await self.store.add(record)
        self._apply(added.agent_id, added)
        return added

    async def update(self, agent_id: str, change: AgentUpdate) -> AgentRecord:
        updated = await self.store.update(agent_id, change)
        self._apply(agent_id, updated)
        return updated

    async def remove(self, agent_id: str) -> AgentRecord:
        removed = await self.store.remove(agent_id)
        self._apply(agent_id, None)
        return removed

    async def generation(self) -> int:
        return await self.store.generation()
