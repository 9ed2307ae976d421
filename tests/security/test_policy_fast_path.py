"""The policy service's decision fast path answers hostile requests exactly as its FastAPI routes.

``PolicyApp.__call__`` sends decision requests (``POST``/``GET /v1/data/...``, batches, ``POST
/``) straight to the handlers, past FastAPI's routing and middleware stack, doing the site
guard's and the gate's checks itself. That path is what an attacker meets; the FastAPI stack
(site middleware, security middleware, router, the same handlers) is the reference it must not
drift from. Each request below goes, as raw ASGI (no client library normalises the path or
the headers), through both entries of the same app (real constitution bundle, authentication
on, a small body limit), and the two answers must be the same: status, headers, body (decision
ids aside, which differ by construction). The cases: oversized bodies (declared, streamed,
gzip bombs), wrong content types, bad JSON, duplicate keys, numbers spelt every odd way, missing
and wrong credentials, dot segments and encoded separators in the data path."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

import acgs
from acgs.security import SecuritySettings, create_key, open_key_store
from acgs.services.policy import PolicySettings, create_app
from acgs.services.policy.app import PolicyApp

LIMIT = 4096
DECISION = "/v1/data/acgs/main/decision"
SEED: dict[str, Any] = {**acgs.SEED_REQUEST, "action": "data.analyze_private"}
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIMER = re.compile(rb'"evaluation_time_ms":[0-9.eE+-]+')


class Answer:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    def comparable(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """What must match between the two paths: decision ids and timers blanked; the request
        id header (only the fast path's observer adds it here) and the length (the body is
        compared) left out."""
        headers = sorted((k, v) for k, v in self.headers if k not in (b"x-request-id", b"content-length"))
        body = _TIMER.sub(b'"evaluation_time_ms":0', _UUID.sub(b"ID", self.body))
        return self.status, headers, body


async def call(
    asgi: Any,
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    query: bytes = b"",
    chunks: list[bytes] | None = None,
) -> Answer:
    """One raw ASGI request: ``path`` goes into the scope as given (percent-decoded, as a
    server passes it, no dot segments removed); ``chunks`` sends the body in parts."""
    parts = chunks if chunks is not None else [body]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8004),
        "client": ("127.0.0.1", 50123),
        "scheme": "http",
        "root_path": "",
        "method": method,
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": query,
        "headers": [*([] if any(k == b"host" for k, _ in headers or []) else [(b"host", b"127.0.0.1:8004")]), *(headers or [])],
        "state": {},
    }
    pending = list(parts)
    answer = Answer()

    async def receive() -> dict[str, Any]:
        if not pending:
            return {"type": "http.disconnect"}
        part = pending.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    await asgi(scope, receive, send)
    return answer


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PolicyApp, str, str]]:
    """The app (authentication on, cache off so both paths evaluate, a 4 KiB body limit), an
    agent's token and an auditor's (a role the data API refuses)."""
    tmp = tmp_path_factory.mktemp("fast-path")
    security = SecuritySettings(auth=True, data_dir=tmp / "keys", key_refresh=60.0)
    security.validate()

    async def keys() -> tuple[str, str]:
        store = open_key_store(security.resolved_key_store())
        return (await create_key(store, "agent-fast", ["agent"]))[1], (await create_key(store, "auditor-fast", ["auditor"]))[1]

    agent, auditor = asyncio.run(keys())
    app = create_app(PolicySettings(data_dir=tmp, cache_size=0, max_body_bytes=LIMIT), security=security)
    assert isinstance(app, PolicyApp)
    yield app, agent, auditor


async def forget_counts(app: PolicyApp) -> None:
    """Clears the per-minute call counts of the service's trusted facts (in process here)."""
    facts = app.policy.facts
    assert facts is not None
    await facts.counters.close()


def routed(app: PolicyApp) -> Any:
    """The FastAPI entry of the same app: its middleware stack and router, no fast path."""

    async def entry(scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    return entry


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _input(raw_value: bytes) -> bytes:
    """A body whose ``input`` is the seed request with ``raw_value`` spelt verbatim as the
    agent's trust level."""
    body = _json({"input": {**SEED, "context": {**SEED["context"], "agent": {"trust_level": 0.5}}}})
    return body.replace(b'"trust_level":0.5', b'"trust_level":' + raw_value)


JSON = (b"content-type", b"application/json")
GZIP = (b"content-encoding", b"gzip")

#: (name, method, path, body, extra headers, query, chunks); every request but the
#: credential cases carries the agent's token (added by the test).
CASES: list[tuple[str, str, str, bytes, list[tuple[bytes, bytes]], bytes, list[bytes] | None]] = [
    ("valid decision", "POST", DECISION, _json({"input": SEED}), [JSON], b"", None),
    ("valid, pretty and provenance", "POST", DECISION, _json({"input": SEED}), [JSON], b"pretty=true&provenance=1", None),
    ("flat seed body", "POST", DECISION, _json(SEED), [JSON], b"", None),
    ("no body", "POST", DECISION, b"", [JSON], b"", None),
    ("whitespace body", "POST", DECISION, b" \n\t ", [JSON], b"", None),
    # Sizes.
    ("declared over the limit", "POST", DECISION, b"{}", [JSON, (b"content-length", str(LIMIT + 1).encode())], b"", None),
    ("over the limit", "POST", DECISION, _json({"input": {"pad": "x" * LIMIT}}), [JSON], b"", None),
    ("streamed over the limit", "POST", DECISION, b"", [JSON], b"", [b'{"input":"' + b"x" * 3000, b"x" * 3000 + b'"}']),
    ("gzip bomb", "POST", DECISION, gzip.compress(b'{"input":"' + b"0" * 1_000_000 + b'"}'),
     [JSON, GZIP], b"", None),  # fmt: skip
    ("truncated gzip", "POST", DECISION, gzip.compress(_json({"input": SEED}))[:-9], [JSON, GZIP], b"", None),
    ("unknown encoding", "POST", DECISION, _json({"input": SEED}), [JSON, (b"content-encoding", b"br")], b"", None),
    ("malformed content-length", "POST", DECISION, b"{}", [JSON, (b"content-length", b"12abc")], b"", None),
    # Content types.
    ("text/plain", "POST", DECISION, _json({"input": SEED}), [(b"content-type", b"text/plain")], b"", None),
    ("form", "POST", DECISION, b"input=1", [(b"content-type", b"application/x-www-form-urlencoded")], b"", None),
    ("multipart", "POST", DECISION, b"--x--", [(b"content-type", b"multipart/form-data; boundary=x")], b"", None),
    ("no content type", "POST", DECISION, _json({"input": SEED}), [], b"", None),
    ("json with charset", "POST", DECISION, _json({"input": SEED}), [(b"content-type", b"application/json; charset=utf-8")], b"",
     None),
    ("cross-site origin", "POST", DECISION, _json({"input": SEED}), [JSON, (b"origin", b"https://evil.example")], b"", None),
    ("foreign host", "POST", DECISION, _json({"input": SEED}), [JSON, (b"host", b"evil.example")], b"", None),
    # Bad JSON.
    ("truncated JSON", "POST", DECISION, b'{"input": {"action": ', [JSON], b"", None),
    ("array body", "POST", DECISION, b"[1,2]", [JSON], b"", None),
    ("string body", "POST", DECISION, b'"input"', [JSON], b"", None),
    ("trailing garbage", "POST", DECISION, _json({"input": SEED}) + b"}", [JSON], b"", None),
    ("NaN", "POST", DECISION, b'{"input": {"x": NaN}}', [JSON], b"", None),
    ("Infinity", "POST", DECISION, b'{"input": {"x": -Infinity}}', [JSON], b"", None),
    ("invalid UTF-8", "POST", DECISION, b'{"input": {"action": "\xff\xfe"}}', [JSON], b"", None),
    ("lone surrogate", "POST", DECISION, b'{"input": {"action": "\\ud800"}}', [JSON], b"", None),
    ("NUL in a string", "POST", DECISION, b'{"input": {"action": "data.read\\u0000_public"}}', [JSON], b"", None),
    ("deep nesting", "POST", DECISION, b'{"input":' + b"[" * 1500 + b"]" * 1500 + b"}", [JSON], b"", None),
    # Duplicate keys.
    ("duplicate input", "POST", DECISION, b'{"input": {"action": "a"}, "input": ' + _json(SEED) + b"}", [JSON], b"", None),
    ("duplicate inner key", "POST", DECISION, _input(b'0.5, "trust_level": 0.99'), [JSON], b"", None),
    ("duplicate hash", "POST", DECISION, b'{"input": {"constitutional_hash": "x", "constitutional_hash": "y"}}', [JSON], b"",
     None),
    ("wrong constitutional hash", "POST", DECISION, _json({"input": {**SEED, "constitutional_hash": "deadbeef"}}), [JSON], b"",
     None),
    ("hash of the wrong type", "POST", DECISION, _json({"input": {**SEED, "constitutional_hash": 7}}), [JSON], b"", None),
    # Numbers spelt oddly (as the trust level the constitution compares).
    *[
        (f"number {n.decode()}", "POST", DECISION, _input(n), [JSON], b"", None)
        for n in (b"1e400", b"-1e400", b"1e-400", b"-0", b"0.9e0", b"9E-1", b"0.90000000000000000001", b"0.89999999999999999999",
                  b"123456789012345678901234567890", b"01", b"+1", b".5", b"1.", b"0x1", b"1_0", b"true", b'"0.95"', b"null")
    ],  # fmt: skip
    # Credentials.
    ("no credentials", "POST", DECISION, _json({"input": SEED}), [JSON], b"", None),
    ("wrong token", "POST", DECISION, _json({"input": SEED}), [JSON, (b"authorization", b"Bearer acgs_nope")], b"", None),
    ("basic scheme", "POST", DECISION, _json({"input": SEED}), [JSON, (b"authorization", b"Basic YWdlbnQ6eA==")], b"", None),
    ("empty bearer", "POST", DECISION, _json({"input": SEED}), [JSON, (b"authorization", b"Bearer ")], b"", None),
    ("role not allowed", "POST", DECISION, _json({"input": SEED}), [JSON], b"", None),
    # The data path.
    *[
        (f"path {p}", "POST", p, _json({"input": SEED}), [JSON], b"", None)
        for p in ("/v1/data/../health", "/v1/data/acgs/../acgs/main/decision", "/v1/data/acgs/main/decision/../../../metrics",
                  "/v1/data/./acgs/main/decision", "/v1/data//acgs/main/decision", "/v1/data/acgs/main/decision/",
                  "/v1/data/acgs%2Fmain%2Fdecision", "/v1/data/acgs/main/decision/allow", "/v1/data/acgs/main/decision/0",
                  "/v1/data/acgs/constitution", "/v1/data/", "/v1/data/acgs\x00/main/decision", "/v1/data/ác/gs",
                  "/v1/data/" + "a/" * 2000, "/v1/batch/data/../../health")
    ],  # fmt: skip
    ("GET with input", "GET", DECISION, b"", [], b"input=" + _json(SEED).replace(b" ", b"%20"), None),
    ("GET with bad input", "GET", DECISION, b"", [], b"input=%7B%22a%22%3A1%2C%22a%22%3A2%7D", None),
    ("batch", "POST", "/v1/batch/data/acgs/main/decision", _json({"inputs": [SEED, {"constitutional_hash": "x"}]}), [JSON], b"",
     None),
    ("batch, bad shape", "POST", "/v1/batch/data/acgs/main/decision", _json({"inputs": 5}), [JSON], b"", None),
    ("default decision", "POST", "/", _json(SEED), [JSON], b"", None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fast_path_answers_as_the_routes_do(service: tuple[PolicyApp, str, str], case: tuple[Any, ...]) -> None:
    app, agent, auditor = service
    name, method, path, body, headers, query, chunks = case
    headers = list(headers)
    if name == "role not allowed":
        headers.append((b"authorization", f"Bearer {auditor}".encode()))
    elif name not in ("no credentials", "wrong token", "basic scheme", "empty bearer"):
        headers.append((b"authorization", f"Bearer {agent}".encode()))

    async def both() -> tuple[Answer, Answer]:
        # Each path starts from the same per-minute count (the constitution's rate limit reads
        # it, so the second call would otherwise be judged one request later).
        await forget_counts(app)
        via_routes = await call(routed(app), method, path, body, headers, query=query, chunks=chunks)
        await forget_counts(app)
        via_fast = await call(app, method, path, body, headers, query=query, chunks=chunks)
        return via_routes, via_fast

    via_routes, via_fast = asyncio.run(both())
    assert via_fast.comparable() == via_routes.comparable(), (name, via_fast.body[:400], via_routes.body[:400])
    assert via_fast.status in (200, 207, 400, 401, 403, 404, 405, 413, 415, 500, 503), via_fast.status
    if via_fast.status >= 400:
        # Every refusal carries a JSON body saying why.
        assert json.loads(via_fast.body)["message" if b'"message"' in via_fast.body else "code"]
    # The fast path's observer names the request in its answer.
    assert any(k == b"x-request-id" for k, _ in via_fast.headers)


def test_case_list_reaches_every_kind_of_answer(service: tuple[PolicyApp, str, str]) -> None:
    """The differential test is only as good as its cases: they must reach decisions, input
    refusals, size refusals, content-type refusals and credential refusals on the fast path."""
    app, agent, _ = service
    seen: set[int] = set()

    async def run_all() -> None:
        for name, method, path, body, headers, query, chunks in CASES:
            extra = [] if name in ("no credentials", "wrong token", "basic scheme", "empty bearer") else [
                (b"authorization", f"Bearer {agent}".encode())
            ]
            seen.add((await call(app, method, path, body, [*headers, *extra], query=query, chunks=chunks)).status)

    asyncio.run(run_all())
    assert {200, 400, 401, 413, 415} <= seen, seen
