"""The decision pipeline behind the policy service, in the seed's order: constitutional-hash
check -> L1 cache -> L2 cache (Redis, optional) -> evaluation -> decision, and a fail-closed
deny for every engine fault.

Everything the service asks of the engine goes through :class:`DecisionPipeline`. Four pieces
here are STAND-INs for what the Rust engine is growing, each marked below; swapping one in
touches only this module:

- ``LocalDecisionCache`` -> the Rust L1 (``Engine.load(..., cache_size=, cache_ttl=)``,
  ``engine.cache_stats()``): build the pipeline with ``cache_size=0`` and pass the sizes to
  ``Engine.load``; ``cache_stats`` then reads the engine's.
- ``_declared_hash`` -> ``engine.constitutional_hash``.
- ``_l2_key`` -> ``engine.cache_key(raw, entrypoint)``; an L2 hit also goes into the Rust L1
  through ``engine.cache_put(key, result_set)``.
- ``decide`` -> ``engine.decide_json(raw)`` for the constitution's ``acgs/main/decision``
  (hash check, L1, fast path, evaluation and the deny in Rust); this module keeps the L2 lookup
  in front of it and maps ``ConstitutionalHashMismatch`` to HTTP 400 as now.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

import orjson

from acgs import Engine
from acgs.cache import L2Cache
from acgs.errors import AcgsError, BundleError, ConstitutionalHashMismatch, EvaluationError, InvalidInputError
from acgs.services.common.ids import DecisionIds

#: OPA's non-deterministic builtins: a bundle whose Wasm imports one of these is never cached,
#: since the same input can give a different decision.
NONDETERMINISTIC_BUILTINS: Final = frozenset(
    {
        "http.send",
        "io.jwt.decode_verify",
        "net.lookup_ip_addr",
        "opa.runtime",
        "rand.intn",
        "time.now_ns",
        "uuid.rfc4122",
    }
)

_UNSET: Final[Any] = object()
_MAX_CACHED_PATHS: Final = 4096


class BundleNotLoaded(BundleError):
    """The service has no policy bundle (it failed to load); every decision is a deny."""

    code = "bundle_not_loaded"


class Kind(Enum):
    """What a ``/v1/data`` path names in the loaded bundle."""

    #: An entrypoint, or a path inside an entrypoint's value (``rest``).
    ENTRYPOINT = "entrypoint"
    #: A base document: part of the bundle's ``data.json`` with no entrypoint at or below it.
    DATA = "data"
    #: A package (or the root): a prefix of one or more entrypoints, served as the data under it
    #: merged with the value of every entrypoint below it.
    DOCUMENT = "document"
    #: Nothing: answered as OPA answers an undefined document.
    UNDEFINED = "undefined"


class Role(Enum):
    """How a fault on this target fails closed."""

    DECISION = "decision"  # a deny decision object
    ALLOW = "allow"  # false
    VALUE = "value"  # an error: there is no safe value to invent


@dataclass(frozen=True, slots=True)
class Target:
    kind: Kind
    path: str
    entrypoint: str | None = None
    rest: tuple[str, ...] = ()
    role: Role = Role.VALUE


@dataclass(slots=True)
class Evaluation:
    """An OPA result set (``[{"result": ...}]``, ``[]`` when undefined) and where it came from."""

    result_set: bytes
    #: "l1", "l2", or None when evaluated.
    cache: str | None


def outcome_of(value: Any, defined: bool = True) -> str:
    """The ``acgs_decisions_total`` outcome label of a result."""
    if not defined:
        return "undefined"
    if value is True:
        return "allow"
    if value is False:
        return "deny"
    if type(value) is dict:
        allow = value.get("allow")
        if allow is True:
            return "allow"
        if allow is False:
            return "deny"
    return "other"


def walk(value: Any, segments: tuple[str, ...]) -> tuple[bool, Any]:
    """Descend into a JSON value along path segments (integers index arrays, as in OPA)."""
    for seg in segments:
        if type(value) is dict:
            if seg not in value:
                return False, None
            value = value[seg]
        elif type(value) is list and seg.isdigit():
            index = int(seg)
            if index >= len(value):
                return False, None
            value = value[index]
        else:
            return False, None
    return True, value


class LocalDecisionCache:
    """STAND-IN for the Rust L1: an LRU with TTL over (entrypoint, input bytes). The input bytes
    are the exact bytes evaluated, so two inputs that differ anywhere never share an entry."""

    __slots__ = ("_entries", "_ttl", "capacity", "evictions", "hits", "misses")

    def __init__(self, capacity: int, ttl: float) -> None:
        self.capacity = capacity
        self._ttl = ttl
        self._entries: OrderedDict[tuple[str, bytes], tuple[float, bytes]] = OrderedDict()
        self.hits = self.misses = self.evictions = 0

    def get(self, key: tuple[str, bytes]) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry[0] < time.monotonic():
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: tuple[str, bytes], value: bytes) -> None:
        entries = self._entries
        entries[key] = (time.monotonic() + self._ttl, value)
        entries.move_to_end(key)
        if len(entries) > self.capacity:
            entries.popitem(last=False)
            self.evictions += 1

    def clear(self) -> None:
        self._entries.clear()

    def stats(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "size": len(self._entries),
            "capacity": self.capacity,
            "fast_path": 0,
        }


def _role(segments: tuple[str, ...], rest: tuple[str, ...]) -> Role:
    last = segments[-1]
    if not rest and last == "decision":
        return Role.DECISION
    if last == "allow":
        return Role.ALLOW
    return Role.VALUE


def _declared_hash(data: Any) -> str | None:
    """STAND-IN for ``engine.constitutional_hash``: the constitution declares its hash at
    ``data.acgs.constitution.constitutional_hash``."""
    found, value = walk(data, ("acgs", "constitution", "constitutional_hash"))
    return value if found and isinstance(value, str) else None


@dataclass(slots=True)
class Decided:
    """A flat decision, its HTTP status and, when it is a fail-closed deny, the fault."""

    status: int
    decision: dict[str, Any]
    fault: AcgsError | None = None


@dataclass(slots=True)
class L2Counters:
    hits: int = 0
    misses: int = 0


class DecisionPipeline:
    """One loaded bundle (or the fault that kept it from loading) and its caches."""

    def __init__(
        self,
        engine: Engine | None,
        *,
        load_error: AcgsError | None = None,
        cache_size: int = 10_000,
        cache_ttl: float = 300.0,
        l2: L2Cache | None = None,
    ) -> None:
        self._engine = engine
        self._load_error = load_error or BundleNotLoaded("no policy bundle is loaded")
        self._l2 = l2
        self.l2_counters = L2Counters()
        self._ids = DecisionIds()
        self._targets: dict[str, Target] = {}
        self._l1 = LocalDecisionCache(cache_size, cache_ttl)
        if engine is None:
            self._entrypoints: frozenset[str] = frozenset()
            self._ordered_entrypoints: list[str] = []
            self._data: Any = {}
            self._digest = ""
            self._revision = ""
            self._hash: str | None = None
            self._cacheable = False
            return
        self._ordered_entrypoints = engine.entrypoints
        self._entrypoints = frozenset(self._ordered_entrypoints)
        self._data = engine.data
        self._digest = engine.bundle_digest
        self._revision = engine.revision
        self._hash = _declared_hash(self._data)
        self._cacheable = cache_size > 0 and not (NONDETERMINISTIC_BUILTINS & set(engine.builtins))

    @classmethod
    def load(
        cls,
        bundle: Any,
        *,
        timeout_ms: int | None = None,
        memory_limit: int | None = None,
        cache_size: int = 10_000,
        cache_ttl: float = 300.0,
        l2: L2Cache | None = None,
    ) -> DecisionPipeline:
        """Loads the bundle; a bundle that fails to load gives a pipeline that denies
        everything and reports the fault (the service stays up, unhealthy, and fails closed)."""
        try:
            engine = Engine.load(bundle, timeout_ms=timeout_ms, memory_limit=memory_limit)
        except AcgsError as exc:
            fault = BundleNotLoaded(f"no policy bundle is loaded: {exc.code}: {exc.message}")
            return cls(None, load_error=fault, cache_size=cache_size, cache_ttl=cache_ttl, l2=l2)
        return cls(engine, cache_size=cache_size, cache_ttl=cache_ttl, l2=l2)

    # -- what is loaded ---------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def load_error(self) -> AcgsError | None:
        return None if self._engine is not None else self._load_error

    @property
    def bundle_digest(self) -> str:
        return self._digest

    @property
    def revision(self) -> str:
        return self._revision

    @property
    def constitutional_hash(self) -> str | None:
        return self._hash

    @property
    def entrypoints(self) -> list[str]:
        return list(self._ordered_entrypoints)

    @property
    def data(self) -> Any:
        return self._data

    @property
    def l2(self) -> L2Cache | None:
        return self._l2

    def cache_stats(self) -> dict[str, int]:
        return self._l1.stats()

    def next_decision_id(self) -> str:
        return self._ids.next()

    # -- paths ------------------------------------------------------------------------------

    def resolve(self, path: str) -> Target:
        """What a ``/v1/data/<path>`` names. Memoised: the hot path pays one dict lookup."""
        target = self._targets.get(path)
        if target is None:
            target = self._resolve(path)
            if len(self._targets) < _MAX_CACHED_PATHS:
                self._targets[path] = target
        return target

    def _resolve(self, path: str) -> Target:
        segments = tuple(s for s in path.split("/") if s)
        norm = "/".join(segments)
        if self._engine is None and segments:
            # Nothing is known without a bundle: every path is an entrypoint that fails closed.
            return Target(Kind.ENTRYPOINT, norm, norm, (), _role(segments, ()))
        for i in range(len(segments), 0, -1):
            ep = "/".join(segments[:i])
            if ep in self._entrypoints:
                rest = segments[i:]
                return Target(Kind.ENTRYPOINT, norm, ep, rest, _role(segments, rest))
        prefix = norm + "/"
        if not norm or any(ep.startswith(prefix) for ep in self._entrypoints):
            return Target(Kind.DOCUMENT, norm, rest=segments)
        if walk(self._data, segments)[0]:
            return Target(Kind.DATA, norm, rest=segments)
        return Target(Kind.UNDEFINED, norm, rest=segments)

    # -- checks -----------------------------------------------------------------------------

    def check_hash(self, value: Any) -> None:
        """A request that names a constitutional hash must name the loaded one."""
        if type(value) is not dict:
            return
        named = value.get("constitutional_hash")
        if named is None:
            return
        if not isinstance(named, str):
            raise InvalidInputError("constitutional_hash must be a string")
        if named != self._hash:
            if self._hash is None:
                raise ConstitutionalHashMismatch(
                    f"request names constitutional hash {named!r}, but the loaded bundle declares none"
                )
            raise ConstitutionalHashMismatch(
                f"request names constitutional hash {named!r}, the loaded constitution's is {self._hash!r}"
            )

    # -- evaluation -------------------------------------------------------------------------

    def _l2_key(self, entrypoint: str, raw: bytes | None, value: Any) -> bytes:
        """STAND-IN for ``engine.cache_key``: 16 bytes of SHA-256 over the bundle digest, the
        entrypoint and the input with sorted keys (so nodes agree on it)."""
        if raw is None:
            canonical = b""
        else:
            if value is _UNSET:
                value = orjson.loads(raw)
            canonical = b"\x01" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        h = hashlib.sha256(self._digest.encode())
        h.update(b"\x00" + entrypoint.encode() + b"\x00")
        h.update(canonical)
        return h.digest()[:16]

    @staticmethod
    def _valid_result_set(raw: bytes) -> bool:
        """Values read back from Redis are checked before they can become a decision."""
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
        return type(value) is list and all(type(r) is dict and "result" in r for r in value)

    async def evaluate(self, entrypoint: str, raw: bytes | None, value: Any = _UNSET) -> Evaluation:
        """The result set of one entrypoint for one input (``raw`` JSON bytes, None for no
        input). Raises the engine's errors; callers decide how each fails closed."""
        engine = self._engine
        if engine is None:
            raise self._load_error
        key = (entrypoint, raw if raw is not None else b"")
        if self._cacheable:
            hit = self._l1.get(key)
            if hit is not None:
                return Evaluation(hit, "l1")
        l2 = self._l2
        l2_key = b""
        if l2 is not None and self._cacheable:
            l2_key = self._l2_key(entrypoint, raw, value)
            if l2.available:
                found = await l2.get(l2_key)
                if found is not None and self._valid_result_set(found):
                    self.l2_counters.hits += 1
                    self._l1.put(key, found)
                    return Evaluation(found, "l2")
                self.l2_counters.misses += 1
        result_set = engine.evaluate_json(raw, entrypoint)
        if self._cacheable:
            self._l1.put(key, result_set)
            if l2 is not None:
                l2.put(l2_key, result_set)
        return Evaluation(result_set, None)

    async def evaluate_batch(
        self, entrypoint: str, items: list[tuple[bytes, Any]]
    ) -> list[Evaluation | AcgsError]:
        """Many inputs for one entrypoint: cache hits first, then one ``evaluate_many`` for the
        rest, which Rust spreads over cores. A fault in one input fails only that input."""
        engine = self._engine
        if engine is None:
            return [self._load_error] * len(items)
        out: list[Evaluation | AcgsError | None] = [None] * len(items)
        pending: list[int] = []
        for i, (raw, _) in enumerate(items):
            hit = self._l1.get((entrypoint, raw)) if self._cacheable else None
            if hit is not None:
                out[i] = Evaluation(hit, "l1")
            else:
                pending.append(i)
        l2 = self._l2
        l2_keys: dict[int, bytes] = {}
        if l2 is not None and self._cacheable and pending:
            l2_keys = {i: self._l2_key(entrypoint, items[i][0], items[i][1]) for i in pending}
            if l2.available:
                found = await l2.get_many([l2_keys[i] for i in pending])
                still: list[int] = []
                for i, value in zip(pending, found, strict=True):
                    if value is not None and self._valid_result_set(value):
                        self.l2_counters.hits += 1
                        self._l1.put((entrypoint, items[i][0]), value)
                        out[i] = Evaluation(value, "l2")
                    else:
                        self.l2_counters.misses += 1
                        still.append(i)
                pending = still
        if pending:
            fresh = await asyncio.to_thread(self._evaluate_many, engine, entrypoint, [items[i] for i in pending])
            for i, result in zip(pending, fresh, strict=True):
                out[i] = result
                if isinstance(result, Evaluation) and self._cacheable:
                    self._l1.put((entrypoint, items[i][0]), result.result_set)
                    if l2 is not None:
                        l2.put(l2_keys[i], result.result_set)
        return [r if r is not None else InvalidInputError("not evaluated") for r in out]

    @staticmethod
    def _evaluate_many(engine: Engine, entrypoint: str, items: list[tuple[bytes, Any]]) -> list[Evaluation | AcgsError]:
        try:
            values = engine.evaluate_many([value for _, value in items], entrypoint)
        except AcgsError:
            # One input failed the whole call; evaluate each so only the faulty ones fail.
            return [DecisionPipeline._evaluate_one(engine, entrypoint, raw) for raw, _ in items]
        results: list[Evaluation | AcgsError] = []
        for (raw, _), value in zip(items, values, strict=True):
            if value is None:
                # evaluate_many gives None for both "undefined" and a rule whose value is
                # null; the result set tells them apart.
                results.append(DecisionPipeline._evaluate_one(engine, entrypoint, raw))
            else:
                results.append(Evaluation(orjson.dumps([{"result": value}]), None))
        return results

    @staticmethod
    def _evaluate_one(engine: Engine, entrypoint: str, raw: bytes) -> Evaluation | AcgsError:
        try:
            return Evaluation(engine.evaluate_json(raw, entrypoint), None)
        except AcgsError as exc:
            return exc

    async def document(self, target: Target, raw: bytes | None, value: Any = _UNSET) -> Any:
        """A package or the root: the base data under the path merged with the value of every
        entrypoint below it. Rules that are not entrypoints are not in a Wasm bundle, so they
        are absent. Raises engine faults."""
        found, base = walk(self._data, target.rest)
        doc: Any = orjson.loads(orjson.dumps(base)) if found and type(base) is dict else {}
        depth = len(target.rest)
        prefix = target.path + "/" if target.path else ""
        for ep in self._ordered_entrypoints:
            if not ep.startswith(prefix):
                continue
            result_set = orjson.loads((await self.evaluate(ep, raw, value)).result_set)
            if not result_set:
                continue
            node = doc
            segments = ep.split("/")[depth:]
            for seg in segments[:-1]:
                child = node.get(seg)
                if type(child) is not dict:
                    child = node[seg] = {}
                node = child
            node[segments[-1]] = result_set[0]["result"]
        return doc

    # -- decisions --------------------------------------------------------------------------

    def deny(self, fault: AcgsError) -> dict[str, Any]:
        """The decision every fault becomes: never an allow. The same shape as the Rust
        engine's fail-closed decision."""
        return {
            "allow": False,
            "compliance_score": 0.0,
            "constitutional_hash": self._hash,
            "reasons": [f"denied because the decision could not be made: {fault.message}"],
            "conditions": [],
            "evaluation_details": {},
            "error": {"code": fault.code, "message": fault.message},
        }

    @staticmethod
    def decision_of(result_set: bytes) -> dict[str, Any]:
        """The decision object in a result set; undefined or malformed is an EvaluationError."""
        rows = orjson.loads(result_set)
        if not rows:
            raise EvaluationError("the decision is undefined for this input", code="undefined_decision")
        decision = rows[0]["result"]
        if type(decision) is not dict or type(decision.get("allow")) is not bool:
            raise EvaluationError("the decision is not an object with a boolean allow", code="malformed_decision")
        return decision

    async def decide(self, entrypoint: str, raw: bytes, value: Any = _UNSET) -> Decided:
        """The seed's flat decision for a bare request: the decision's keys plus decision_id,
        bundle_digest, cache_hit, fast_path and evaluation_time_ms, with the HTTP status (200; 503 when no
        bundle is loaded). Raises ConstitutionalHashMismatch and InvalidInputError (a 400: the
        request is never evaluated); every engine fault is a deny.

        STAND-IN for ``engine.decide_json`` (see the module docstring)."""
        start = time.perf_counter()
        if value is _UNSET:
            value = orjson.loads(raw)
        self.check_hash(value)
        status = 200
        cache: str | None = None
        failed: AcgsError | None = None
        try:
            evaluation = await self.evaluate(entrypoint, raw, value)
            cache = evaluation.cache
            decision = self.decision_of(evaluation.result_set)
        except InvalidInputError:
            raise
        except AcgsError as fault:
            failed, decision = fault, self.deny(fault)
            if isinstance(fault, BundleNotLoaded):
                status = 503
        if "constitutional_hash" not in decision:
            decision["constitutional_hash"] = self._hash
        decision["decision_id"] = self._ids.next()
        decision["bundle_digest"] = self._digest
        decision["cache_hit"] = cache is not None
        decision["fast_path"] = False
        decision["evaluation_time_ms"] = round((time.perf_counter() - start) * 1000.0, 4)
        return Decided(status, decision, failed)

    async def close(self) -> None:
        if self._l2 is not None:
            await self._l2.close()
