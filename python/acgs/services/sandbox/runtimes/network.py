"""User-mode networking for the runs the constitution lets reach the network.

A run never shares the host's network namespace. A run with network gets a namespace of its
own, a ``tap0`` served by slirp4netns (a user-mode TCP/IP stack on the host side, so the
run's packets become ordinary host sockets opened by slirp4netns) and an nftables table,
installed from outside before the run's code starts, that refuses every destination that is
not the internet: the host's loopback, link-local and metadata addresses, private and other
special ranges, the host's own addresses and the networks it is attached to, and all of IPv6.
The only exception is slirp4netns's DNS forwarder (``10.0.2.3:53``), which the run's
generated ``resolv.conf`` names. Abstract Unix sockets belong to the network namespace, so
the host's are out of reach as well.

Measured costs and the traps that shaped this (slirp4netns's ``10.0.2.2`` maps to the host's
loopback unless ``--disable-host-loopback``; PID mode cannot join bwrap's namespace; a
filter installed after the code starts is a race) are in the sandbox README.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TypeVar

from acgs.services.sandbox.runtimes.base import RuntimeUnavailable

#: slirp4netns's fixed layout (``--configure``): the run is 10.0.2.100 on tap0.
RESOLVER = "10.0.2.3"
#: The sandbox's /etc/resolv.conf: slirp4netns's forwarder, never the host's resolvers (they
#: may be private or loopback addresses, which the filter refuses or which are the host's).
RESOLV_CONF = f"nameserver {RESOLVER}\noptions attempts:2 timeout:2\n".encode()
TAP = "tap0"
TABLE = "acgs_egress"
#: Destinations that are never the internet (IANA special-purpose IPv4 registry, plus
#: multicast and the reserved block). 10.0.0.0/8 includes slirp4netns's own 10.0.2.0/24:
#: its gateway 10.0.2.2 is the host.
DENIED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/3",
    )
)
#: How long slirp4netns may take to configure the namespace.
READY_TIMEOUT_S = 10.0

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

T = TypeVar("T")


def tools_problem() -> str | None:
    """None when this host can give a run isolated networking, else why not."""
    if _tool("slirp4netns") is None:
        return "slirp4netns is not installed (Debian package slirp4netns): runs cannot have network here"
    if _libnftables() is None and _tool("nft") is None:
        return "nftables is not installed (Debian package nftables): runs cannot have network here"
    if os.geteuid() != 0:
        return "the controller must run as root to give a run its own network"
    return None


@cache
def _tool(name: str) -> str | None:
    return shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", ""))


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


# -- the filter ------------------------------------------------------------------------------


def host_networks() -> list[ipaddress.IPv4Network]:
    """The host's own IPv4 addresses and the networks it is directly attached to, read from
    the controller's (the host's) namespace at each run, so a changed address is covered."""
    nets: set[ipaddress.IPv4Network] = set()
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        lines = []
    for prev, line in zip(lines, lines[1:]):
        # "|-- 192.0.2.2" followed by "/32 host LOCAL": an address of this host.
        if line.strip() == "/32 host LOCAL" and "|--" in prev:
            try:
                nets.add(ipaddress.IPv4Network(prev.split("|--", 1)[1].strip()))
            except ValueError:
                pass
    try:
        routes = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        routes = []
    for line in routes:
        parts = line.split()
        if len(parts) < 8:
            continue
        try:
            dest, gateway, mask = (int(parts[i], 16) for i in (1, 2, 7))
        except ValueError:
            continue
        if gateway != 0 or mask == 0:
            continue  # a route through a router (the default route too) is not on-link
        addr = socket.inet_ntoa(struct.pack("<I", dest))
        netmask = socket.inet_ntoa(struct.pack("<I", mask))
        try:
            nets.add(ipaddress.IPv4Network(f"{addr}/{netmask}", strict=False))
        except ValueError:
            pass
    return sorted(nets)


def ruleset(extra: list[ipaddress.IPv4Network] | None = None) -> str:
    """The nftables table of a run's namespace (input of ``nft -f -``)."""
    denied = list(DENIED_V4)
    for net in extra if extra is not None else host_networks():
        if not any(net.subnet_of(d) for d in denied):
            denied.append(net)
    # Intervals may not overlap: keep only the widest of nested ones.
    merged = [n for n in denied if not any(n != o and n.subnet_of(o) for o in denied)]
    elements = ", ".join(str(n) for n in sorted(set(merged)))
    return (
        f"table inet {TABLE} {{\n"
        f"  set denied {{ type ipv4_addr; flags interval; elements = {{ {elements} }} }}\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n"
        '    oif "lo" accept\n'
        f"    ip daddr {RESOLVER} udp dport 53 accept\n"
        f"    ip daddr {RESOLVER} tcp dport 53 accept\n"
        # Rejected, not dropped: a refused connect fails at once instead of hanging.
        "    meta nfproto ipv6 reject with icmpx type admin-prohibited\n"
        "    ip daddr @denied reject with icmpx type admin-prohibited\n"
        "  }\n"
        "}\n"
    )


# -- namespaces ------------------------------------------------------------------------------


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread of its own that ends with it: a namespace that thread entered
    or created leaves with it, never touching the controller's other threads."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    t = threading.Thread(target=target, name="acgs-sandbox-netns", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def new_namespace() -> int:
    """A new, empty network namespace with its loopback up, as a descriptor (the namespace
    lives as long as a descriptor or a process holds it)."""

    def make() -> int:
        if _libc().unshare(_CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"unshare(CLONE_NEWNET): {os.strerror(e)}")
        fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _loopback_up()
        except BaseException:
            os.close(fd)
            raise
        return fd

    return _in_thread(make)


@cache
def _libnftables() -> ctypes.CDLL | None:
    """nftables's library (Debian libnftables1, a dependency of nftables), loaded once: in
    process, loading a table costs a few ms where starting ``nft`` costs 10-20."""
    try:
        lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    return lib


def _install_filter(nsfd: int, rules: str) -> None:
    """Load ``rules`` into the namespace ``nsfd``, from a thread that joined it (the netlink
    socket of libnftables, or the ``nft`` process, is then in that namespace)."""
    lib = _libnftables()
    nft = _tool("nft")
    if lib is None and nft is None:
        raise RuntimeUnavailable("nftables is not installed")

    def load() -> tuple[int, str]:
        if _libc().setns(nsfd, _CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns(CLONE_NEWNET): {os.strerror(e)}")
        if lib is not None:
            ctx = lib.nft_ctx_new(0)
            if not ctx:
                raise RuntimeUnavailable("cannot start libnftables")
            try:
                lib.nft_ctx_buffer_output(ctx)
                lib.nft_ctx_buffer_error(ctx)
                rc = lib.nft_run_cmd_from_buffer(ctx, rules.encode())
                err = lib.nft_ctx_get_error_buffer(ctx) or b""
                return int(rc), err.decode(errors="replace")
            finally:
                lib.nft_ctx_free(ctx)
        assert nft is not None
        done = subprocess.run([nft, "-f", "-"], input=rules.encode(), capture_output=True, timeout=10)
        return done.returncode, done.stderr.decode(errors="replace")

    rc, err = _in_thread(load)
    if rc != 0:
        raise RuntimeUnavailable(f"cannot install the run's network filter: {err.strip()[:300]}")


# -- slirp4netns -----------------------------------------------------------------------------


@dataclass
class UserNet:
    """slirp4netns serving one run's namespace. :meth:`close` ends it (it also ends by itself
    when the controller dies: the kernel closes the exit descriptor, which only we hold)."""

    proc: subprocess.Popen[bytes]
    exit_w: int
    setup_ms: float = 0.0
    closed: bool = field(default=False)

    @classmethod
    def attach(
        cls, nsfd: int, cgroup_procs: Sequence[Path] = (), *, until_settled: Callable[[], None] | None = None
    ) -> UserNet:
        """Serve the namespace ``nsfd`` (already isolated from the host) and install the
        egress filter in it; returns only once both are in place. slirp4netns joins the run's
        cgroup (``cgroup_procs``), so the work the run's traffic causes it counts against the
        run's CPU, memory and pids, and dies with the run. ``until_settled``, when given, returns
        once whoever made the namespace is done configuring it (bwrap sets up its loopback
        after it reports the namespace): the filter goes in before, slirp4netns after."""
        t0 = time.perf_counter()
        slirp = _tool("slirp4netns")
        if slirp is None:
            raise RuntimeUnavailable("slirp4netns is not installed")
        rules = ruleset()
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
        proc: subprocess.Popen[bytes] | None = None
        try:
            if until_settled is not None:
                _install_filter(nsfd, rules)
                until_settled()
            argv = [
                slirp,
                "--configure",
                "--mtu=65520",
                # 10.0.2.2 would otherwise be the host's 127.0.0.1.
                "--disable-host-loopback",
                # Confines slirp4netns itself (seccomp: no execve, ptrace, mount, ...).
                "--enable-seccomp",
                f"--ready-fd={ready_w}",
                f"--exit-fd={exit_r}",
                "--netns-type=path",
                f"/proc/self/fd/{nsfd}",
                TAP,
            ]
            proc = subprocess.Popen(
                argv,
                pass_fds=(ready_w, exit_r, nsfd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            os.close(ready_w)
            ready_w = -1
            os.close(exit_r)
            exit_r = -1
            for procs in cgroup_procs:
                procs.write_text(str(proc.pid))
            if until_settled is None:
                # The table needs no tap0 yet: loading it while slirp4netns starts overlaps them.
                _install_filter(nsfd, rules)
            ready, _, _ = select.select([ready_r], [], [], READY_TIMEOUT_S)
            said = os.read(ready_r, 1) if ready else b""
            if said != b"1":
                rc = proc.poll()
                raise RuntimeUnavailable(
                    "slirp4netns did not configure the run's network"
                    + (f" (exit status {rc})" if rc is not None else f" within {READY_TIMEOUT_S:.0f} s")
                )
            net = cls(proc, exit_w)
        except BaseException:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(exit_w)
            raise
        finally:
            for fd in (ready_r, ready_w, exit_r):
                if fd >= 0:
                    os.close(fd)
        net.setup_ms = (time.perf_counter() - t0) * 1000
        return net

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        os.close(self.exit_w)
        # Nothing to flush once the run is over, and its orderly exit takes ~20 ms.
        self.proc.kill()
        self.proc.wait()


def open_namespace_of(pid: int, inode: int) -> int:
    """A descriptor on the network namespace of ``pid``, checked to be the one whose inode
    bwrap reported (so a reused pid cannot hand us another process's namespace)."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    if os.fstat(fd).st_ino != inode:
        os.close(fd)
        raise RuntimeUnavailable("the sandbox's network namespace changed before it was set up")
    return fd
