"""A small helper process that starts the runtimes' processes for the controller.

Starting a sandbox needs code between fork and exec (join the run's cgroups, set rlimits, drop
to the sandbox user, install the notification filter). Forking the controller itself for that
copies a process of 100+ MB with threads (several ms, and unsafe in principle); this helper is a
single-threaded interpreter of about 10 MB that imports nothing but the standard library, so it
forks in about a millisecond. It is run by path (``python -I -S forkserver.py FD``), never
imported as part of the package.

Protocol over a SOCK_SEQPACKET pair, one JSON message per packet, descriptors as SCM_RIGHTS:

* controller → helper: ``{"argv", "env", "targets": {target fd: index}, "procs": [index],
  "rlimits": [[resource, value]], "drop_to": [uid, gid] | null, "filter": hex | null,
  "listener": index | null}`` with the descriptors the indexes point into.
* helper → controller: ``{"pid"}`` with a pidfd, or ``{"error"}``, for each request, in order,
  as soon as the child is forked; ``{"failed": pid, "error"}`` if the child fails before its
  exec; ``{"exit": pid, "status", "utime", "stime", "maxrss"}`` when a child ends (the helper is
  their parent, so it reaps them).

When the controller goes away the helper sees EOF and exits; sandboxes started with bwrap's
``--die-with-parent`` die with it.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import fcntl
import json
import os
import queue
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_MAX_FDS = 64
_PACKET = 1 << 20
_HIGH_FD = 100


class ForkServerError(OSError):
    """The helper could not start a process (the message is the child's error)."""


@dataclass(frozen=True, slots=True)
class Exit:
    status: int
    utime: float
    stime: float
    maxrss_kb: int
    #: Why the child never reached its exec (its setup failed), or None.
    error: str | None = None

    @property
    def returncode(self) -> int:
        return os.waitstatus_to_exitcode(self.status)


@dataclass(frozen=True, slots=True)
class Spawned:
    pid: int
    #: A pidfd of the child (readable once it exits; safe to signal, never a reused pid).
    pidfd: int
    exit: concurrent.futures.Future[Exit]


class ForkServer:
    """The controller's end. Thread-safe; the helper starts on first use and again if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._exits: dict[int, concurrent.futures.Future[Exit]] = {}
        self._failures: dict[int, str] = {}
        self._exits_lock = threading.Lock()

    def _start(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self._shutdown_locked()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        theirs.close()
        self._sock = ours
        self._replies = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(ours, self._replies), name="acgs-forkserver", daemon=True)
        self._reader.start()
        return ours

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        targets: Mapping[int, int],
        *,
        procs: Sequence[int] = (),
        rlimits: Sequence[tuple[int, int]] = (),
        drop_to: tuple[int, int] | None = None,
        filter_program: bytes | None = None,
        listener_sock: int | None = None,
    ) -> Spawned:
        """Start ``argv`` with ``targets`` (fd number in the child → our descriptor)."""
        fds: list[int] = []
        index: dict[int, int] = {}

        def ref(fd: int) -> int:
            if fd not in index:
                index[fd] = len(fds)
                fds.append(fd)
            return index[fd]

        request = {
            "argv": list(argv),
            "env": dict(env),
            "targets": {str(t): ref(fd) for t, fd in targets.items()},
            "procs": [ref(fd) for fd in procs],
            "rlimits": [list(r) for r in rlimits],
            "drop_to": list(drop_to) if drop_to is not None else None,
            "filter": filter_program.hex() if filter_program is not None else None,
            "listener": ref(listener_sock) if listener_sock is not None else None,
        }
        if len(fds) > _MAX_FDS:
            raise ValueError("too many descriptors for one spawn")
        with self._lock:
            sock = self._start()
            replies = self._replies
            socket.send_fds(sock, [json.dumps(request).encode()], fds)
            reply = replies.get()
        if "error" in reply:
            raise ForkServerError(reply["error"])
        return Spawned(int(reply["pid"]), reply["pidfd"], reply["future"])

    def _read(self, sock: socket.socket, replies: queue.Queue[dict[str, Any]]) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(sock, _PACKET, 1, socket.MSG_CMSG_CLOEXEC)
            except OSError:
                data, fds = b"", []
            for f in fds:  # see serve(): the flag is dropped on Python 3.11
                os.set_inheritable(f, False)
            if not data:
                break
            msg = json.loads(data)
            if "exit" in msg:
                pid = int(msg["exit"])
                with self._exits_lock:
                    done = self._exits.pop(pid, None)
                    error = self._failures.pop(pid, None)
                if done is not None:
                    done.set_result(
                        Exit(int(msg["status"]), float(msg["utime"]), float(msg["stime"]), int(msg["maxrss"]), error)
                    )
            elif "failed" in msg:
                with self._exits_lock:
                    self._failures[int(msg["failed"])] = str(msg["error"])
            elif "pid" in msg:
                # Registered before the next message is read: the child's exit comes after.
                fut: concurrent.futures.Future[Exit] = concurrent.futures.Future()
                with self._exits_lock:
                    self._exits[int(msg["pid"])] = fut
                replies.put({"pid": msg["pid"], "pidfd": fds[0], "future": fut})
            else:
                replies.put(msg)
        replies.put({"error": "the fork server stopped"})
        with self._exits_lock:
            pending, self._exits = self._exits, {}
        for fut in pending.values():
            fut.set_exception(ForkServerError("the fork server stopped before the process ended"))

    def _shutdown_locked(self) -> None:
        if self._sock is not None:
            # shutdown, not just close: the reader thread is blocked in recvmsg on it, and
            # only shutdown ends that call and tells the helper to go.
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        if self._reader is not None:
            # The reader ends at once on the shut-down socket, failing the exits still pending.
            # Joined so that close() leaves no thread of ours behind: the controller may be on
            # its way out of the interpreter, where a thread still settling futures is a hazard.
            # (It never takes self._lock, so joining under that lock cannot deadlock.)
            self._reader.join(timeout=5)
            self._reader = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def close(self) -> None:
        with self._lock:
            self._shutdown_locked()


# ---------------------------------------------------------------------------------------------
# The helper


def _child(req: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: everything here is a system call or close to one."""
    os.setsid()
    # Park every descriptor above the targets first, so no dup2 overwrites a source.
    high = [_fcntl_dupfd(fd) for fd in fds]
    for target, i in req["targets"].items():
        os.dup2(high[i], int(target))  # dup2 leaves the target inheritable
    for i in req["procs"]:
        # Join the run's cgroups before anything else runs, so all of it is counted.
        os.write(high[i], b"0")
    for which, value in req["rlimits"]:
        resource.setrlimit(which, (value, value))
    if req["drop_to"] is not None:
        uid, gid = req["drop_to"]
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    if req["filter"] is not None:
        listener = _install_listener(bytes.fromhex(req["filter"]))
        with socket.socket(fileno=high[req["listener"]]) as s:
            socket.send_fds(s, [b"L"], [listener])
        os.close(listener)
    os.execve(req["argv"][0], req["argv"], req["env"])


def _fcntl_dupfd(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def _install_listener(program: bytes) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_char_p))
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    # seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog)
    fd: int = libc.syscall(317, 1, 8, ctypes.byref(prog))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)")
    return fd


def _spawn(sock: socket.socket, req: dict[str, Any], fds: list[int], pending: dict[int, tuple[int, list[bytes]]]) -> dict[str, Any]:
    """Fork the child and answer at once; whether its exec worked arrives later through
    ``pending`` (the error pipe, closed by a successful exec)."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(err_r)
        os.close(err_w)
        return {"error": f"fork: {exc}"}
    if pid == 0:
        try:
            sock.close()
            os.close(err_r)
            _child(req, fds)
            raise OSError("execve returned")
        except BaseException as exc:  # reported to the parent through the pipe
            try:
                os.write(err_w, f"{type(exc).__name__}: {exc}".encode()[:1000])
            finally:
                os._exit(127)
    os.close(err_w)
    pending[err_r] = (pid, [])
    return {"pid": pid}


def _send(sock: socket.socket, msg: dict[str, Any], fds: Sequence[int] = ()) -> None:
    socket.send_fds(sock, [json.dumps(msg).encode()], list(fds))


def _drain_error(sock: socket.socket, err_r: int, pending: dict[int, tuple[int, list[bytes]]]) -> None:
    pid, said = pending.pop(err_r)
    while chunk := os.read(err_r, 4096):
        said.append(chunk)
    os.close(err_r)
    if said:
        _send(sock, {"failed": pid, "error": b"".join(said).decode(errors="replace")})


def serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # Ctrl-C on a terminal reaches the whole process group; the controller decides when the
    # fork server stops (it closes the socket), so an interrupt must not kill it mid-run.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pending: dict[int, tuple[int, list[bytes]]] = {}  # error pipe -> (pid, what it said)
    while True:
        ready, _, _ = select.select([sock.fileno(), wake_r, *pending], [], [])
        for err_r in [fd for fd in ready if fd in pending]:
            chunk = os.read(err_r, 4096)
            if chunk:
                pending[err_r][1].append(chunk)
            else:
                _drain_error(sock, err_r, pending)
        if wake_r in ready:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            while True:
                try:
                    pid, status, ru = os.wait4(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                for err_r, (child, _) in list(pending.items()):
                    if child == pid:
                        # Its error (if any) goes out before its exit; the pipe is closed now.
                        _drain_error(sock, err_r, pending)
                _send(sock, {"exit": pid, "status": status, "utime": ru.ru_utime, "stime": ru.ru_stime, "maxrss": ru.ru_maxrss})
        if sock.fileno() in ready:
            try:
                data, fds, _, _ = socket.recv_fds(sock, _PACKET, _MAX_FDS, socket.MSG_CMSG_CLOEXEC)
            except OSError:
                data, fds = b"", []
            # Python 3.11's recv_fds drops its flags argument, so MSG_CMSG_CLOEXEC does not
            # take: without this every received descriptor (the run's cgroup.procs files,
            # the listener socket) would be inherited by bwrap and the agent's code.
            for f in fds:
                os.set_inheritable(f, False)
            if not data:
                return  # the controller is gone
            try:
                reply = _spawn(sock, json.loads(data), fds, pending)
            except Exception as exc:  # a malformed request must not take the helper down
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                for f in fds:
                    os.close(f)
            if "pid" in reply:
                # Taken before the child can be reaped (that happens in this loop, later).
                pidfd = os.pidfd_open(reply["pid"])
                _send(sock, reply, [pidfd])
                os.close(pidfd)
            else:
                _send(sock, reply)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
