"""The services' own record of each session's tool decisions: the ``session.history`` the
constitution's session rules read through the policy service (``trusted.session``), so that a
remote agent cannot clear it by sending ``[]`` (see docs/security.md, "Session history").

A session is keyed by its owner (the caller's principal key, as the usage counters count it:
:func:`acgs.trust.owner_key`) and the session id the caller names: two principals naming the
same id never share a history. Each session keeps its last ``history_max`` entries
``{"tool", "outcome", "labels"}``, oldest first; ``settle`` turns a ``require_approval`` entry
into ``approved`` or ``rejected`` once reviewers decide the action request of that decision.

Since the session id is the caller's to choose, each owner's last ``history_max`` calls across
all its sessions, calls that name no session included, are kept too (the principal's history,
``trusted.session.principal_history``): an agent cannot shed what it read by naming a new
session. A call is one entry in both lists, and settling it updates both.

Two backends behind one async interface (:class:`SessionLedger`): :class:`LocalSessionLedger`
(this process: a multi-worker policy service needs Redis for every worker to see every call),
and :class:`RedisSessionLedger` (one list per session and one per owner, one key per decision
id, all expiring when idle). A ledger that cannot be read or written raises
:class:`SessionHistoryUnavailable`; the policy service then denies (fail closed).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

from acgs.errors import AcgsError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "APPROVED",
    "DEFAULT_HISTORY_MAX",
    "DEFAULT_MAX_PRINCIPALS",
    "PENDING",
    "REJECTED",
    "LocalSessionLedger",
    "RedisSessionLedger",
    "SessionHistoryUnavailable",
    "SessionLedger",
    "canonical_tool",
    "history_max_of",
    "open_ledger",
    "trusted_session",
]

log = logging.getLogger("acgs.trust.sessions")

#: History kept when the constitution declares no ``tools.history_max``.
DEFAULT_HISTORY_MAX: Final = 100
#: Sessions kept in process; past this the least recently used is dropped.
DEFAULT_MAX_SESSIONS: Final = 100_000
#: Owners whose calls across sessions are kept in process; past this the least recently used
#: owner's list is dropped.
DEFAULT_MAX_PRINCIPALS: Final = 100_000
#: Sessions of one owner kept in process; past this the owner's least recently used is
#: dropped, so that no caller can push other callers' sessions out by opening many of its own.
DEFAULT_MAX_SESSIONS_PER_OWNER: Final = 10_000
#: Longer session ids are kept as their digest, longer tool names cut: a caller's text never
#: sets how much the record holds.
MAX_SESSION_ID: Final = 128
MAX_TOOL: Final = 256
#: A session (or an owner's list of calls) neither read nor written for this long is forgotten.
DEFAULT_IDLE_SECONDS: Final = 24 * 3600
PENDING, APPROVED, REJECTED = "require_approval", "approved", "rejected"
#: Decision ids longer than this are not ids this service gave: ``settle`` refuses them.
MAX_DECISION_ID: Final = 128


class SessionHistoryUnavailable(AcgsError):
    """The session ledger could not be read or written (Redis down): the decision is a deny."""

    code = "session_history_unavailable"


def canonical_tool(tool: str) -> str:
    """A tool name as the constitution matches it (``lib.action_name``): surrounding ASCII white
    space trimmed, A-Z lowered."""
    trimmed = tool.strip(" \t\r\n")
    return trimmed.translate(_ASCII_LOWER)


_ASCII_LOWER: Final = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def history_max_of(data: object) -> int:
    """The constitution's ``tools.history_max`` (``DEFAULT_HISTORY_MAX`` when it declares none)."""
    try:
        value = data["acgs"]["constitution"]["tools"]["history_max"]  # type: ignore[index]
    except (KeyError, TypeError):
        return DEFAULT_HISTORY_MAX
    return value if type(value) is int and value >= 0 else DEFAULT_HISTORY_MAX


def _entry_json(tool: str, outcome: str, labels: list[str]) -> bytes:
    return orjson.dumps({"tool": tool, "outcome": outcome, "labels": labels})


def _session_name(session_id: str) -> str:
    if len(session_id) <= MAX_SESSION_ID:
        return session_id
    return "sha256:" + hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def _tool_name(tool: str) -> str:
    # The tool-name grammar allows at most 128 characters: a longer name was denied anyway.
    return tool if len(tool) <= MAX_TOOL else tool[:MAX_TOOL] + "..."


class SessionLedger(Protocol):
    """The record of each session's tool decisions, and of each owner's across its sessions, as
    the policy service keeps it."""

    #: Entries kept per session, and per owner (the constitution's ``tools.history_max``).
    history_max: int

    async def history_json(self, owner: str, session_id: str) -> bytes:
        """The session's entries as a JSON array, oldest first (``[]`` for a new session)."""
        ...

    async def histories_json(self, owner: str, session_id: str | None, *, without: str | None = None) -> tuple[bytes, bytes]:
        """The session's entries (``[]`` when ``session_id`` is None) and the owner's last
        ``history_max`` entries across all its sessions, each a JSON array, oldest first, read
        together; the owner's entry of decision ``without`` left out of both."""
        ...

    async def held(self, owner: str, session_id: str | None, decision_id: str) -> tuple[str, str] | None:
        """``(tool, outcome)`` of the entry of ``decision_id`` when it is ``owner``'s, recorded
        in session ``session_id`` (or in none, for None), and still among the owner's last
        ``history_max`` calls; None otherwise."""
        ...

    async def record(
        self, owner: str, session_id: str | None, decision_id: str, tool: str, outcome: str, labels: list[str]
    ) -> None:
        """Appends one decided call to the session (none when ``session_id`` is None) and to the
        owner's list; the oldest entry of each goes once it holds ``history_max``."""
        ...

    async def settle(self, decision_id: str, outcome: str, *, tool: str, owner: str | None = None) -> bool:
        """Sets the outcome (``approved`` or ``rejected``) of the ``require_approval`` entry of
        ``decision_id``, in the session and in the owner's list, when its tool is ``tool``
        (compared in canonical form) and, given ``owner``, it belongs to that owner. Returns
        whether an entry was settled."""
        ...

    async def close(self) -> None: ...


def _check_settle(outcome: str) -> None:
    if outcome not in (APPROVED, REJECTED):
        raise ValueError(f"a session entry settles as {APPROVED!r} or {REJECTED!r}, not {outcome!r}")


def _array(entries: deque[_Entry] | None, without: str | None = None) -> bytes:
    if not entries:
        return b"[]"
    if without is None:
        return b"[" + b",".join([e.json for e in entries]) + b"]"
    return b"[" + b",".join([e.json for e in entries if e.decision_id != without]) + b"]"


class _Entry:
    """One decided call. The same object sits in its session's list and its owner's, so a
    settlement is seen in both; ``held`` counts the lists that still hold it."""

    __slots__ = ("decision_id", "held", "json", "labels", "outcome", "owner", "session", "tool")

    def __init__(
        self, decision_id: str, owner: str, session: tuple[str, str | None] | None, tool: str, outcome: str, labels: list[str]
    ) -> None:
        self.decision_id, self.owner, self.session = decision_id, owner, session
        self.tool, self.outcome, self.labels = tool, outcome, labels
        self.held = 0
        self.json = _entry_json(tool, outcome, labels)


class _Calls:
    """A list of calls: a session's (key ``(owner, session name)``) or an owner's across its
    sessions (key ``(owner, None)``)."""

    __slots__ = ("entries", "key", "touched")

    def __init__(self, key: tuple[str, str | None], limit: int, now: float) -> None:
        self.key = key
        self.entries: deque[_Entry] = deque(maxlen=limit)
        self.touched = now


class LocalSessionLedger:
    """Sessions in this process: at most ``max_sessions`` (least recently used dropped first),
    at most ``max_sessions_per_owner`` of one owner (its own least recently used dropped
    first), each forgotten after ``idle_seconds`` without use; and the calls of at most
    ``max_principals`` owners across their sessions, likewise. Its methods never await, so
    tasks on one event loop see each call whole."""

    def __init__(
        self,
        history_max: int = DEFAULT_HISTORY_MAX,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_sessions_per_owner: int = DEFAULT_MAX_SESSIONS_PER_OWNER,
        max_principals: int = DEFAULT_MAX_PRINCIPALS,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if history_max < 0 or min(max_sessions, max_sessions_per_owner, max_principals) < 1 or idle_seconds <= 0:
            raise ValueError("history_max must be at least 0, the session caps at least 1, idle_seconds above 0")
        self.history_max = history_max
        self.max_sessions = max_sessions
        self.max_sessions_per_owner = max_sessions_per_owner
        self.max_principals = max_principals
        #: Each owner's sessions, least recently used first.
        self._owners: dict[str, OrderedDict[tuple[str, str | None], _Calls]] = {}
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._sessions: OrderedDict[tuple[str, str | None], _Calls] = OrderedDict()
        #: Each owner's calls across its sessions, least recently used owner first.
        self._principals: OrderedDict[str, _Calls] = OrderedDict()
        self._by_decision: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def _live(self, key: tuple[str, str | None], now: float) -> _Calls | None:
        session = self._sessions.get(key)
        if session is None:
            return None
        if now - session.touched > self.idle_seconds:
            self._drop(session)
            return None
        session.touched = now
        self._sessions.move_to_end(key)
        self._owners[key[0]].move_to_end(key)
        return session

    def _live_principal(self, owner: str, now: float) -> _Calls | None:
        calls = self._principals.get(owner)
        if calls is None:
            return None
        if now - calls.touched > self.idle_seconds:
            self._drop_principal(calls)
            return None
        calls.touched = now
        self._principals.move_to_end(owner)
        return calls

    def _release(self, entry: _Entry) -> None:
        """One list no longer holds ``entry``; once none does, it can no longer be settled."""
        entry.held -= 1
        if entry.held <= 0 and self._by_decision.get(entry.decision_id) is entry:
            del self._by_decision[entry.decision_id]

    def _push(self, calls: _Calls, entry: _Entry) -> None:
        entries = calls.entries
        if len(entries) == self.history_max:
            self._release(entries[0])
        entries.append(entry)
        entry.held += 1

    def _drop(self, session: _Calls) -> None:
        self._sessions.pop(session.key, None)
        owned = self._owners.get(session.key[0])
        if owned is not None:
            owned.pop(session.key, None)
            if not owned:
                del self._owners[session.key[0]]
        for entry in session.entries:
            self._release(entry)

    def _drop_principal(self, calls: _Calls) -> None:
        self._principals.pop(calls.key[0], None)
        for entry in calls.entries:
            self._release(entry)

    def _sweep(self, now: float) -> None:
        """Drops idle sessions from the least recently used end, and the oldest past the cap."""
        sessions = self._sessions
        while sessions:
            oldest = next(iter(sessions.values()))
            if len(sessions) < self.max_sessions and now - oldest.touched <= self.idle_seconds:
                break
            self._drop(oldest)

    def _sweep_principals(self, now: float) -> None:
        principals = self._principals
        while principals:
            oldest = next(iter(principals.values()))
            if len(principals) < self.max_principals and now - oldest.touched <= self.idle_seconds:
                break
            self._drop_principal(oldest)

    def history_now(self, owner: str, session_id: str) -> bytes:
        session = self._live((owner, _session_name(session_id)), self._clock())
        return _array(session.entries if session is not None else None)

    def histories_now(self, owner: str, session_id: str | None, *, without: str | None = None) -> tuple[bytes, bytes]:
        now = self._clock()
        session = self._live((owner, _session_name(session_id)), now) if session_id is not None else None
        principal = self._live_principal(owner, now)
        return (
            _array(session.entries if session is not None else None, without),
            _array(principal.entries if principal is not None else None, without),
        )

    def held_now(self, owner: str, session_id: str | None, decision_id: str) -> tuple[str, str] | None:
        entry = self._by_decision.get(decision_id)
        key = None if session_id is None else (owner, _session_name(session_id))
        if entry is None or entry.owner != owner or entry.session != key:
            return None
        # Still within the owner's last history_max calls (and so within its session's).
        principal = self._principals.get(owner)
        if principal is None or self._clock() - principal.touched > self.idle_seconds:
            return None
        if not any(e is entry for e in principal.entries):
            return None
        return entry.tool, entry.outcome

    async def history_json(self, owner: str, session_id: str) -> bytes:
        return self.history_now(owner, session_id)

    async def histories_json(self, owner: str, session_id: str | None, *, without: str | None = None) -> tuple[bytes, bytes]:
        return self.histories_now(owner, session_id, without=without)

    async def held(self, owner: str, session_id: str | None, decision_id: str) -> tuple[str, str] | None:
        return self.held_now(owner, session_id, decision_id)

    def record_now(
        self, owner: str, session_id: str | None, decision_id: str, tool: str, outcome: str, labels: list[str]
    ) -> None:
        if self.history_max == 0:
            return
        now = self._clock()
        key: tuple[str, str | None] | None = None if session_id is None else (owner, _session_name(session_id))
        entry = _Entry(decision_id, owner, key, _tool_name(tool), outcome, list(labels))
        if key is not None:
            session = self._live(key, now)
            if session is None:
                self._sweep(now)
                owned = self._owners.setdefault(owner, OrderedDict())
                if len(owned) >= self.max_sessions_per_owner:
                    self._drop(next(iter(owned.values())))
                    owned = self._owners.setdefault(owner, OrderedDict())
                session = self._sessions[key] = owned[key] = _Calls(key, self.history_max, now)
            self._push(session, entry)
        principal = self._live_principal(owner, now)
        if principal is None:
            self._sweep_principals(now)
            principal = self._principals[owner] = _Calls((owner, None), self.history_max, now)
        self._push(principal, entry)
        self._by_decision[decision_id] = entry

    async def record(
        self, owner: str, session_id: str | None, decision_id: str, tool: str, outcome: str, labels: list[str]
    ) -> None:
        self.record_now(owner, session_id, decision_id, tool, outcome, labels)

    def settle_now(self, decision_id: str, outcome: str, *, tool: str, owner: str | None = None) -> bool:
        _check_settle(outcome)
        entry = self._by_decision.get(decision_id)
        if entry is None:
            return False
        # Lists gone idle are forgotten first (without touching the live ones): an entry only
        # they held is no longer there to settle.
        now = self._clock()
        session = self._sessions.get(entry.session) if entry.session is not None else None
        if session is not None and now - session.touched > self.idle_seconds:
            self._drop(session)
        principal = self._principals.get(entry.owner)
        if principal is not None and now - principal.touched > self.idle_seconds:
            self._drop_principal(principal)
        if self._by_decision.get(decision_id) is not entry:
            return False
        if entry.outcome != PENDING or entry.tool != canonical_tool(tool):
            return False
        if owner is not None and entry.owner != owner:
            return False
        entry.outcome = outcome
        entry.json = _entry_json(entry.tool, outcome, entry.labels)
        return True

    async def settle(self, decision_id: str, outcome: str, *, tool: str, owner: str | None = None) -> bool:
        return self.settle_now(decision_id, outcome, tool=tool, owner=owner)

    async def close(self) -> None:
        self._sessions.clear()
        self._owners.clear()
        self._principals.clear()
        self._by_decision.clear()


# Settles by compare-and-set in every list that holds the entry (KEYS[2..]: its session's and
# its owner's): an item is replaced only if the list still holds it as it was read (a
# concurrent settle, or the entry fallen off the end, leaves nothing to replace there).
_SETTLE = """
local done = 0
for k = 2, #KEYS do
  local items = redis.call('LRANGE', KEYS[k], 0, -1)
  for i, item in ipairs(items) do
    if item == ARGV[1] then
      redis.call('LSET', KEYS[k], i - 1, ARGV[2])
      done = 1
      break
    end
  end
end
if done == 1 then
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
end
return done
"""


def _items_json(items: list[Any], without: str | None = None) -> bytes:
    """The entries of a Redis list (``<decision id>\\t<entry JSON>`` items) as a JSON array,
    less the entry of decision ``without``."""
    if not items:
        return b"[]"
    skip = without.encode() if without is not None else None
    parts = []
    for item in items:
        raw = item.encode() if isinstance(item, str) else bytes(item)
        decision_id, sep, entry = raw.partition(b"\t")
        if not sep:
            raise SessionHistoryUnavailable("the session ledger holds a malformed entry")
        if decision_id != skip:
            parts.append(entry)
    if not parts:
        return b"[]"
    text = b"[" + b",".join(parts) + b"]"
    try:
        entries = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise SessionHistoryUnavailable("the session ledger holds a malformed entry") from None
    if not all(type(e) is dict for e in entries):
        raise SessionHistoryUnavailable("the session ledger holds a malformed entry")
    return text


class RedisSessionLedger:
    """Sessions in Redis, shared by every worker and node: one list per session and one per
    owner (``RPUSH``, ``LTRIM`` to ``history_max``, ``EXPIRE``, both lists in one transaction)
    whose items are ``<decision id>\\t<entry JSON>``, and one key per decision id naming the
    lists that hold it (Redis 7.0 has no expiry per hash field, so a single hash of ids would
    grow without end). All expire after ``idle_seconds`` without a call in the session (or of
    the owner); the number of lists is bounded by Redis's own memory policy. A Redis fault
    raises :class:`SessionHistoryUnavailable`, and for ``retry_after`` seconds after one every
    call raises it without waiting on Redis."""

    def __init__(
        self,
        redis: Redis,
        history_max: int = DEFAULT_HISTORY_MAX,
        *,
        prefix: str = "acgs:session:",
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        retry_after: float = 1.0,
    ) -> None:
        if history_max < 0 or idle_seconds < 1:
            raise ValueError("history_max must be at least 0 and idle_seconds at least 1")
        self._redis = redis
        self.history_max = history_max
        self._prefix = prefix
        self._ttl = int(idle_seconds)
        self._retry_after = retry_after
        self._down_until = 0.0
        self._settle_script: Any = redis.register_script(_SETTLE)
        self.errors = 0

    def _session_key(self, owner: str, session_id: str) -> str:
        # Owner and session id are hashed: a session id is the caller's text, of any length.
        digest = hashlib.sha256(f"{owner}\x00{session_id}".encode("utf-8", "surrogatepass")).hexdigest()[:40]
        return f"{self._prefix}s:{digest}"

    def _principal_key(self, owner: str) -> str:
        digest = hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()[:40]
        return f"{self._prefix}p:{digest}"

    def _decision_key(self, decision_id: str) -> str:
        return f"{self._prefix}d:{decision_id}"

    def _check_up(self) -> None:
        if time.monotonic() < self._down_until:
            raise SessionHistoryUnavailable("the session ledger (Redis) is unavailable")

    def _failed(self, exc: Exception) -> SessionHistoryUnavailable:
        self.errors += 1
        now = time.monotonic()
        if now >= self._down_until:
            log.warning("session ledger: Redis failed (%s); tool decisions are denied for %ss", exc, self._retry_after)
        self._down_until = now + self._retry_after
        return SessionHistoryUnavailable(f"the session ledger (Redis) failed: {type(exc).__name__}")

    async def history_json(self, owner: str, session_id: str) -> bytes:
        self._check_up()
        try:
            items = await self._redis.lrange(self._session_key(owner, session_id), 0, -1)
        except Exception as exc:  # any Redis or connection fault: the decision fails closed
            raise self._failed(exc) from None
        return _items_json(items)

    async def histories_json(self, owner: str, session_id: str | None, *, without: str | None = None) -> tuple[bytes, bytes]:
        self._check_up()
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if session_id is not None:
                    pipe.lrange(self._session_key(owner, session_id), 0, -1)
                pipe.lrange(self._principal_key(owner), 0, -1)
                lists = await pipe.execute()
        except Exception as exc:  # any Redis or connection fault: the decision fails closed
            raise self._failed(exc) from None
        session = _items_json(lists[0], without) if session_id is not None else b"[]"
        return session, _items_json(lists[-1], without)

    async def held(self, owner: str, session_id: str | None, decision_id: str) -> tuple[str, str] | None:
        if not decision_id or len(decision_id) > MAX_DECISION_ID or "\t" in decision_id:
            return None
        self._check_up()
        lists = [self._session_key(owner, session_id)] if session_id is not None else []
        lists.append(self._principal_key(owner))
        try:
            raw = await self._redis.get(self._decision_key(decision_id))
            if raw is None:
                return None
            pointer = orjson.loads(raw)
            if pointer.get("owner") != owner or pointer.get("lists") != lists:
                return None
            item: str = pointer["item"]
            entry = orjson.loads(item.partition("\t")[2])
            tool, outcome = entry["tool"], entry["outcome"]
            # Still among the owner's last history_max calls (and so its session's).
            if await self._redis.lpos(lists[-1], item) is None:
                return None
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return None  # not a pointer this ledger wrote
        except Exception as exc:  # any Redis or connection fault: the decision fails closed
            raise self._failed(exc) from None
        return (tool, outcome) if type(tool) is str and type(outcome) is str else None

    async def record(
        self, owner: str, session_id: str | None, decision_id: str, tool: str, outcome: str, labels: list[str]
    ) -> None:
        if self.history_max == 0:
            return
        self._check_up()
        keys = [self._session_key(owner, session_id)] if session_id is not None else []
        keys.append(self._principal_key(owner))
        item = decision_id.encode() + b"\t" + _entry_json(_tool_name(tool), outcome, list(labels))
        pointer = orjson.dumps({"lists": keys, "owner": owner, "item": item.decode()})
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.rpush(key, item)
                    pipe.ltrim(key, -self.history_max, -1)
                    pipe.expire(key, self._ttl)
                pipe.set(self._decision_key(decision_id), pointer, ex=self._ttl)
                await pipe.execute()
        except Exception as exc:  # any Redis or connection fault: the decision fails closed
            raise self._failed(exc) from None

    async def settle(self, decision_id: str, outcome: str, *, tool: str, owner: str | None = None) -> bool:
        _check_settle(outcome)
        if not decision_id or len(decision_id) > MAX_DECISION_ID or "\t" in decision_id:
            return False
        self._check_up()
        dkey = self._decision_key(decision_id)
        try:
            raw = await self._redis.get(dkey)
            if raw is None:
                return False
            pointer = orjson.loads(raw)
            item: str = pointer["item"]
            lists = pointer["lists"]
            if not lists or not all(type(k) is str and k.startswith(self._prefix) for k in lists):
                return False
            _, _, entry_text = item.partition("\t")
            entry = orjson.loads(entry_text)
            if entry.get("outcome") != PENDING or entry.get("tool") != canonical_tool(tool):
                return False
            if owner is not None and pointer.get("owner") != owner:
                return False
            settled = f"{decision_id}\t" + _entry_json(entry["tool"], outcome, entry.get("labels", [])).decode()
            new_pointer = orjson.dumps({**pointer, "item": settled})
            done = await self._settle_script(keys=[dkey, *lists], args=[item, settled, new_pointer])
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return False  # not a pointer this ledger wrote: nothing to settle
        except Exception as exc:  # any Redis or connection fault
            raise self._failed(exc) from None
        return bool(done)

    async def close(self) -> None:
        await self._redis.aclose()


async def trusted_session(ledger: SessionLedger, owner: str, session_id: str | None, *, without: str | None = None) -> bytes:
    """The ``trusted.session`` member a tool decision is judged on, as JSON: ``id`` (when the
    call names a session), ``history`` (the session's; ``[]`` for a call naming none, a session
    of its own) and ``principal_history`` (the owner's calls across all its sessions), less the
    owner's entry of decision ``without`` (the call's own, when it is decided again). Raises
    :class:`SessionHistoryUnavailable` when the ledger cannot be read."""
    history, principal = await ledger.histories_json(owner, session_id, without=without)
    named = b"" if session_id is None else b'"id":' + orjson.dumps(session_id) + b","
    return b"{" + named + b'"history":' + history + b',"principal_history":' + principal + b"}"


def open_ledger(
    history_max: int = DEFAULT_HISTORY_MAX,
    *,
    redis_url: str | None = None,
    timeout_ms: float = 50.0,
    retry_after: float = 1.0,
    idle_seconds: float = DEFAULT_IDLE_SECONDS,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    max_sessions_per_owner: int = DEFAULT_MAX_SESSIONS_PER_OWNER,
    max_principals: int = DEFAULT_MAX_PRINCIPALS,
) -> SessionLedger:
    """A ledger in Redis when ``redis_url`` is given (the URL the usage counters use), else in
    this process."""
    if redis_url:
        from redis.asyncio import Redis

        seconds = max(timeout_ms, 1.0) / 1000.0
        redis = Redis.from_url(redis_url, socket_timeout=seconds, socket_connect_timeout=seconds)
        return RedisSessionLedger(redis, history_max, idle_seconds=idle_seconds, retry_after=retry_after)
    return LocalSessionLedger(
        history_max,
        max_sessions=max_sessions,
        max_sessions_per_owner=max_sessions_per_owner,
        max_principals=max_principals,
        idle_seconds=idle_seconds,
    )
