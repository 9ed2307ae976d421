"""A session's record of earlier tool calls, as the guard sends it with every decision
(``session.history``): bounded, oldest first, safe to share between threads and tasks."""

from __future__ import annotations

import collections
import threading
from typing import Any, Final

import orjson

#: History kept when the constitution declares no ``tools.history_max``.
DEFAULT_HISTORY_MAX: Final = 100
#: What each entry's ``outcome`` says of the call.
ALLOW, DENY, APPROVED, REJECTED, PENDING = "allow", "deny", "approved", "rejected", "require_approval"


class HistoryEntry:
    """One call: its fields and, ready to send, its JSON."""

    __slots__ = ("json", "labels", "outcome", "tool")

    def __init__(self, tool: str, outcome: str, labels: list[str]) -> None:
        self.tool, self.outcome, self.labels = tool, outcome, list(labels)
        self.json = orjson.dumps({"tool": tool, "outcome": outcome, "labels": self.labels})


class SessionHistory:
    """The last ``limit`` calls of one session: ``{"tool", "outcome", "labels"}`` each. Every
    method holds a lock for a few list operations and never awaits, so threads and asyncio
    tasks may share one history. The history's JSON is kept up to date as entries come and go,
    so sending it with every decision costs nothing per entry."""

    __slots__ = ("_entries", "_json", "_jsons", "_lock", "limit", "session_id")

    def __init__(self, session_id: str, limit: int = DEFAULT_HISTORY_MAX) -> None:
        if limit < 0:
            raise ValueError("history limit must be at least 0")
        self.session_id = session_id
        self.limit = limit
        self._entries: collections.deque[HistoryEntry] = collections.deque(maxlen=limit)
        # The entries' JSON in the same order: joined in C, without a Python loop per entry.
        self._jsons: collections.deque[bytes] = collections.deque(maxlen=limit)
        self._json = b"[]"
        self._lock = threading.Lock()

    def snapshot(self) -> list[dict[str, Any]]:
        """The entries as the constitution reads them, oldest first (copies)."""
        with self._lock:
            return [{"tool": e.tool, "outcome": e.outcome, "labels": list(e.labels)} for e in self._entries]

    def json(self) -> bytes:
        """The entries as JSON, as the guard sends them (``session.history``)."""
        with self._lock:
            return self._json

    def json_without(self, entry: HistoryEntry) -> bytes:
        """The entries as JSON less ``entry``: the history a call decided again is judged on
        (a call is never its own predecessor)."""
        with self._lock:
            if not any(held is entry for held in self._entries):
                return self._json
            return b"[" + b",".join([j for held, j in zip(self._entries, self._jsons) if held is not entry]) + b"]"

    def holds(self, entry: HistoryEntry) -> bool:
        """Whether ``entry`` is still among the last ``limit`` calls."""
        with self._lock:
            return any(held is entry for held in self._entries)

    def record(self, tool: str, outcome: str, labels: list[str]) -> HistoryEntry:
        """Adds one call; returns its entry (``settle`` changes its outcome later)."""
        entry = HistoryEntry(tool, outcome, labels)
        if self.limit:
            with self._lock:
                # The JSON is edited in place of being joined again: the oldest entry's bytes
                # cut off the front when the history is full, the new one put at the end.
                body = self._json[1:-1]
                if len(self._entries) == self.limit:
                    body = body[len(self._jsons[0]) + 1 :]
                self._json = b"[" + body + b"," + entry.json + b"]" if body else b"[" + entry.json + b"]"
                self._entries.append(entry)
                self._jsons.append(entry.json)
        return entry

    def settle(self, entry: HistoryEntry, outcome: str) -> None:
        """Sets the outcome of an entry recorded while it waited for approval."""
        fresh = HistoryEntry(entry.tool, outcome, entry.labels)
        with self._lock:
            entry.outcome, entry.json = outcome, fresh.json
            for i, held in enumerate(self._entries):
                if held is entry:
                    self._jsons[i] = fresh.json
                    self._json = b"[" + b",".join(self._jsons) + b"]"
                    break

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._jsons.clear()
            self._json = b"[]"

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
