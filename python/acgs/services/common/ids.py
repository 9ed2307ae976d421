"""Decision ids: UUID-shaped, unique per process by a random prefix and a counter.

``uuid.uuid4()`` costs a few microseconds per call; a decision id needs uniqueness, not
unpredictability, so each process draws 74 random bits once and counts."""

from __future__ import annotations

import itertools
import os


class DecisionIds:
    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        r = int.from_bytes(os.urandom(10), "big")
        a = r >> 48
        b = (r >> 32) & 0xFFFF
        c = 0x4000 | ((r >> 20) & 0x0FFF)  # version 4
        d = 0x8000 | ((r >> 6) & 0x3FFF)  # RFC 4122 variant
        self._prefix = f"{a:08x}-{b:04x}-{c:04x}-{d:04x}-"
        self._counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"
