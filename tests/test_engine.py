"""The Python API of the engine, on bundles compiled by the pinned OPA."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

import acgs
from acgs import errors

ROOT = Path(__file__).resolve().parent.parent
STRESS = ROOT / "tests" / "fixtures" / "stress.tar.gz"

EXAMPLE = acgs.default_bundle_path().with_name("example.tar.gz")

GOOD = {
    "action": "data.read_public",
    "context": {"environment": {"sandbox_enabled": True}, "agent": {"trust_level": 0.9}},
}


def low_trust(level: float) -> dict[str, object]:
    return {**GOOD, "context": {**GOOD["context"], "agent": {"trust_level": level}}}  # type: ignore[dict-item]


@pytest.fixture(scope="module")
def engine() -> acgs.Engine:
    return acgs.Engine.load(EXAMPLE)


def test_evaluates_the_shipped_bundle(engine: acgs.Engine) -> None:
    assert engine.entrypoints == ["acgs/example/allow", "acgs/example/decision"]
    assert engine.evaluate(GOOD, "acgs/example/allow") is True
    decision = engine.evaluate(low_trust(0.5), "acgs/example/decision")
    assert decision["allow"] is False
    assert decision["reasons"] == ["trust level 0.5 is below the minimum 0.8"]
    assert engine.evaluate(GOOD) is True  # the first entrypoint is the default


def test_evaluate_json_returns_opa_result_sets(engine: acgs.Engine) -> None:
    raw = json.dumps(GOOD).encode()
    assert json.loads(engine.evaluate_json(raw, "acgs/example/allow")) == [{"result": True}]
    stress = acgs.Engine.load(STRESS)
    assert stress.evaluate_json(b'{"name": 1}', "stress/both") == b"[]"
    assert stress.evaluate({"name": 1}, "stress/both") is None
    rego = stress.evaluate_rego(b'{"name": "x"}', "stress/both")
    assert rego.startswith('{{"result": {') and rego.endswith("}}}")
    assert '"set": {1, 2, 3}' in rego and '"upper": "X"' in rego


def test_python_sets_reach_the_policy_as_sets() -> None:
    stress = acgs.Engine.load(STRESS)
    assert stress.evaluate_rego(b'{"s": {1, 2}}', "stress/echo") == '{{"result": {"s": {1, 2}}}}'
    assert stress.evaluate({"s": {3}, "t": frozenset()}, "stress/echo") == {"s": [3], "t": []}


def test_load_from_bytes_and_directory_give_the_same_digest(engine: acgs.Engine, tmp_path: Path) -> None:
    import tarfile

    raw = EXAMPLE.read_bytes()
    from_bytes = acgs.Engine.load(raw)
    with tarfile.open(EXAMPLE) as tar:
        tar.extractall(tmp_path, filter="data")
    from_dir = acgs.Engine.load(tmp_path)
    assert from_bytes.bundle_digest == engine.bundle_digest == from_dir.bundle_digest
    assert len(engine.bundle_digest) == 64


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        (b"not a bundle", "not a bundle"),
        (b"\x1f\x8b\x08\x00garbage", "archive"),
        (b"\x00asm\x01\x00\x00\x00", "export"),
    ],
)
def test_malformed_bundles_raise_bundle_error(source: bytes, needle: str) -> None:
    with pytest.raises(errors.BundleError, match=needle) as info:
        acgs.Engine.load(source)
    assert info.value.code in {"bundle_error", "abi_error"}


def test_missing_file_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(errors.BundleError, match="cannot read"):
        acgs.Engine.load(tmp_path / "nope.tar.gz")


def test_bad_inputs_raise_specific_errors(engine: acgs.Engine) -> None:
    with pytest.raises(errors.InvalidInputError):
        engine.evaluate_json(b"{nope", "acgs/example/allow")
    with pytest.raises(errors.InvalidInputError, match="keys must be strings"):
        engine.evaluate({1: 2})
    with pytest.raises(errors.InvalidInputError, match="non-finite"):
        engine.evaluate({"x": float("nan")})
    with pytest.raises(errors.InvalidInputError, match="type object"):
        engine.evaluate({"x": object()})
    with pytest.raises(errors.UnknownEntrypointError):
        engine.evaluate(GOOD, "no/such/rule")
    deep: object = []
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(errors.InvalidInputError, match="nested"):
        engine.evaluate(deep)
    assert engine.evaluate(GOOD, "acgs/example/allow") is True
    assert isinstance(errors.InvalidInputError("x"), errors.AcgsError)


def test_timeout_and_memory_limit_then_recovery() -> None:
    eng = acgs.Engine.load(STRESS, timeout_ms=50, memory_limit=64 << 20)
    with pytest.raises(errors.EvaluationTimeout) as info:
        eng.evaluate(spin_input(2000), "stress/spin")
    assert info.value.code == "evaluation_timeout"
    assert eng.evaluate(spin_input(10), "stress/spin") == 10
    big = acgs.Engine.load(STRESS, timeout_ms=60_000, memory_limit=32 << 20)
    with pytest.raises(errors.ResourceLimitExceeded):
        big.evaluate({"n": 10**8}, "stress/hog")
    assert big.evaluate({"n": 2}, "stress/hog") == 2


def spin_input(n: int) -> dict[str, object]:
    """stress/spin visits n**3 triples of these items, allocating nothing (deadline only)."""
    return {"items": list(range(n)), "stop": -1}


def test_evaluate_many_matches_sequential(engine: acgs.Engine) -> None:
    inputs = [low_trust(i / 100) for i in range(100)]
    many = engine.evaluate_many(inputs, "acgs/example/allow")
    assert many == [engine.evaluate(i, "acgs/example/allow") for i in inputs]
    assert many.count(True) == 20  # trust 0.80 .. 0.99
    with pytest.raises(errors.InvalidInputError):
        engine.evaluate_many([GOOD, {"x": float("inf")}])


def test_evaluate_async(engine: acgs.Engine) -> None:
    async def main() -> list[object]:
        return await asyncio.gather(*(engine.evaluate_async(GOOD, "acgs/example/allow") for _ in range(8)))

    assert asyncio.run(main()) == [True] * 8


def test_threads_share_one_engine(engine: acgs.Engine) -> None:
    results: list[object] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(200):
            r = engine.evaluate(GOOD, "acgs/example/allow")
            with lock:
                results.append(r)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 800


def test_reload_swaps_bundles(tmp_path: Path) -> None:
    eng = acgs.Engine.load(EXAMPLE)
    first = eng.bundle_digest
    eng.reload(STRESS)
    assert eng.bundle_digest != first
    assert eng.evaluate(1, "stress/echo") == 1
    with pytest.raises(errors.BundleError):
        eng.reload(b"junk")
    assert eng.evaluate(2, "stress/echo") == 2


def test_engine_metadata(engine: acgs.Engine) -> None:
    assert engine.abi_version in {"1.2", "1.3"}
    assert "sprintf" in engine.builtins
    assert engine.data == {"acgs": {"example": {"min_trust": 0.8}}}
    assert "acgs.Engine" in repr(engine)
    assert acgs.__version__
