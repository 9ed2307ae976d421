"""Sealed audit segments archived to a local directory and to an S3-compatible server (moto's,
on loopback, spoken to over HTTP by boto3), each verifiable offline like any export; sealing
resumes where the archive ends and never re-seals."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acgs.audit import verify_export
from acgs.audit.archive import Archiver, ArchiveTarget, LocalArchive, S3Archive, decode_segment
from tests.services.audit_helpers import REPO, VERIFIER_KEY, event, make_log
from tests.services.conftest import free_port


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    try:
        import boto3  # noqa: F401
        from moto import server as server_mod
    except ImportError:
        pytest.fail("boto3 and moto[server] are test dependencies (pyproject's test extra; scripts/setup.sh installs them)")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _seal(url: str, target: ArchiveTarget, counts: list[int], segment: int) -> list[list[str]]:
    async def go() -> list[list[str]]:
        log = make_log(url)
        await log.open()
        try:
            archiver = Archiver(log, target, segment)
            made = []
            n = 0
            for count in counts:
                await log.append([event(i) for i in range(n, n + count)])
                n += count
                made.append(await archiver.seal())
            return made
        finally:
            await log.close()

    result: list[list[str]] = asyncio.run(go())
    return result


def _check(target: ArchiveTarget, names: list[str], segment: int) -> None:
    assert target.names() == names
    for k, name in enumerate(names):
        doc: Any = decode_segment(target.get(name))
        report = verify_export(doc, VERIFIER_KEY)
        assert report.ok, report.problems
        assert (report.start, report.end) == (k * segment, (k + 1) * segment)


def test_local_archive_seals_complete_segments(tmp_path: Path) -> None:
    target = LocalArchive(tmp_path / "archive")
    made = _seal(f"sqlite:///{tmp_path / 'a.sqlite3'}", target, [120, 50, 0, 200], 100)
    assert [len(m) for m in made] == [1, 0, 0, 2]
    names = [n for m in made for n in m]
    _check(target, names, 100)
    # Offline, from the command line, on the gzipped file as archived.
    r = subprocess.run(
        [sys.executable, "-m", "acgs", "audit", "verify-export", str(target.directory / names[1]), "--key", VERIFIER_KEY],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "python")}, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["events"] == 100


def test_s3_archive_against_an_s3_compatible_server(tmp_path: Path, s3_endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="acgs-audit")
    target = S3Archive("acgs-audit", "logs/prod", client=client)
    made = _seal(f"sqlite:///{tmp_path / 'a.sqlite3'}", target, [70, 90], 50)
    names = [n for m in made for n in m]
    assert names == ["segment-000000000000-000000000050.json.gz", "segment-000000000050-000000000100.json.gz",
                     "segment-000000000100-000000000150.json.gz"]  # fmt: skip
    _check(target, names, 50)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="acgs-audit")["Contents"]]
    assert keys == [f"logs/prod/{n}" for n in names]
    # A segment altered in the bucket no longer verifies.
    doc = decode_segment(target.get(names[0]))
    doc["events"][7]["payload"] = doc["events"][7]["payload"].replace("data.read", "data.drop")
    assert not verify_export(doc, VERIFIER_KEY).ok
