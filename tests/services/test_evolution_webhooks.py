"""Webhook notifications of the evolution service: a real HTTP receiver on loopback that fails
before it recovers, HMAC signatures checked as a receiver would, order and retries, on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from acgs.config import ConfigError, load_config
from acgs.services.evolution import EvolutionSettings
from acgs.services.evolution.webhooks import sign, verify_signature
from tests.services.test_evolution_service import SEED, database_url, reviewer, run, service, sqlite_url, who

__all__ = ["database_url", "sqlite_url"]  # fixtures shared with the service tests

SECRET = "whsec-test-3f9a"


class Receiver:
    """An HTTP endpoint that answers 503 to its first ``fail_first`` requests, then 204."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.attempts = 0
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.attempts += 1
                    failing = outer.attempts <= outer.fail_first
                    if not failing:
                        outer.accepted.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/evolution"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.accepted]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(fail_first=2) as r:
        yield r


async def _until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for webhook deliveries"
        await asyncio.sleep(0.05)


def test_every_transition_is_notified_signed_in_order_after_failures(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = {"webhook_urls": (receiver.url,), "webhook_secret": SECRET, "relay_interval": 0.05}

    async def scenario() -> None:
        async with service(database_url, tmp_path, settings=settings) as svc:
            created = await svc.submit(SEED)
            rid = created["request_id"]
            await svc.act(rid, "approve", reviewer("rita@example.com"), {"reason": "dependency pinned"})
            await svc.act(rid, "approve", reviewer("sam@example.com"), {"reason": "reviewed the tool"})
            await svc.act(rid, "deploy", who("dev@example.com"), {"note": "10%"})
            await svc.act(rid, "rollback", who("dev@example.com"), {"reason": "error rate up", "attest_manual": True})
            hook = svc.app.state.webhooks[0]
            # The receiver has the last event before the relay has recorded its answer.
            await _until(lambda: len(receiver.accepted) >= 5 and hook.delivered >= 5)
            # The first two attempts were refused (503); the same event was sent again.
            assert receiver.attempts >= 7
            outbox = await svc.events(rid)
            bodies = receiver.bodies()
            assert [b["type"] for b in bodies] == [e["action"] for e in outbox] == [
                "evolution.submit",
                "evolution.approval_recorded",
                "evolution.approve",
                "evolution.deploy",
                "evolution.rollback",
            ]
            assert [b["to_status"] for b in bodies] == ["pending", "pending", "approved", "deployed", "rolled_back"]
            assert all(b["request_id"] == rid and b["decision_id"] == created["decision_id"] for b in bodies)
            sequences = [b["sequence"] for b in bodies]
            assert sequences == sorted(sequences) and len(set(sequences)) == 5
            for headers, body in receiver.accepted:
                assert verify_signature(SECRET, headers["x-acgs-signature"], body)
                assert not verify_signature("another-secret", headers["x-acgs-signature"], body)
                assert not verify_signature(SECRET, headers["x-acgs-signature"], body + b" ")
                assert headers["x-acgs-delivery"] == json.loads(body)["id"]
                assert headers["x-acgs-event"] == json.loads(body)["type"]
            assert hook.delivered == 5 and hook.failures == 2
            assert await svc.store.webhook_cursor(receiver.url) == sequences[-1]

    run(scenario())


def test_a_restarted_service_resumes_from_its_cursor(sqlite_url: str, tmp_path: Path) -> None:
    with Receiver() as receiver:
        settings = {"webhook_urls": (receiver.url,), "webhook_secret": SECRET, "relay_interval": 0.05}

        async def first() -> str:
            async with service(sqlite_url, tmp_path, settings=settings) as svc:
                created = await svc.submit(SEED)
                hook = svc.app.state.webhooks[0]
                # Stop only once the relay has recorded the delivery: stopping between the
                # receiver's answer and the cursor's update is the at-least-once case.
                await _until(lambda: len(receiver.accepted) >= 1 and hook.delivered >= 1)
                return str(created["request_id"])

        async def second(rid: str) -> None:
            async with service(sqlite_url, tmp_path, settings=settings) as svc:
                await svc.act(rid, "cancel", who("dev@example.com"), {"reason": "not needed"})
                hook = svc.app.state.webhooks[0]
                await _until(lambda: len(receiver.accepted) >= 2 and hook.delivered >= 1)
                await asyncio.sleep(0.3)

        rid = asyncio.run(first())
        run(second(rid))
        # Nothing was sent twice across the restart.
        assert [b["type"] for b in receiver.bodies()] == ["evolution.submit", "evolution.cancel"]


def test_signature_checks() -> None:
    body = b'{"id":"x"}'
    now = 1_800_000_000
    header = sign(SECRET, body, now)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(SECRET, header, body, now=now + 10)
    assert not verify_signature(SECRET, header, body, now=now + 301)  # a replay, too late
    assert not verify_signature(SECRET, None, body, now=now)
    assert not verify_signature(SECRET, "v1=abc", body, now=now)
    assert not verify_signature(SECRET, f"t={now},v1=" + "0" * 64, body, now=now)
    # A rotated secret: the receiver accepts any of the listed signatures.
    rotated = header + "," + sign("old-secret", body, now).split(",")[1]
    assert verify_signature("old-secret", rotated, body, now=now)


def test_webhook_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs webhook_secret"):
        EvolutionSettings(webhook_urls=("http://127.0.0.1:9/x",))
    with pytest.raises(ValueError, match="not an http"):
        EvolutionSettings.from_env({"ACGS_EVOLUTION_WEBHOOK_URLS": "ftp://x", "ACGS_EVOLUTION_WEBHOOK_SECRET": "s"})
    config = tmp_path / "acgs.toml"
    config.write_text('[evolution]\nwebhook_urls = ["https://hooks.example/acgs"]\nwebhook_secret = "s3"\n')
    loaded = load_config(config, environ={})
    assert loaded.evolution.webhook_urls == ("https://hooks.example/acgs",)
    assert loaded.public()["evolution"]["webhook_secret"] == "***"
    config.write_text('[evolution]\nwebhook_urls = ["https://hooks.example/acgs"]\n')
    with pytest.raises(ConfigError, match="needs webhook_secret"):
        load_config(config, environ={})
