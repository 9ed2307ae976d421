"""The native evaluator (Rust) of the constitution's ``acgs/main/decision`` against the same
bundle's Wasm, on 100,000 generated requests: every decision the native evaluator makes must
equal the Wasm's as a JSON value (numbers compared by type and value, so ``1`` and ``1.0``
differ). The generator varies every field main.rego reads, writes numbers in several literal
forms (``0.90``, ``9E-1``, long fractions), and uses values that land on the rounding
boundaries of the scores."""

from __future__ import annotations

import json
import os
import random
import re
from typing import Any

import pytest

import acgs
from acgs.errors import ConstitutionalHashMismatch, InvalidInputError
from acgs.trust import admit
from tests.test_constitution import BUNDLE, CONSTITUTION, SEED, main_request, put

REQUESTS = int(os.environ.get("ACGS_DIFFERENTIAL_REQUESTS", "100000"))
META = {"decision_id", "bundle_digest", "cache_hit", "fast_path", "evaluation_time_ms"}
ENTRYPOINT = "acgs/main/decision"
# A number token as json.dumps writes it after ": ", "[" or ", " (never inside the generator's
# strings, which hold no such sequence).
NUMBER = re.compile(r"(?<=[:\[,] )-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _respell(rng: random.Random, token: str) -> str:
    """The same number written another way, or left alone."""
    roll = rng.random()
    if roll < 0.5:
        return token
    if roll < 0.65:
        return token + ("0" * rng.randint(1, 3) if "." in token and "e" not in token.lower() else "")
    if roll < 0.8 and "e" not in token.lower():
        mantissa = token.replace("-", "").replace(".", "").lstrip("0") or "0"
        places = len(token.split(".")[1]) if "." in token else 0
        sign = "-" if token.startswith("-") else ""
        return f"{sign}{mantissa}E-{places}" if places else f"{sign}{mantissa}e0"
    if roll < 0.9 and "." in token and "e" not in token.lower():
        return token + "0000000000000000000000001"  # 30-odd digits: exact in both evaluators
    return token


def _boundary(rng: random.Random) -> Any:
    """Values whose scores land on (or next to) a rounding boundary of round_score."""
    return pick_number(rng, [rng.randrange(0, 100_001) / 100_000, rng.randrange(0, 20_001) / 20_000, rng.random()])


def pick_number(rng: random.Random, options: list[Any]) -> Any:
    return options[rng.randrange(len(options))]


def native_request(rng: random.Random) -> Any:
    req = main_request(rng)
    if not isinstance(req, dict):
        return req
    roll = rng.random()
    if roll < 0.35:
        put(req, ["context", "benefit_assessment"], _boundary(rng))
        put(req, ["context", "harm_risk_assessment"], _boundary(rng) / 4)
    if rng.random() < 0.2:
        put(req, ["context", "fairness_assessment"], _boundary(rng))
    if rng.random() < 0.15:
        put(req, ["context", "agent", "trust_level"], _boundary(rng))
    if rng.random() < 0.2:
        limits = CONSTITUTION["resource_limits"]
        put(
            req,
            ["context", "agent", "requested_resources"],
            {k: round(rng.uniform(0, 3 * v), rng.randint(0, 6)) for k, v in limits.items() if rng.random() < 0.5},
        )
    if rng.random() < 0.05:
        put(req, ["context", "explanation"], "é" * rng.randint(45, 55))
    if rng.random() < 0.05:
        put(req, ["trusted"], {"request_count_1m": rng.choice([99, 100, 101, 100.5, 1e3])})
    return req


def test_native_evaluation_equals_the_wasm() -> None:
    native = acgs.Engine.load(BUNDLE, cache_size=0, fast_path=False)
    wasm = acgs.Engine.load(BUNDLE, cache_size=0, fast_path=False, native=False)
    assert native.native == {"enabled": True, "error": None}, native.native
    assert wasm.native is None
    declared = CONSTITUTION["constitutional_hash"]

    rng = random.Random("acgs-native-evaluator")
    counts = {"decided": 0, "allowed": 0, "refused": 0, "respelled": 0}
    mismatches: list[tuple[bytes, Any, Any]] = []
    for _ in range(REQUESTS):
        request = native_request(rng)
        raw = json.dumps(request)
        if rng.random() < 0.4:
            respelled = NUMBER.sub(lambda m: _respell(rng, m.group(0)), raw)
            counts["respelled"] += respelled != raw
            raw = respelled
        data = raw.encode()
        # decide drops the request's own "trusted" and takes the caller's facts instead; the
        # Wasm is asked about the input as admitted (acgs.trust.admit).
        trusted = request.get("trusted") if isinstance(request, dict) else None
        facts = json.dumps(trusted).encode() if isinstance(trusted, dict) and rng.random() < 0.7 else None
        try:
            got = json.loads(native.decide_json(data, trusted=facts))
        except (ConstitutionalHashMismatch, InvalidInputError):
            h = request.get("constitutional_hash") if isinstance(request, dict) else None
            assert not isinstance(request, dict) or (h is not None and h != declared), raw
            counts["refused"] += 1
            continue
        want = json.loads(wasm.evaluate_json(admit(data, facts), ENTRYPOINT))[0]["result"]
        got = {k: v for k, v in got.items() if k not in META}
        counts["decided"] += 1
        counts["allowed"] += got["allow"] is True
        if got != want:
            mismatches.append((data, got, want))
        if counts["decided"] % 10 == 0:
            # acgs/main/allow (decision.allow) answered natively as well.
            allow = native.evaluate_json(data, "acgs/main/allow")
            if allow != wasm.evaluate_json(data, "acgs/main/allow"):
                mismatches.append((data, allow, want["allow"]))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[0]}"
    # Most decisions were the native evaluator's own (the rest it left to the Wasm), and the
    # generator reached allows, denies and refusals.
    assert native.cache_stats()["native"] > counts["decided"] * 1.05, (native.cache_stats(), counts)
    assert counts["allowed"] > REQUESTS // 50 and counts["decided"] - counts["allowed"] > REQUESTS // 2, counts
    assert counts["refused"] > REQUESTS // 100 and counts["respelled"] > REQUESTS // 10, counts


def test_native_decision_for_the_seed_and_the_100_mbps_example() -> None:
    native = acgs.Engine.load(BUNDLE, cache_size=0, fast_path=False)
    seed = native.decide(SEED)
    assert (seed["allow"], seed["compliance_score"]) == (True, 0.96)
    over = json.loads(json.dumps(SEED))
    put(over, ["context", "agent", "requested_resources", "network_mbps"], 100)
    denied = native.decide(over)
    assert denied["allow"] is False
    assert "requested resource network_mbps 100 exceeds the limit 10" in denied["reasons"]
    assert native.cache_stats()["native"] == 2


@pytest.mark.parametrize(
    "raw",
    [
        b'{"constitutional_hash": "cdd01ef066bc6cf2", "action": "data.read_public", "context": {"agent": {"trust_level": 1e99999}}}',
        b'{"constitutional_hash": "cdd01ef066bc6cf2", "action": "data.read_public", "context": {"agent": {"trust_level": 0.1234567890123456789012345678901234567890}}}',
    ],
)
def test_numbers_beyond_the_native_range_go_to_the_wasm(raw: bytes) -> None:
    native = acgs.Engine.load(BUNDLE, cache_size=0, fast_path=False)
    wasm = acgs.Engine.load(BUNDLE, cache_size=0, fast_path=False, native=False)
    got = {k: v for k, v in json.loads(native.decide_json(raw)).items() if k not in META}
    assert got == json.loads(wasm.evaluate_json(raw, ENTRYPOINT))[0]["result"]
    assert native.cache_stats()["native"] == 0
