"""A client sends a number past a double's range (``1e400``: valid JSON, read exactly by the
policy) to a policy that returns it or computes with it. The policy service must answer (the
number as the evaluator wrote it), not fail with an internal error; a result no parser can read
is a fault that fails closed with its own code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from acgs.cli import cli
from acgs.services.policy import PolicySettings, create_app
from tests.services.conftest import client_for

POLICY = """package acgs.wide

echo := input.n

floored := floor(input.n)

decision := {"allow": true, "n": input.n}

unmarshalled := json.unmarshal(input.s)
"""

ENTRYPOINTS = ["echo", "floored", "decision", "unmarshalled"]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wide")
    (root / "src").mkdir()
    (root / "src" / "policy.rego").write_text(POLICY)
    out = root / "wide.tar.gz"
    args = ["bundle", "build", "--no-test"]
    for ep in ENTRYPOINTS:
        args += ["-e", f"acgs/wide/{ep}"]
    result = CliRunner().invoke(cli, [*args, str(root / "src"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


async def _client(bundle: Path, evaluator: str) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(create_app(PolicySettings(bundle=bundle, evaluator=evaluator))):
        yield c


async def _post(c: httpx.AsyncClient, path: str, body: bytes) -> httpx.Response:
    return await c.post(path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize("evaluator", ["wasm", "plan"])
@pytest.mark.parametrize("n", [b"1e400", b"-1e400", b"123456789012345678901234567890e300", b"1e-400"])
async def test_numbers_past_a_double_are_answered_exactly(bundle: Path, evaluator: str, n: bytes) -> None:
    async for client in _client(bundle, evaluator):
        await _numbers(client, n)


async def _numbers(client: httpx.AsyncClient, n: bytes) -> None:
    r = await _post(client, "/v1/data/acgs/wide/echo", b'{"input": {"n": ' + n + b"}}")
    assert r.status_code == 200, r.text
    assert b'"result":' + n in r.content
    r = await _post(client, "/v1/data/acgs/wide/floored", b'{"input": {"n": ' + n + b"}}")
    assert r.status_code == 200, r.text
    # A decision object carrying the number: allowed, the number in the answer as written.
    r = await _post(client, "/v1/data/acgs/wide/decision", b'{"input": {"n": ' + n + b"}}")
    assert r.status_code == 200, r.text
    assert r.json()["result"]["allow"] is True and b'"n":' + n in r.content
    # A batch of them.
    r = await _post(client, "/v1/batch/data/acgs/wide/echo", b'{"inputs": [{"n": ' + n + b'}, {"n": 1}]}')
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("evaluator", ["wasm", "plan"])
async def test_a_result_too_deep_to_read_fails_closed(bundle: Path, evaluator: str) -> None:
    async for client in _client(bundle, evaluator):
        await _deep(client)


async def _deep(client: httpx.AsyncClient) -> None:
    text = "[" * 1100 + "]" * 1100
    r = await client.post("/v1/data/acgs/wide/unmarshalled", json={"input": {"s": text}})
    # The plan refuses JSON text this deep (a resource error); the Wasm reads it, and the
    # service cannot read the result back: either way a fault with a JSON body, never a crash.
    assert r.status_code in (500, 503), r.text
    assert r.json()["code"] in ("internal_error", "evaluation_error", "resource_limit_exceeded"), r.text
    r = await client.post("/v1/data/acgs/wide/echo", json={"input": {"n": 1}})
    assert r.status_code == 200 and r.json()["result"] == 1
