"""The containment suite: hostile code under every runtime this host has. Each attempt must be
contained, the host left as it was (no process, cgroup or mount outlives the run), and the
result must name the limit reached or the syscall refused.

Runs go through the controller's HTTP API with the real constitution, so what is tested is
what an agent gets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from acgs.services.sandbox import SandboxService
from tests.services.sandbox_fixtures import (  # noqa: F401 (fixtures)
    CANARY,
    CANARY_NAME,
    client,
    execute,
    leftovers,
    require_runtime,
    sandbox_service,
)

RUNTIMES = ["bwrap", "gvisor"]


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest, sandbox_service: SandboxService) -> Iterator[str]:
    name: str = request.param
    require_runtime(sandbox_service, name)
    yield name
    # Whatever the run did, nothing of it may remain on the host.
    assert leftovers(sandbox_service) == []


def violation(result: dict[str, Any], syscall: str) -> dict[str, Any] | None:
    return next((v for v in result["violations"] if v["syscall"] == syscall), None)


LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"


def test_network_egress_is_blocked(client: TestClient, runtime: str) -> None:
    code = """
import socket
for target in [("1.1.1.1", 53), ("8.8.8.8", 443), ("10.0.0.1", 80)]:
    try:
        socket.create_connection(target, timeout=2)
        print("CONNECTED", target)
    except OSError as e:
        print("blocked", target, e.errno)
try:
    socket.getaddrinfo("example.com", 80)
    print("RESOLVED")
except OSError:
    print("no dns")
print(sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]))
"""
    r = execute(client, code, runtime=runtime)
    assert r["status"] == "completed", r
    assert "CONNECTED" not in r["stdout"] and "RESOLVED" not in r["stdout"]
    assert r["stdout"].count("blocked") == 3
    assert "['lo']" in r["stdout"]  # no interface but loopback
    assert r["limits"]["network"] is False


def test_network_only_where_the_constitution_allows_it(client: TestClient, runtime: str) -> None:
    code = "print(sorted(line.split(':')[0].strip() for line in open('/proc/net/dev').readlines()[2:]))"
    r = execute(client, code, runtime=runtime, limits={"network": True})
    # Its own namespace with slirp4netns's tap0, never the host's interfaces (what it may
    # reach through it: tests/security/test_sandbox_network.py).
    assert r["limits"]["network"] is True and r["stdout"] == "['lo', 'tap0']\n", r
    # A medium-trust agent asking for it is refused outright.
    r = execute(client, code, runtime="gvisor", agent={"trust_level": 0.6}, limits={"network": True}, expect=403)
    assert r["reasons"] == ["network access is not allowed for this agent"]


def test_fork_bomb_hits_the_pids_limit(client: TestClient, runtime: str) -> None:
    r = execute(
        client, ":(){ :|:& };:\nsleep 5", language="bash", runtime=runtime, limits={"pids": 16, "timeout_s": 3}
    )
    assert r["status"] in ("timeout", "killed"), r
    assert "pids" in r["limits_hit"]
    # The host still forks and the controller still answers.
    ok = execute(client, "print('alive')", runtime=runtime)
    assert ok["stdout"] == "alive\n"


def test_memory_bomb_is_killed_at_the_memory_limit(client: TestClient, runtime: str) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))\n"
    r = execute(client, code, runtime=runtime, limits={"memory_mb": 64, "timeout_s": 20})
    assert r["status"] == "killed", r
    assert "memory_mb" in r["limits_hit"]
    assert r["exit_code"] == 137


def test_disk_fill_stops_at_the_disk_limit(client: TestClient, runtime: str) -> None:
    code = """
import os
for path in ("/workspace/fill", "/tmp/fill"):
    try:
        with open(path, "wb") as f:
            while True:
                f.write(b"x" * (1 << 20))
                f.flush()
    except OSError as e:
        print(path, "stopped:", e.strerror)
print("sizes", os.path.getsize("/workspace/fill") + os.path.getsize("/tmp/fill"))
"""
    r = execute(client, code, runtime=runtime, limits={"disk_mb": 8, "timeout_s": 20})
    assert r["status"] == "completed", r
    assert "disk_mb" in r["limits_hit"]
    assert r["stdout"].count("stopped: No space left on device") == 2
    total = int(r["stdout"].split("sizes")[1])
    assert total <= 8 * 1024 * 1024  # one cap for the work dir and /tmp together


def test_cpu_spin_is_killed_past_its_cpu_seconds(client: TestClient, runtime: str) -> None:
    t = time.monotonic()
    r = execute(client, "while True:\n    pass\n", runtime=runtime, limits={"cpu_seconds": 1, "timeout_s": 20})
    assert r["status"] == "killed", r
    assert r["limits_hit"] == ["cpu_seconds"]
    assert r["resource_usage"]["cpu_s"] >= 1.0
    assert time.monotonic() - t < 15  # long before the wall-clock limit


def test_wall_clock_deadline_kills_the_whole_tree(client: TestClient, runtime: str) -> None:
    # A child that detaches into its own session must die with the run too.
    code = "(setsid sleep 60 &) ; sleep 60"
    r = execute(client, code, language="bash", runtime=runtime, limits={"timeout_s": 1})
    assert r["status"] == "timeout", r
    assert r["limits_hit"] == ["timeout_s"]
    assert r["resource_usage"]["wall_ms"] < 5000


def test_shadow_and_host_files_are_out_of_reach(client: TestClient, runtime: str) -> None:
    code = """
import os
for path in ("/etc/shadow", "/root", "/home", "/var/lib", "/proc/1/root/etc/shadow"):
    try:
        if os.path.isdir(path):
            print(path, "LISTED", os.listdir(path))
        else:
            print(path, "READ", open(path).read()[:20])
    except OSError as e:
        print(path, "refused", e.errno)
"""
    r = execute(client, code, runtime=runtime)
    assert r["status"] == "completed", r
    assert "READ" not in r["stdout"] and "LISTED" not in r["stdout"], r["stdout"]
    assert r["stdout"].count("refused") == 5


def test_controller_environment_secrets_are_invisible(client: TestClient, runtime: str) -> None:
    assert os.environ[CANARY_NAME] == CANARY  # the controller has it
    code = """
import os, glob
seen = [str(os.environ)]
for p in glob.glob("/proc/*/environ"):
    try:
        seen.append(open(p, "rb").read().decode(errors="replace"))
    except OSError:
        pass
print("\\n".join(seen))
"""
    r = execute(client, code, runtime=runtime)
    assert r["status"] == "completed", r
    assert CANARY not in r["stdout"] and CANARY_NAME not in r["stdout"]
    assert "HOME" in r["stdout"]  # the check did read an environment


def test_writes_outside_the_work_dir_fail(client: TestClient, runtime: str) -> None:
    code = """
for path in ("/x", "/etc/x", "/usr/x", "/usr/bin/python3", "/dev/x", "/proc/x", "/workspace/ok", "/tmp/ok"):
    try:
        with open(path, "a") as f:
            f.write("x")
        print(path, "WROTE")
    except OSError as e:
        print(path, "refused", e.errno)
"""
    r = execute(client, code, runtime=runtime)
    assert r["status"] == "completed", r
    lines = dict(line.split(" ", 1) for line in r["stdout"].splitlines())
    assert lines.pop("/workspace/ok") == "WROTE" and lines.pop("/tmp/ok") == "WROTE"
    assert all(v.startswith("refused") for v in lines.values()), lines


def test_ptrace_is_refused_and_reported(client: TestClient, runtime: str) -> None:
    code = LIBC + """
child = os.fork()
if child == 0:
    import time; time.sleep(5); os._exit(0)
print("attach", libc.ptrace(16, child, 0, 0), ctypes.get_errno())
print("traceme", libc.ptrace(0, 0, 0, 0), ctypes.get_errno())
os.kill(child, 9)
"""
    r = execute(client, code, runtime=runtime)
    assert "attach -1 1" in r["stdout"] and "traceme -1 1" in r["stdout"], r
    v = violation(r, "ptrace")
    assert v is not None and v["action"] == "deny" and v["count"] == 2, r["violations"]


def test_mount_is_refused_and_reported(client: TestClient, runtime: str) -> None:
    code = LIBC + 'print("mount", libc.mount(b"none", b"/tmp", b"tmpfs", 0, None), ctypes.get_errno())\n'
    r = execute(client, code, runtime=runtime)
    assert "mount -1 1" in r["stdout"], r
    v = violation(r, "mount")
    assert v is not None and v["count"] == 1 and v["action"] == "deny"


def test_unshare_and_namespace_clones_are_refused_and_reported(client: TestClient, runtime: str) -> None:
    code = LIBC + """
print("unshare-user", libc.unshare(0x10000000), ctypes.get_errno())
print("unshare-net", libc.unshare(0x40000000), ctypes.get_errno())
print("clone-newpid", libc.syscall(56, 0x20000000 | 17, 0, 0, 0, 0), ctypes.get_errno())
"""
    r = execute(client, code, runtime=runtime)
    assert "unshare-user -1 1" in r["stdout"] and "unshare-net -1 1" in r["stdout"], r
    assert "clone-newpid -1 1" in r["stdout"]
    assert violation(r, "unshare") == {"syscall": "unshare", "action": "deny", "count": 2}
    assert violation(r, "clone") == {"syscall": "clone", "action": "deny", "count": 1}


def test_setuid_binaries_give_no_privilege(client: TestClient, runtime: str) -> None:
    code = """
import os, subprocess
print("setuid bit", bool(os.stat("/usr/bin/newgrp").st_mode & 0o4000))
r = subprocess.run(["/usr/bin/newgrp"], input=b"id -u\\n", capture_output=True)
print("newgrp", r.returncode, r.stdout.decode().strip() or "-", r.stderr.decode().strip()[:80])
r = subprocess.run(["/usr/bin/su", "-c", "id -u"], input=b"", capture_output=True)
print("su", r.returncode, r.stdout.decode().strip() or "-")
print("uid", os.getuid(), os.geteuid())
print([l.strip() for l in open("/proc/self/status") if l.startswith(("NoNewPrivs", "CapEff", "CapBnd"))])
"""
    r = execute(client, code, runtime=runtime)
    out = r["stdout"]
    assert "setuid bit True" in out, r  # the test means something: the binary is setuid
    assert "newgrp 0 0" not in out and "su 0 0" not in out, out
    assert "uid 65534 65534" in out
    assert "'CapEff:\\t0000000000000000'" in out
    if runtime == "bwrap":  # gVisor's /proc/self/status has no NoNewPrivs line
        assert "'NoNewPrivs:\\t1'" in out


def test_killing_the_parent_and_everything_stays_inside(client: TestClient, runtime: str) -> None:
    controller = os.getpid()
    code = f"""
import os, signal
for pid in (os.getppid(), 1, {controller}):
    try:
        os.kill(pid, signal.SIGKILL)
        print(pid, "signalled")
    except OSError as e:
        print(pid, "refused", e.errno)
print("ppid", os.getppid())
os.kill(-1, signal.SIGKILL)
"""
    r = execute(client, code, runtime=runtime)
    assert r["status"] in ("completed", "killed"), r
    # This very process is the controller: it is still here, and still serves.
    assert execute(client, "print('still here')", runtime=runtime)["stdout"] == "still here\n"


def test_kernel_attack_surface_is_refused_and_reported(client: TestClient, runtime: str) -> None:
    code = LIBC + """
for name, nr, args in (("bpf", 321, (0, 0, 0)), ("keyctl", 250, (0, 0, 0)), ("perf_event_open", 298, (0, 0, 0, 0, 0)),
                       ("userfaultfd", 323, (0,)), ("io_uring_setup", 425, (1, 0))):
    print(name, libc.syscall(nr, *args), ctypes.get_errno())
"""
    r = execute(client, code, runtime=runtime)
    assert r["status"] == "completed", r
    for name in ("bpf", "keyctl", "perf_event_open", "userfaultfd", "io_uring_setup"):
        assert f"{name} -1 1" in r["stdout"], (name, r["stdout"])
        assert violation(r, name) == {"syscall": name, "action": "deny", "count": 1}


def test_a_kill_rule_syscall_ends_the_run(client: TestClient, runtime: str) -> None:
    code = LIBC + 'print("before", flush=True)\nlibc.syscall(169, 0xfee1dead, 672274793, 0, 0)  # LINUX_REBOOT_CMD_CAD_OFF: harmless even if it ran\nprint("AFTER")\n'
    r = execute(client, code, runtime=runtime)
    assert r["status"] == "killed", r
    assert "before" in r["stdout"] and "AFTER" not in r["stdout"]
    assert violation(r, "reboot") == {"syscall": "reboot", "action": "kill", "count": 1}


def test_no_controller_descriptor_reaches_the_code(client: TestClient, runtime: str) -> None:
    # Only stdin, stdout and stderr (and the descriptor listing the directory): no cgroup
    # file, socket or pipe of the controller's, fork server's or warm pool's.
    code = "import os\nprint(sorted(int(f) for f in os.listdir('/proc/self/fd')))"
    r = execute(client, code, runtime=runtime)
    assert r["status"] == "completed", r
    assert r["stdout"].strip() == "[0, 1, 2, 3]", r["stdout"]
