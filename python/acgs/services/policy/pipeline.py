"""The decision pipeline behind the policy service, in the seed's order: constitutional-hash
check -> L1 cache -> L2 cache (Redis, optional) -> fast path -> evaluation -> decision, and a
fail-closed deny for every engine fault.

Everything the service asks of the engine goes through :class:`DecisionPipeline`:

- The L1 cache, the fast path and the constitution's decision are the Rust engine's
  (``Engine.load(cache_size=, cache_ttl=)``, ``engine.decide_json``): ``evaluate_json`` and
  ``evaluate_many`` answer from L1 for deterministic bundles.
- L2 (Redis) sits between L1 and evaluation on the constitution's decision path
  (``acgs/main/decision``): ``decide_cached_json`` answers from L1 or the fast path, else the
  L2 entry under ``engine.cache_key`` goes into L1 through ``engine.cache_put``, else
  ``decide_json`` evaluates and the result set is written to L2. Other entrypoints use L1 only:
  the engine has no L1 lookup for them, and asking Redis before an L1 that would have answered
  costs more than most evaluations.
- Other ``.../decision`` entrypoints (bundles other than the constitution) get the same flat
  decision and deny, built here from ``evaluate_json``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any, Final, TypeVar

import orjson

from acgs import Engine
from acgs.cache import L2Cache
from acgs.errors import AcgsError, BundleError, ConstitutionalHashMismatch, EvaluationError, InvalidInputError
from acgs.trust import admit
from acgs.services.common.http import load_wide
from acgs.services.common.ids import DecisionIds

#: The constitution's decision, which the engine's own pipeline (fast path included) serves.
MAIN_DECISION: Final = "acgs/main/decision"
#: Keys ``decide_json`` adds to the policy's decision object.
DECISION_META: Final = ("decision_id", "bundle_digest", "cache_hit", "fast_path", "evaluation_time_ms")

_MAX_CACHED_PATHS: Final = 4096
_T = TypeVar("_T")


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


def _role(segments: tuple[str, ...], rest: tuple[str, ...]) -> Role:
    last = segments[-1]
    if not rest and last == "decision":
        return Role.DECISION
    if last == "allow":
        return Role.ALLOW
    return Role.VALUE


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
    """One loaded bundle (or the fault that kept it from loading) and the L2 cache."""

    def __init__(self, engine: Engine | None, *, load_error: AcgsError | None = None, l2: L2Cache | None = None) -> None:
        self._engine = engine
        self._load_error = load_error or BundleNotLoaded("no policy bundle is loaded")
        self._l2 = l2
        self.l2_counters = L2Counters()
        self._ids = DecisionIds()
        self._targets: dict[str, Target] = {}
        #: Evaluations that may take long run here, off the event loop, in threads of their own:
        #: slow policies queue behind each other, not in front of the process's other work.
        self._workers = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="acgs-eval")
        if engine is None:
            self._entrypoints: frozenset[str] = frozenset()
            self._ordered_entrypoints: list[str] = []
            self._data: Any = {}
            self._digest = ""
            self._revision = ""
            self._hash: str | None = None
            self._cacheable = False
            self._native_decision = False
            self._evaluator: str | None = None
            self._plan_error: str | None = None
            return
        self._ordered_entrypoints = engine.entrypoints
        self._entrypoints = frozenset(self._ordered_entrypoints)
        self._data = engine.data
        self._digest = engine.bundle_digest
        self._revision = engine.revision
        self._hash = engine.constitutional_hash
        # A bundle that calls a builtin of the core's one list (acgs._acgs.NONDETERMINISTIC_BUILTINS:
        # clock, randomness, network) is not cacheable: the engine keeps its results out of L1,
        # and the pipeline keeps them out of L2.
        self._cacheable = engine.cache_stats()["capacity"] > 0 and engine.cacheable
        self._native_decision = MAIN_DECISION in self._entrypoints
        native = engine.native
        self._evaluator = "native" if native is not None and native["enabled"] else engine.evaluator
        plan = engine.plan
        #: Why ``evaluator="auto"`` fell back to the Wasm (the plan's refusal), else None.
        self._plan_error = plan.get("error") if plan is not None else None

    @classmethod
    def load(
        cls,
        bundle: Any,
        *,
        timeout_ms: int | None = None,
        memory_limit: int | None = None,
        cache_size: int = 10_000,
        cache_ttl: float | None = 300.0,
        native: bool = True,
        evaluator: str = "auto",
        l2: L2Cache | None = None,
    ) -> DecisionPipeline:
        """Loads the bundle; a bundle that fails to load gives a pipeline that denies
        everything and reports the fault (the service stays up, unhealthy, and fails closed)."""
        try:
            engine = Engine.load(
                bundle,
                timeout_ms=timeout_ms,
                memory_limit=memory_limit,
                cache_size=cache_size,
                cache_ttl=cache_ttl,
                native=native,
                evaluator=evaluator,  # type: ignore[arg-type]  # checked by the settings and the core
            )
        except AcgsError as exc:
            fault = BundleNotLoaded(f"no policy bundle is loaded: {exc.code}: {exc.message}")
            return cls(None, load_error=fault, l2=l2)
        return cls(engine, l2=l2)

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

    @property
    def native_decision(self) -> bool:
        """Whether ``acgs/main/decision`` goes through the engine's decision pipeline."""
        return self._native_decision

    @property
    def evaluator(self) -> str | None:
        """What evaluates ``acgs/main/decision`` misses: ``native`` (the Rust evaluator of the
        shipped constitution), ``plan`` (the bundle's plan evaluated natively) or ``wasm``; None
        without a bundle."""
        return self._evaluator

    @property
    def plan_error(self) -> str | None:
        """Why the bundle's plan is not used under ``evaluator="auto"``, else None."""
        return self._plan_error

    def cache_stats(self) -> dict[str, int]:
        """The engine's L1, fast-path and native-evaluation counters."""
        if self._engine is None:
            return {
                "hits": 0,
                "misses": 0,
                "evictions": 0,
                "expirations": 0,
                "size": 0,
                "capacity": 0,
                "fast_path": 0,
                "native": 0,
            }
        return self._engine.cache_stats()

    def l1_hits(self) -> int:
        return self.cache_stats()["hits"]

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
        """A request that names a constitutional hash must name the loaded one. Stricter than
        the engine's own check: a bundle that declares no hash rejects every named hash."""
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

    def _engine_or_fault(self) -> Engine:
        if self._engine is None:
            raise self._load_error
        return self._engine

    @staticmethod
    def admit(raw: bytes | None, trusted: bytes | None) -> bytes | None:
        """The input as every evaluator must see it (acgs.trust.admit): the client's own
        ``trusted`` dropped, the service's facts (``trusted``) in its place. Raises
        InvalidInputError for JSON the core cannot read."""
        return None if raw is None else admit(raw, trusted)

    def evaluate(self, entrypoint: str, raw: bytes | None, trusted: bytes | None = None) -> bytes:
        """The result set of one entrypoint for one input (``raw`` JSON bytes, None for no
        input; ``trusted``: the caller's facts), from L1 or evaluation. Raises the engine's
        errors; callers decide how each fails closed. Synchronous: on the event loop, call
        ``evaluate_async``."""
        return self._engine_or_fault().evaluate_json(self.admit(raw, trusted), entrypoint)

    async def evaluate_async(self, entrypoint: str, raw: bytes | None, trusted: bytes | None = None) -> bytes:
        """``evaluate`` for the event loop: an L1 hit answers here, an evaluation (Wasm, bounded
        only by the deadline) runs in a worker thread, so a slow policy never holds up other
        requests, nor the other services of ``acgs serve``."""
        engine = self._engine_or_fault()
        raw = self.admit(raw, trusted)
        cached = engine.evaluate_cached_json(raw, entrypoint)
        if cached is not None:
            return cached
        # The probe counted the L1 miss; the evaluation's own look-up is not counted again.
        return await self.off_loop(partial(engine.evaluate_json, probed=True), raw, entrypoint)

    async def off_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in one of the pipeline's evaluation threads (the engine releases the
        GIL while it evaluates)."""
        return await asyncio.get_running_loop().run_in_executor(self._workers, fn, *args)

    async def evaluate_batch(
        self, entrypoint: str, raws: list[bytes], trusted: list[bytes] | None = None
    ) -> list[bytes | AcgsError]:
        """Many raw JSON inputs for one entrypoint in one ``evaluate_many_json``, which answers
        from L1 and spreads the rest over cores, off the event loop; each input reaches the
        policy with its numbers exactly as spelt, and with its own facts (``trusted[i]``). A
        fault in one input fails only it."""
        if self._engine is None:
            return [self._load_error] * len(raws)
        if not raws:
            return []
        facts: list[bytes | None] = list(trusted) if trusted is not None else [None] * len(raws)
        admitted: list[bytes] = []
        refused: dict[int, AcgsError] = {}
        for i, (raw, t) in enumerate(zip(raws, facts, strict=True)):
            try:
                admitted.append(admit(raw, t))
            except AcgsError as exc:
                refused[i] = exc
                admitted.append(b"null")
        results = await asyncio.to_thread(self._engine.evaluate_many_json, admitted, entrypoint)
        return [refused.get(i, r) for i, r in enumerate(results)]

    def document(self, target: Target, raw: bytes | None, trusted: bytes | None = None) -> Any:
        """A package or the root: the base data under the path merged with the value of every
        entrypoint below it. Rules that are not entrypoints are not in a Wasm bundle, so they
        are absent. Raises engine faults."""
        raw = self.admit(raw, trusted)
        found, base = walk(self._data, target.rest)
        doc: Any = orjson.loads(orjson.dumps(base)) if found and type(base) is dict else {}
        depth = len(target.rest)
        prefix = target.path + "/" if target.path else ""
        for ep in self._ordered_entrypoints:
            if not ep.startswith(prefix):
                continue
            result_set = result_rows(self._engine_or_fault().evaluate_json(raw, ep))
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
        """The decision every fault becomes: never an allow. The same shape as the engine's
        fail-closed decision."""
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
        rows = result_rows(result_set)
        if not rows:
            raise EvaluationError("the decision is undefined for this input", code="undefined_decision")
        decision = rows[0]["result"]
        if type(decision) is not dict or type(decision.get("allow")) is not bool:
            raise EvaluationError("the decision is not an object with a boolean allow", code="malformed_decision")
        return decision

    async def decide(self, entrypoint: str, raw: bytes, value: Any, trusted: bytes | None = None) -> Decided:
        """The seed's flat decision for a request object: the decision's keys plus decision_id,
        bundle_digest, cache_hit, fast_path and evaluation_time_ms, with the HTTP status (200;
        503 when no bundle is loaded). ``trusted``: the caller's facts (acgs.trust), in place
        of whatever the request says under that key. Raises ConstitutionalHashMismatch and
        InvalidInputError (a 400: the request is never evaluated); every engine fault is a deny."""
        self.check_hash(value)
        if entrypoint == MAIN_DECISION and self._native_decision and type(value) is dict:
            return await self._decide_native(raw, trusted)
        raw = admit(raw, trusted)
        engine = self._engine
        if engine is None:
            return self._decide_here(entrypoint, raw)
        hits = engine.cache_stats()["hits"]
        try:
            cached = engine.evaluate_cached_json(raw, entrypoint)
        except AcgsError:
            cached = None  # _decide_here meets the same fault and answers it
        if cached is None:
            # An evaluation (Wasm): off the event loop.
            return await self.off_loop(partial(self._decide_here, probed=True), entrypoint, raw)
        return self._decide_here(entrypoint, raw, cached, cache_hit=engine.cache_stats()["hits"] > hits)

    async def _decide_native(self, raw: bytes, trusted: bytes | None) -> Decided:
        """``acgs/main/decision`` through the engine's pipeline, with L2 between its L1 (and
        fast path) and evaluation. When the native evaluator decides (the shipped constitution),
        L2 is skipped: a Redis round trip costs more than the evaluation it would save, so one
        call does it all (``decide_json`` looks in L1 and the fast path itself; asking
        ``decide_cached_json`` first would parse, admit and hash the input twice on every miss,
        and count the miss twice)."""
        engine = self._engine_or_fault()
        if self._evaluator == "native":
            return self._decided(engine.decide_json(raw, trusted), None, None, raw)
        body = engine.decide_cached_json(raw, trusted)
        l2 = self._l2
        l2_key: bytes | None = None
        admitted = raw
        if body is None and l2 is not None and self._cacheable and l2.available and self._evaluator != "native":
            # L2 holds result sets of the input as admitted (facts in place).
            admitted = admit(raw, trusted)
            l2_key = engine.cache_key(admitted, MAIN_DECISION)
            found = await l2.get(l2_key)
            if found is not None and _valid_result_set(found):
                self.l2_counters.hits += 1
                engine.cache_put(l2_key, found)
                # Read back from L1: the first probe counted this request's look-up.
                body = engine.decide_cached_json(raw, trusted, probed=True)
                l2_key = None
            else:
                self.l2_counters.misses += 1
        if body is None:
            # The plan or the Wasm evaluates: in a worker thread, off the loop.
            body = await self.off_loop(partial(engine.decide_json, probed=True), raw, trusted)
        return self._decided(body, l2_key, l2, admitted)

    def _decided(self, body: bytes, l2_key: bytes | None, l2: L2Cache | None, admitted: bytes) -> Decided:
        """The engine's decision as the service answers it (a fault in it is a deny with its
        error); an evaluation with ``l2_key`` goes into L2 too."""
        decision: dict[str, Any] = load_wide(body)
        error = decision.get("error")
        fault = None
        if type(error) is dict and decision.get("allow") is False:
            fault = AcgsError(str(error.get("message", "")), code=str(error.get("code", "evaluation_error")))
        elif l2_key is not None and l2 is not None and not decision.get("fast_path"):
            # The evaluation just stored its result set in L1; this reads it back for L2.
            engine = self._engine_or_fault()
            l2.put(l2_key, engine.evaluate_json(admitted, MAIN_DECISION, probed=True))
        return Decided(200, decision, fault)

    def _decide_here(
        self, entrypoint: str, raw: bytes, cached: bytes | None = None, *, cache_hit: bool = False, probed: bool = False
    ) -> Decided:
        """Any other decision entrypoint: the same flat answer, built from its result set
        (``cached``: the one L1 or the fast path already gave, and whether L1 did; ``probed``:
        a probe of L1 found nothing and counted the miss)."""
        start = time.perf_counter()
        status = 200
        failed: AcgsError | None = None
        try:
            if cached is None:
                engine = self._engine_or_fault()
                hits = engine.cache_stats()["hits"]
                result_set = engine.evaluate_json(raw, entrypoint, probed=probed)
                cache_hit = engine.cache_stats()["hits"] > hits
            else:
                result_set = cached
            decision = self.decision_of(result_set)
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
        decision["cache_hit"] = cache_hit
        decision["fast_path"] = False
        decision["evaluation_time_ms"] = round((time.perf_counter() - start) * 1000.0, 4)
        return Decided(status, decision, failed)

    async def close(self) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)
        if self._l2 is not None:
            await self._l2.close()


def result_rows(result_set: bytes) -> list[Any]:
    """An evaluator's result set as Python values. Numbers past a double's range (a policy may
    compute or return ``1e400``) are read as ``inf`` here (``load_wide``); responses carry them
    as the evaluator wrote them (``exact_result``). A set no parser can read (nested deeper than
    Python's parsers go) is an evaluation fault, failed closed like any other."""
    try:
        rows = load_wide(result_set)
    except (ValueError, RecursionError) as exc:
        raise EvaluationError(f"the policy's result could not be read: {exc}", code="unreadable_result") from None
    if type(rows) is not list:
        raise EvaluationError("the policy's result is not a result set", code="unreadable_result")
    return rows


def _valid_result_set(raw: bytes) -> bool:
    """Values read back from Redis are checked before they can become a decision (read as
    result sets are read: a number past a double's range is no reason to refuse one)."""
    try:
        rows = result_rows(raw)
    except EvaluationError:
        return False
    return all(type(r) is dict and "result" in r for r in rows)
