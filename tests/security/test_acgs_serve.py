"""Through ``acgs serve`` as a user starts it (its defaults: authentication off, loopback, every
service in one process), no client-side change of an action's spelling, a number's format or
the ``trusted`` member turns a deny into an allow, an action the constitution does not know is
never allowed, and the seed example is still allowed at 0.96 (issue 13, done-when 2).

The in-process tests beside this one (test_claims, test_numbers) show each bypass class on the
apps; this one sends the same attacks over real sockets to the real process, on every decision
route (flat, Data API decision, Data API allow, batch)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import acgs
from tests.security.test_numbers import CLIENT_CASES, CONSTITUTION, DECISION
from tests.services.test_serve_all import Stack, stack  # noqa: F401  (a fixture)

ROUTES = ("flat", "data", "allow", "batch")
SPOOF = {"request_count_1m": 0, "agent": {"trust_level": 1}, "principal": {"id": "root", "roles": ["admin"]}}


class Policy:
    """Clients of the running policy service. With authentication off the rate rule counts per
    client address; each client here sends from its own loopback address (127.0.0.2, .3, ...)
    and at most ``PER_ADDRESS`` decisions, so a deny below is the content's, never the rate's."""

    PER_ADDRESS = 90

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent = 0
        self.client = self._open()

    def _open(self) -> httpx.Client:
        n = 2 + self.sent // self.PER_ADDRESS
        assert n < 255
        transport = httpx.HTTPTransport(local_address=f"127.0.0.{n}")
        return httpx.Client(base_url=self.url, timeout=30, transport=transport)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        if self.sent and self.sent % self.PER_ADDRESS == 0:
            self.client.close()
            self.client = self._open()
        self.sent += 1
        return self.client.post(path, **kwargs)


@pytest.fixture(scope="module")
def policy(stack: Stack) -> Iterator[Policy]:  # noqa: F811
    p = Policy(stack.url("policy"))
    try:
        yield p
    finally:
        p.client.close()


def _decide(c: Policy, raw: bytes, how: str) -> bool:
    """Whether the service allows the request ``raw`` (JSON bytes, sent exactly as spelt)."""
    headers = {"Content-Type": "application/json"}
    if how == "flat":
        r = c.post("/v1/data/acgs/main/decision", content=raw, headers=headers)
        assert r.status_code == 200, r.text
        assert not any(x.startswith("rate limit") for x in r.json()["reasons"]), r.text
        return bool(r.json()["allow"])
    if how == "data":
        r = c.post("/v1/data/acgs/main/decision", content=b'{"input":' + raw + b"}", headers=headers)
        assert r.status_code == 200, r.text
        return bool(r.json()["result"]["allow"])
    if how == "allow":
        r = c.post("/v1/data/acgs/main/allow", content=b'{"input":' + raw + b"}", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()["result"] is True
    r = c.post("/v1/batch/data/acgs/main/decision", content=b'{"inputs":[' + raw + b"]}", headers=headers)
    assert r.status_code in (200, 207), r.text
    return bool(r.json()["results"][0]["result"]["allow"])


def _with(**changes: Any) -> dict[str, Any]:
    req: dict[str, Any] = json.loads(json.dumps(acgs.SEED_REQUEST))
    req.update(changes)
    return req


def test_the_seed_is_allowed_at_096(policy: Policy) -> None:
    r = policy.post("/v1/data/acgs/main/decision", json=acgs.SEED_REQUEST)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["allow"] is True and d["compliance_score"] == 0.96, d


@pytest.mark.parametrize("how", ROUTES)
def test_no_spelling_of_a_dangerous_or_unknown_action_is_allowed(policy: Policy, how: str) -> None:
    names = [
        "data.exfiltrate",
        "DATA.EXFILTRATE",
        " data.exfiltrate ",
        "data.exfiltrate\u200b",
        "\uff44ata.exfiltrate",  # fullwidth d: NFKC makes it the dangerous name
        "data\u2024exfiltrate",  # one-dot leader: a confusable dot
        "report.other",  # not in the catalogue
        "",
    ]
    for name in names:
        for trusted in (None, SPOOF):
            req = _with(action=name) if trusted is None else _with(action=name, trusted=trusted)
            assert _decide(policy, json.dumps(req).encode(), how) is False, (name, trusted)


@pytest.mark.parametrize("how", ROUTES)
def test_no_spelling_of_a_number_past_a_limit_is_allowed(policy: Policy, how: str) -> None:
    """Every case of test_numbers that the bundle's Wasm denies is denied by the running service
    too, with and without a spoofed ``trusted`` member."""
    engine = acgs.Engine.load(acgs.default_bundle_path(), cache_size=0, fast_path=False, native=False)
    denied = [raw for raw in CLIENT_CASES if not json.loads(engine.evaluate_json(raw, DECISION))[0]["result"]["allow"]]
    assert len(denied) > 20
    spoof = json.dumps(SPOOF).encode()
    for raw in denied[:: 3 if how != "flat" else 1]:
        assert _decide(policy, raw, how) is False, raw
        spoofed = raw[:-1] + b',"trusted":' + spoof + b"}"
        assert _decide(policy, spoofed, how) is False, spoofed


def test_a_spoofed_count_does_not_escape_the_rate_rule(stack: Stack) -> None:  # noqa: F811
    """From an address of its own: 100 decisions a minute are allowed, the 101st is denied,
    though every request says it made none."""
    limit = CONSTITUTION["rate_limits"]["per_minute"]["decision"]
    spoofed = json.dumps(_with(trusted=SPOOF)).encode()
    transport = httpx.HTTPTransport(local_address="127.0.0.254")
    with httpx.Client(base_url=stack.url("policy"), timeout=30, transport=transport) as c:
        url, headers = "/v1/data/acgs/main/decision", {"Content-Type": "application/json"}
        for i in range(limit):
            r = c.post(url, content=spoofed, headers=headers)
            assert r.status_code == 200 and r.json()["allow"] is True, (i, r.text)
        r = c.post(url, content=spoofed, headers=headers)
        assert r.json()["allow"] is False
        assert f"rate limit exceeded: {limit + 1} requests in 60 s, limit {limit}" in r.json()["reasons"]
