"""The constitution's tool-call decision (`acgs/tools/decision`) through the ACGS Wasm host: the
documented decisions, exact numbers, a catalogue changed as data alone, and the same answers as
OPA itself on thousands of generated tool calls.

The calls are generated as JSON text, so numbers OPA and the host must compare exactly
(`10000.000000000000001`, `1e2`, integers past 2**64) reach both as written.
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import acgs

from .test_bundles import pinned_opa
from .test_constitution import json_equal

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "python" / "acgs" / "bundles" / "constitution.tar.gz"
CONSTITUTION = json.loads((ROOT / "policies" / "acgs" / "constitution" / "data.json").read_text())
HASH = CONSTITUTION["constitutional_hash"]
TOOLS = CONSTITUTION["tools"]
ENTRYPOINT = "acgs/tools/decision"
# More generated calls for a local soak: ACGS_TOOLS_SAMPLES=50000 pytest tests/test_tools_policy.py
SAMPLES = int(os.environ.get("ACGS_TOOLS_SAMPLES", "4000"))
KEYS = {"outcome", "allow", "tool", "known", "risk", "reasons", "labels", "conditions", "approval",
        "constitutional_hash"}


@pytest.fixture(scope="module")
def engine() -> acgs.Engine:
    return acgs.Engine.load(BUNDLE, cache_size=0)


def decide_raw(engine: acgs.Engine, raw: str) -> Any:
    result_set = json.loads(engine.evaluate_json(raw.encode(), ENTRYPOINT))
    assert len(result_set) == 1
    return result_set[0]["result"]


PAYMENT = {"amount": 50, "currency": "EUR", "to_account": "DE89370400440532013000"}


def payment(amount_literal: str) -> str:
    call = {"tool": "payments.transfer", "arguments": {**PAYMENT, "amount": "@"}, "agent_id": "agent-7",
            "agent": {"trust_level": 0.95}}
    return json.dumps(call).replace('"@"', amount_literal)


# ---------------------------------------------------------------------------
# Documented decisions


def test_allowed_call_has_every_key(engine: acgs.Engine) -> None:
    d = engine.evaluate({"tool": "read_file", "arguments": {"path": "/workspace/a.md"}, "agent_id": "a"}, ENTRYPOINT)
    assert set(d) == KEYS
    assert d["outcome"] == "allow" and d["allow"] is True and d["approval"] is None
    assert d["constitutional_hash"] == HASH


def test_session_rule_denies_sending_after_a_secret_was_read(engine: acgs.Engine) -> None:
    history: list[dict[str, Any]] = []
    calls = [("read_secret", {"name": "db/password"}), ("http_get", {"url": "https://api.github.com/x"})]
    outcomes = []
    for tool, arguments in calls:
        d = engine.evaluate({"tool": tool, "arguments": arguments, "agent_id": "agent-7",
                             "agent": {"trust_level": 0.9}, "session": {"id": "s-1", "history": history}},
                            ENTRYPOINT)
        outcomes.append(d["outcome"])
        history.append({"tool": d["tool"], "outcome": d["outcome"], "labels": d["labels"]})
    assert outcomes == ["allow", "deny"]
    assert d["reasons"] == [
        "session rule no_exfiltration_after_secrets: no call that sends data out after a call that read "
        "secrets or private data (earlier call: read_secret)"
    ]


def test_unknown_tools_wait_for_the_default_approval(engine: acgs.Engine) -> None:
    d = engine.evaluate({"tool": "mcp:github/create_issue", "arguments": {}, "agent_id": "a"}, ENTRYPOINT)
    assert d["outcome"] == "require_approval" and d["known"] is False
    assert d["approval"] == TOOLS["default"]["approval"]


@pytest.mark.parametrize(("literal", "outcome"), [
    ("100", "allow"),
    ("1e2", "allow"),
    ("100.000", "allow"),
    ("100.00000000000000000001", "require_approval"),
    ("10000", "require_approval"),
    ("10000.000000000000000001", "deny"),
    (str(1 << 64), "deny"),
    ("0.01", "allow"),
    ("0.00999999999999999999", "deny"),
])
def test_amounts_are_compared_exactly(engine: acgs.Engine, literal: str, outcome: str) -> None:
    assert decide_raw(engine, payment(literal))["outcome"] == outcome


def test_a_catalogue_change_needs_no_opa(tmp_path: Path) -> None:
    """The catalogue is data: a bundle whose data.json gains a tool decides on it at once."""
    out = io.BytesIO()
    with tarfile.open(BUNDLE, "r:gz") as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
        for member in src.getmembers():
            extracted = src.extractfile(member)
            raw = extracted.read() if extracted else b""
            if member.name.lstrip("/") == "data.json":
                data = json.loads(raw)
                data["acgs"]["constitution"]["tools"]["catalogue"]["weather.lookup"] = {
                    "risk": "low", "outcome": "allow", "labels": [],
                    "arguments": {"city": {"required": True, "type": "string", "enum": ["Paris", "Oslo"]}},
                }
                raw = json.dumps(data).encode()
                member.size = len(raw)
            dst.addfile(member, io.BytesIO(raw))
    path = tmp_path / "constitution.tar.gz"
    path.write_bytes(out.getvalue())
    engine = acgs.Engine.load(path)
    call = {"tool": "weather.lookup", "arguments": {"city": "Oslo"}, "agent_id": "a"}
    assert engine.evaluate(call, ENTRYPOINT)["outcome"] == "allow"
    call["arguments"] = {"city": "Rome"}
    assert engine.evaluate(call, ENTRYPOINT)["reasons"] == ["argument city Rome is not one of: Paris, Oslo"]


@pytest.mark.parametrize("raw", ["null", "3", '"read_file"', "[]", '{"tool": {"$ne": 1}}', '{"tool": "x", "arguments": "'
                                 + "a" * 100_000 + '"}', '{"tool": "read_file", "arguments": {"path": ' + "[" * 64
                                 + "]" * 64 + "}}"])
def test_malformed_calls_are_denied_not_errors(engine: acgs.Engine, raw: str) -> None:
    d = decide_raw(engine, raw)
    assert set(d) == KEYS
    assert d["outcome"] == "deny" and d["allow"] is False and d["reasons"]


# ---------------------------------------------------------------------------
# Generated calls: the Wasm build answers exactly as OPA


def pick(rng: random.Random, options: list[Any]) -> Any:
    return options[rng.randrange(len(options))]


class Num:
    """A number written into the JSON text as this literal."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


NUMBERS = ["0", "1", "-1", "0.01", "0.009999999999999999999", "50", "100", "1e2", "100.0000000000000000001",
           "999.5", "1000", "1001", "10000", "10000.000000000000000001", "18446744073709551616", "1e400",
           "-0", "5E-3"]

STRINGS = ["", "x", "/workspace/a.txt", "/workspace/sub/dir/b.md", "/workspace/../etc/passwd", "/etc/shadow",
           "/workspace/.env", "/workspace/app/.git/config", "/workspace/k/id_rsa", "/workspace/x.pem",
           "/workspace-evil/a", "https://api.github.com/repos", "https://en.wikipedia.org/wiki/X",
           "HTTPS://PYPI.ORG/simple", "https://pypi.org:8443/x?y#z", "https://wikipedia.org/", "https://a@pypi.org/",
           "https://evil.io\\@pypi.org/", "http://[::1]/", "https://pypi.org./", "ftp://pypi.org/x", "pypi.org",
           "https://xn--pypi-7ya.org/", "https://pyp\u0131.org/", "bob@example.com", "bob@evil.com",
           "SELECT * FROM t", "delete from t", "cus_abcd1234", "cus_!", "db/password", "../secret", "EUR", "BTC",
           "python", "cobol", "print(1)", "DE89370400440532013000", "sessions", "x" * 200, "\u00e9\u200b\u0000"]


def value(rng: random.Random, spec: dict[str, Any] | None) -> Any:
    roll = rng.random()
    if roll < 0.05:
        return pick(rng, [None, True, [], {}, [1, "a"], {"k": "v"}])
    if roll < 0.25 or spec is None:
        return Num(pick(rng, NUMBERS)) if rng.random() < 0.4 else pick(rng, STRINGS)
    if spec.get("type") == "number":
        return Num(pick(rng, NUMBERS))
    if "enum" in spec and rng.random() < 0.6:
        return pick(rng, spec["enum"])
    return pick(rng, STRINGS)


# Arguments every constraint of the shipped catalogue accepts, for each tool.
GOOD: dict[str, dict[str, Any]] = {
    "read_file": {"path": "/workspace/a.txt"},
    "write_file": {"path": "/workspace/out.md", "content": "x"},
    "read_secret": {"name": "db/password"},
    "crm.lookup_customer": {"customer_id": "cus_abcd1234"},
    "http_get": {"url": "https://en.wikipedia.org/wiki/X"},
    "http_post": {"url": "https://api.github.com/repos", "body": "{}"},
    "send_email": {"to": "bob@example.com", "subject": "hi"},
    "payments.transfer": {"amount": Num("50"), "currency": "EUR", "to_account": "DE89370400440532013000"},
    "run_code": {"language": "python", "code": "print(1)"},
    "db.query": {"sql": "select 1"},
    "db.delete_rows": {"table": "sessions", "where": "expired"},
    "db.drop_table": {"table": "users"},
}
TOOL_NAMES = sorted(TOOLS["catalogue"]) * 4 + [
    "READ_FILE", " http_get\n", "mcp:github/create_issue", "fs/remove", "unknown.tool", "read file",
    "read_file\u200b", "r\u0435ad_file", "a..b", "a/", "", "x" * 129, 7, None, ["read_file"],
]
TRUSTS = ["0", "0.5", "0.8", "0.79999999999999999999", "0.9", "0.95", "1", "1.5", '"high"']
LABELS = ["reads_secrets", "reads_private_data", "sends_data_out", "reads_files", "other"]


def history_entry(rng: random.Random) -> Any:
    if rng.random() < 0.03:
        return pick(rng, [3, "x", None, {"tool": "t", "labels": "reads_secrets"}])
    entry: dict[str, Any] = {"tool": pick(rng, sorted(TOOLS["catalogue"]) + [5]),
                             "outcome": pick(rng, ["allow", "approved", "deny", "require_approval", "pending"])}
    if rng.random() < 0.9:
        entry["labels"] = rng.sample(LABELS, rng.randrange(3))
    return entry


def tool_call(rng: random.Random) -> str:
    """One generated call as JSON text."""
    if rng.random() < 0.02:
        return pick(rng, ["null", "1", '"read_file"', "[{}]", "true"])
    tool = pick(rng, TOOL_NAMES)
    entry = TOOLS["catalogue"].get(tool) if isinstance(tool, str) else None
    arguments: dict[str, Any] = dict(GOOD.get(tool, {})) if isinstance(tool, str) else {}
    for name, spec in (entry or {}).get("arguments", {}).items():
        if rng.random() < 0.25:
            arguments[name] = value(rng, spec)
        elif rng.random() < 0.03:
            arguments.pop(name, None)
    if rng.random() < 0.1:
        arguments[pick(rng, ["extra", "path", "amount"])] = value(rng, None)
    call: dict[str, Any] = {"tool": tool, "arguments": arguments, "agent_id": pick(rng, ["agent-7"] * 30 + ["", 5])}
    if rng.random() < 0.02:
        call["arguments"] = pick(rng, [[], "x", None])
    if rng.random() < 0.02:
        del call["arguments"]
    if rng.random() < 0.02:
        del call["agent_id"]
    if rng.random() < 0.5:
        call["agent"] = {"trust_level": Num(pick(rng, TRUSTS))}
    if rng.random() < 0.4:
        trusted: dict[str, Any] = {}
        if rng.random() < 0.7:
            trusted["agent"] = {"trust_level": Num(pick(rng, TRUSTS))}
        if rng.random() < 0.5:
            trusted["principal"] = {"id": pick(rng, ["agent-7", "ops", 3]),
                                    "roles": pick(rng, [["dba"], ["reviewer"], [], "dba", ["dba", "finance"]])}
        call["trusted"] = pick(rng, [trusted] * 9 + [7])
    if rng.random() < 0.35:
        session: Any = {"id": pick(rng, ["s-1", "s-1", 5])}
        if rng.random() < 0.9:
            n = pick(rng, [0, 1, 2, 3, 5, TOOLS["history_max"], TOOLS["history_max"] + 1])
            session["history"] = [history_entry(rng) for _ in range(n)]
        if rng.random() < 0.03:
            session = pick(rng, ["s-1", [], {"history": {}}])
        call["session"] = session
    if rng.random() < 0.7:
        call["constitutional_hash"] = pick(rng, [HASH] * 20 + ["0000000000000000", 7])
    literals: list[str] = []

    def encode(o: Any) -> Any:
        if isinstance(o, Num):
            literals.append(o.literal)
            return f"@@{len(literals) - 1}@@"
        raise TypeError(type(o))

    text = json.dumps(call, default=encode)
    for i, literal in enumerate(literals):
        text = text.replace(f'"@@{i}@@"', literal, 1)
    return text


def opa_eval_raw(raws: list[str]) -> list[Any]:
    import subprocess

    proc = subprocess.run(
        [str(pinned_opa()), "eval", "--format", "json", "--stdin-input", "--ignore", "*_test.rego",
         "-d", "acgs:" + str(ROOT / "policies" / "acgs"),
         "[d | some x in input; d := data.acgs.tools.decision with input as x]"],
        input="[" + ",".join(raws) + "]", capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result: list[Any] = json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]
    return result


# Reasons of every kind of rule, each of which the generated calls must reach.
FRAGMENTS = ["session rule", "session.history", "forbidden pattern", "is not under any of", ": host ",
             "has a host ACGS does not accept", "needs a caller trust level", "needs a caller with one of the roles",
             "below the minimum", "above the maximum", "is not one of", "does not match the pattern",
             "is not in the tool-name grammar", "is denied by the constitution", "requires approval",
             "which needs approval", "is not in the catalogue", "is required", "must be of type",
             "does not match this constitution", "must be within [0, 1]", "input must be a JSON object"]


def test_wasm_decisions_equal_opa(engine: acgs.Engine) -> None:
    rng = random.Random("acgs-tools")
    raws = [tool_call(rng) for _ in range(SAMPLES)]
    expected = opa_eval_raw(raws)
    outcomes: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    mismatches = []
    for raw, want in zip(raws, expected, strict=True):
        got = decide_raw(engine, raw)
        if not json_equal(got, want):
            mismatches.append(raw)
        outcomes[got["outcome"]] += 1
        seen.update(f for f in FRAGMENTS if any(f in r for r in got["reasons"]))
    assert mismatches == [], f"{len(mismatches)} mismatches, first: {mismatches[0]}"
    # The generator must reach every outcome, or this test proves little.
    assert min(outcomes[o] for o in ("allow", "deny", "require_approval")) > SAMPLES // 50, outcomes
    assert set(seen) == set(FRAGMENTS), set(FRAGMENTS) - set(seen)


def test_glob_shapes_answer_as_glob_match(tmp_path: Path) -> None:
    """tools.rego matches the commonest path-glob shapes with string operations; on generated
    patterns and paths OPA gives the same answers for them as for glob.match."""
    import subprocess

    rng = random.Random("acgs-globs")
    pieces = ["**/", "*", "a", "b", ".env", ".git", "/", "/**", "id_", ".pem", "?", "{a,b}", ",", "\u00e9"]
    literals = ["a", "b", ".env", ".git", "/", "id_", ".pem", "\u00e9", "x.y"]
    patterns = sorted({"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 5))) for _ in range(400)}
                      | {rng.choice(["**/", "**/*"]) + "".join(rng.choice(literals) for _ in range(rng.randrange(1, 3)))
                         + rng.choice(["", "*", "/**"]) for _ in range(200)})
    paths = sorted({"".join(rng.choice(["/", "a", "b", ".env", ".git", "id_", "x.pem", "\u00e9", ","])
                            for _ in range(rng.randrange(0, 7))) for _ in range(200)})
    check = tmp_path / "check.rego"
    check.write_text(
        "package check\n"
        "import data.acgs.tools\n"
        "shaped := [g | some g in input.patterns; tools.glob_shape(g)]\n"
        "matches(g, p) if tools.glob_matches(g, p)\n"
        "else := false\n"
        "pairs := count(input.patterns) * count(input.paths)\n"
        "wrong := [[g, p] | some g in input.patterns; some p in input.paths; "
        "matches(g, p) != glob.match(g, [\"/\"], p)]\n"
    )
    proc = subprocess.run(
        [str(pinned_opa()), "eval", "--format", "json", "--stdin-input", "--ignore", "*_test.rego",
         "-d", "acgs:" + str(ROOT / "policies" / "acgs"), "-d", str(check), "data.check"],
        input=json.dumps({"patterns": patterns, "paths": paths}), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    bindings = json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]
    assert bindings["pairs"] > 50_000
    assert bindings["wrong"] == []
    assert len(bindings["shaped"]) > 50, "the generator must reach the string-operation shapes"
