"""The sandbox cannot reach the control plane: from inside real runs (bwrap and gVisor, network
on and off), every connection to the host is refused — a TCP listener on 127.0.0.1, a live
ACGS service (the sandbox controller's own API under uvicorn, bound to all addresses) through
loopback and through the host's own non-loopback address, slirp4netns's host gateway, the
host's abstract Unix socket, and the metadata address. With network on, user-mode networking
is really up (the run's own tap0 and resolver), and the refusals are the egress filter's
(EHOSTUNREACH at once), not an accident of the machine.

Before the run had a namespace of its own, a networked run shared the host's: each target on
loopback, the host address and the abstract socket was reached (the first tests here failed).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from acgs.services.sandbox import SandboxService, create_app
from acgs.services.sandbox.runtimes import network
from tests.services.procs import wait_until
from tests.services.sandbox_fixtures import (  # noqa: F401 (fixtures)
    client,
    execute,
    leftovers,
    require_runtime,
    sandbox_service,
    skip_or_fail,
)

RUNTIMES = ["bwrap", "gvisor"]

#: Tries every target of argv's JSON and prints what happened to each: "connected" (the
#: host was reached) or the errno name. Plus what the run sees of its own network.
PROBE = r"""
import errno, json, socket, sys
targets = json.loads(sys.stdin.read())
out = {}
for name, t in targets.items():
    try:
        if t["kind"] == "tcp":
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(3)
            s.connect((t["host"], t["port"]))
            if t.get("http"):
                s.sendall(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
                out[name] = "connected: " + s.recv(64).decode(errors="replace")
            else:
                out[name] = "connected"
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(3)
            s.connect("\0" + t["name"])
            out[name] = "connected"
        s.close()
    except socket.timeout:
        out[name] = "ETIMEDOUT"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
ifaces = sorted(n for _, n in socket.if_nameindex())
dns = None
if "tap0" in ifaces:
    # Any answer from the run's resolver (slirp4netns's forwarder) shows the stack is up.
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(5)
    try:
        u.sendto(q, ("10.0.2.3", 53))
        dns = len(u.recv(512))
    except OSError as e:
        dns = errno.errorcode.get(e.errno, "timeout")
print(json.dumps({"targets": out, "interfaces": ifaces, "dns": dns}))
"""


class HostTargets:
    """Listeners the test opens on the host: what a run must never reach."""

    def __init__(self, service: SandboxService) -> None:
        self.token = secrets.token_hex(6)
        self.loopback = socket.create_server(("127.0.0.1", 0))
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind(f"\0acgs-test-{self.token}")
        self.abstract.listen()
        # A real ACGS service: the sandbox controller's own API, bound to every address.
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            self.api_port = s.getsockname()[1]
        config = uvicorn.Config(
            create_app(service.settings, service=service), host="0.0.0.0", port=self.api_port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, what="uvicorn", timeout=15, runner=self.thread, interval=0.02)
        own = [n for n in network.host_networks() if n.prefixlen == 32 and not n.network_address.is_loopback]
        self.host_address = str(own[0].network_address) if own else None

    def targets(self) -> dict[str, dict[str, Any]]:
        port = self.loopback.getsockname()[1]
        t: dict[str, dict[str, Any]] = {
            "loopback listener": {"kind": "tcp", "host": "127.0.0.1", "port": port},
            "ACGS API on loopback": {"kind": "tcp", "host": "127.0.0.1", "port": self.api_port, "http": True},
            "slirp gateway to host loopback": {"kind": "tcp", "host": "10.0.2.2", "port": self.api_port, "http": True},
            "host abstract socket": {"kind": "unix", "name": f"acgs-test-{self.token}"},
            "metadata address": {"kind": "tcp", "host": "169.254.169.254", "port": 80},
            "private range": {"kind": "tcp", "host": "192.168.1.1", "port": 80},
        }
        for p in (8001, 8002, 8003, 8004):
            t[f"ACGS port {p}"] = {"kind": "tcp", "host": "127.0.0.1", "port": p}
        if self.host_address is not None:
            t["ACGS API on the host's address"] = {"kind": "tcp", "host": self.host_address, "port": self.api_port, "http": True}
        return t

    def nothing_accepted(self) -> list[str]:
        """Connections that reached the plain listeners (the API's would show in its access)."""
        got = []
        for name, s in (("loopback", self.loopback), ("abstract", self.abstract)):
            s.setblocking(False)
            try:
                conn, _ = s.accept()
                conn.close()
                got.append(name)
            except BlockingIOError:
                pass
        return got

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.loopback.close()
        self.abstract.close()


@pytest.fixture(scope="module")
def host_targets(sandbox_service: SandboxService) -> Iterator[HostTargets]:
    t = HostTargets(sandbox_service)
    try:
        yield t
    finally:
        t.close()


def _host_resolver_answers() -> bool:
    """Whether this host's own resolver answers at all (the run's forwards to it)."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
        server = next(line.split()[1] for line in lines if line.startswith("nameserver"))
    except (OSError, StopIteration, IndexError):
        return False
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
    try:
        with socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(3)
            u.sendto(q, (server, 53))
            return len(u.recv(512)) > 0
    except OSError:
        return False


def _probe(client: TestClient, runtime: str, net: bool, targets: dict[str, Any]) -> dict[str, Any]:
    out = execute(
        client,
        PROBE,
        runtime=runtime,
        stdin=json.dumps(targets),
        limits={"network": net, "timeout_s": 60, "cpu_seconds": 30},
    )
    assert out["status"] == "completed" and out["exit_code"] == 0, out
    assert out["limits"]["network"] is net
    report: dict[str, Any] = json.loads(out["stdout"])
    return report


@pytest.mark.parametrize("net", [False, True], ids=["network-off", "network-on"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_run_reaches_nothing_of_the_host(
    client: TestClient, sandbox_service: SandboxService, host_targets: HostTargets, runtime: str, net: bool
) -> None:
    require_runtime(sandbox_service, runtime)
    if net and network.tools_problem() is not None:
        skip_or_fail(network.tools_problem() or "")
    # The host itself reaches its API (so a refusal from inside means something).
    with socket.create_connection(("127.0.0.1", host_targets.api_port), timeout=5):
        pass
    report = _probe(client, runtime, net, host_targets.targets())
    reached = {name: r for name, r in report["targets"].items() if r.startswith("connected")}
    assert reached == {}, f"{runtime} run with network={net} reached the host: {reached}"
    assert host_targets.nothing_accepted() == []
    if not net:
        assert report["interfaces"] == ["lo"], report
        return
    # User-mode networking is up: the run's own interface, and its resolver answers
    # whenever the host's does (the machine may have no internet; that is not asked).
    assert "tap0" in report["interfaces"], report
    if _host_resolver_answers():
        assert isinstance(report["dns"], int) and report["dns"] > 0, report
    # 127.0.0.1 is the run's own loopback, where nothing listens; every other refusal is the
    # egress filter's: at once, EHOSTUNREACH (not a timeout, nor a refusal by the host).
    for name, t in host_targets.targets().items():
        if t["kind"] != "tcp":
            continue
        want = errno.ECONNREFUSED if t["host"] == "127.0.0.1" else errno.EHOSTUNREACH
        assert report["targets"][name] == errno.errorcode[want], (name, report)
    assert leftovers(sandbox_service) == []


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_filter_cannot_be_undone_from_inside(client: TestClient, sandbox_service: SandboxService, runtime: str) -> None:
    require_runtime(sandbox_service, runtime)
    if network.tools_problem() is not None:
        skip_or_fail(network.tools_problem() or "")
    code = r"""
import ctypes, errno, socket, struct, fcntl
# Taking tap0 down, or opening raw and netlink-admin sockets, needs CAP_NET_ADMIN/RAW over
# the namespace, which the run never has.
res = {}
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    res["raw"] = "opened"
except OSError as e:
    res["raw"] = errno.errorcode.get(e.errno)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    try:
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH22x", b"tap0", 0))
        res["down"] = "done"
    except OSError as e:
        res["down"] = errno.errorcode.get(e.errno)
print(res)
"""
    out = execute(client, code, runtime=runtime, limits={"network": True, "timeout_s": 60, "cpu_seconds": 30})
    assert out["status"] == "completed", out
    assert "opened" not in out["stdout"] and "done" not in out["stdout"], out["stdout"]


def test_the_egress_filter_covers_the_host_and_special_ranges() -> None:
    rules = network.ruleset([ipaddress.IPv4Network("203.0.113.7/32"), ipaddress.IPv4Network("10.1.0.0/16")])
    for needed in ("127.0.0.0/8", "169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "203.0.113.7"):
        assert needed in rules
    assert "10.1.0.0/16" not in rules  # inside 10/8: intervals may not overlap
    assert "meta nfproto ipv6 reject" in rules
    assert "ip daddr 10.0.2.3 udp dport 53 accept" in rules
