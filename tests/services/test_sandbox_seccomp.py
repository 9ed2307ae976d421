"""The seccomp compiler and supervisor on their own, against the real kernel: a child loads the
compiled filter and makes the syscalls, no bwrap around it."""

from __future__ import annotations

import ctypes
import json
import os
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from acgs.services.sandbox import seccomp
from acgs.services.sandbox.forkserver import ForkServer
from acgs.services.sandbox.seccomp import Mode, ProfileError, Supervisor, load_profile, parse_profile

PROBE = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    r = libc.syscall(nr, *args)
    return f"{r},{ctypes.get_errno() if r < 0 else 0}"
print(" ".join([
    "getpid=" + ("ok" if os.getpid() > 0 else "bad"),
    "ptrace=" + call(101, 2, 0, 0, 0),  # PTRACE_PEEKDATA of pid 0: ESRCH if it got through
    "clone3=" + call(435, 0, 0),
    "clone_newuser=" + call(56, 0x10000000 | 17, 0, 0, 0, 0),
    "mkdir=" + call(83, b"/proc/nope", 0),
]), flush=True)
if len(sys.argv) > 1:
    libc.syscall(169, 0xfee1dead, 672274793, 0, 0)  # reboot(CAD_OFF): a kill rule
    print("survived", flush=True)
"""


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def _load(program: bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_char_p))
    assert libc.prctl(38, 1, 0, 0, 0) == 0
    assert libc.syscall(317, 1, 0, ctypes.byref(prog)) == 0, ctypes.get_errno()


def _run(program: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args], preexec_fn=lambda: _load(program), capture_output=True, text=True, timeout=30
    )


def test_standalone_filter_denies_kills_and_lets_the_rest_through() -> None:
    profile = load_profile()
    r = _run(seccomp.enforcement_filter(profile, Mode.STANDALONE))
    # mkdir is not in the profile: it reaches the kernel (and fails there with ENOENT).
    assert r.stdout.split() == ["getpid=ok", "ptrace=-1,1", "clone3=-1,38", "clone_newuser=-1,1", "mkdir=-1,2"], r
    r = _run(seccomp.enforcement_filter(profile, Mode.STANDALONE), "kill")
    assert r.returncode == -31 and "survived" not in r.stdout  # SIGSYS


def test_supervised_filter_without_a_supervisor_still_denies() -> None:
    # TRACE with no tracer: the kernel fails the call with ENOSYS.
    r = _run(seccomp.enforcement_filter(load_profile(), Mode.SUPERVISED), "kill")
    assert r.stdout.split()[:4] == ["getpid=ok", "ptrace=-1,38", "clone3=-1,38", "clone_newuser=-1,38"], r
    assert "survived" in r.stdout


SUPERVISED = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    r = libc.syscall(nr, *args)
    return f"{r},{ctypes.get_errno() if r < 0 else 0}"
print("before", call(101, 2, 0, 0, 0))  # PTRACE_PEEKDATA of pid 0
print("marker", libc.prctl(22, 2, 0, 0, 0))  # PR_SET_SECCOMP with no program: EFAULT
print("after", call(101, 2, 0, 0, 0), call(165, b"none", b"/nope", b"tmpfs", 0, 0), flush=True)
"""


def test_supervisor_counts_and_answers_eperm() -> None:
    profile = load_profile()
    parent, child = socket.socketpair()
    out_r, out_w = os.pipe()
    fs = ForkServer()
    try:
        proc = fs.spawn(
            [sys.executable, "-c", SUPERVISED],
            {},
            {1: out_w},
            filter_program=seccomp.notification_filter(profile),
            listener_sock=child.fileno(),
        )
    finally:
        os.close(out_w)
        child.close()
    _, fds, _, _ = socket.recv_fds(parent, 1, 1)
    parent.close()
    killed: list[bool] = []
    sup = Supervisor(profile, fds[0], lambda: killed.append(True))
    poller = select.poll()
    poller.register(fds[0], select.POLLIN)
    while not proc.exit.done():
        for _ in poller.poll(100):
            sup.handle()
    os.close(fds[0])
    os.close(proc.pidfd)
    fs.close()
    with os.fdopen(out_r) as f:
        out = f.read().split("\n")
    # Until the runtime's setup marker, calls go through (bwrap's own mounts need that).
    assert out[0] == "before -1,3"
    assert out[2] == "after -1,1 -1,1"
    assert sup.enforcing
    assert sup.report() == [{"syscall": "mount", "action": "deny", "count": 1}, {"syscall": "ptrace", "action": "deny", "count": 1}]
    assert killed == []


def test_profiles_are_checked() -> None:
    base = json.loads(seccomp.DEFAULT_PROFILE.read_text())
    with pytest.raises(ProfileError, match="unknown syscalls"):
        parse_profile({**base, "rules": [{"syscalls": ["no_such_call"], "action": "deny"}]})
    with pytest.raises(ProfileError, match="action must be"):
        parse_profile({**base, "rules": [{"syscalls": ["ptrace"], "action": "allow"}]})
    with pytest.raises(ProfileError, match="denylists"):
        parse_profile({**base, "default_action": "deny"})
    with pytest.raises(ProfileError, match="two rules"):
        seccomp.enforcement_filter(
            parse_profile({**base, "rules": [{"syscalls": ["ptrace"], "action": "deny"}, {"syscalls": ["ptrace"], "action": "kill"}]}),
            Mode.STANDALONE,
        )


def test_the_repository_sandbox_dir_is_the_packaged_profile() -> None:
    root = Path(__file__).resolve().parents[2]
    assert (root / "sandbox" / "seccomp" / "default.json").resolve() == seccomp.DEFAULT_PROFILE.resolve()
