"""Seccomp for the sandbox: the profile (data in sandbox/seccomp/), a classic-BPF compiler for
x86-64, and the user-notification supervisor that counts forbidden syscalls.

Two filters come out of one profile:

* the **enforcement filter**, loaded by the runtime inside the sandbox (bwrap ``--seccomp``):
  foreign ABIs are killed, ``enosys`` rules fail with ENOSYS. Reported rules (``deny``,
  ``kill``) fail too — with EPERM and SIGSYS when nothing supervises the run
  (:data:`Mode.STANDALONE`), or with ``SECCOMP_RET_TRACE`` when a supervisor does
  (:data:`Mode.SUPERVISED`): with no tracer attached the kernel fails such a call with ENOSYS,
  and TRACE ranks below USER_NOTIF, so the supervisor's notification is the one that fires.
* the **notification filter**, installed before the runtime starts (by the fork server, in the
  child that execs the runtime): the reported rules return
  ``SECCOMP_RET_USER_NOTIF``; :class:`Supervisor` counts each call and answers EPERM (or kills
  the run for ``kill`` rules). If the supervisor is gone, the kernel answers ENOSYS: the
  denial never depends on the supervisor being alive.

The notification filter exists before bwrap sets the sandbox up, so bwrap's own ``mount``,
``pivot_root`` and ``unshare`` reach the supervisor too. Those are let through until bwrap
loads the enforcement filter (its ``prctl(PR_SET_SECCOMP)``), which is the last thing it does
before running the agent's command; from then on every notification is the agent's.
"""

from __future__ import annotations

import enum
import errno as errno_mod
import fcntl
import json
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from acgs.errors import AcgsError

DATA_DIR = Path(__file__).resolve().parent / "data" / "seccomp"
DEFAULT_PROFILE = DATA_DIR / "default.json"
SYSCALL_TABLE = DATA_DIR / "syscalls-x86_64.json"

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

# seccomp return actions (include/uapi/linux/seccomp.h).
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_ALLOW = 0x7FFF0000

# Classic BPF opcodes (include/uapi/linux/filter.h).
_LD_W_ABS = 0x20
_JMP_JEQ_K = 0x15
_JMP_JGE_K = 0x35
_JMP_JSET_K = 0x45
_RET_K = 0x06

# Offsets into struct seccomp_data.
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARGS = 16

# Setup markers: the runtime loading its own filter ends its setup.
PR_SET_SECCOMP = 22
SECCOMP_SET_MODE_FILTER = 1

Action = Literal["deny", "kill", "enosys"]
REPORTED: frozenset[str] = frozenset(("deny", "kill"))


class ProfileError(AcgsError, ValueError):
    """A seccomp profile is malformed or names a syscall the table does not know."""

    code = "seccomp_profile_error"


class Mode(enum.Enum):
    """Whether a :class:`Supervisor` watches the run (see the module docstring)."""

    STANDALONE = "standalone"
    SUPERVISED = "supervised"


@dataclass(frozen=True, slots=True)
class ArgCondition:
    """Matches when ``args[arg] & value`` is non-zero (``any_bits``) or when ``args[arg] ==
    value`` (``eq``); both look at the low 32 bits, which is what the kernel reads for the
    int and flag arguments profiles test."""

    arg: int
    op: Literal["any_bits", "eq"]
    value: int


@dataclass(frozen=True, slots=True)
class Rule:
    syscalls: tuple[str, ...]
    action: Action
    when: ArgCondition | None = None
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    rules: tuple[Rule, ...]
    table: Mapping[str, int] = field(repr=False)

    @property
    def names_by_number(self) -> dict[int, str]:
        return {nr: name for name, nr in self.table.items()}

    def rule_by_number(self, nr: int) -> Rule | None:
        """The first rule naming syscall ``nr``, whatever its argument condition."""
        for rule in self.rules:
            if any(self.table[s] == nr for s in rule.syscalls):
                return rule
        return None

    def rule_for(self, nr: int, args: tuple[int, ...]) -> Rule | None:
        """The rule the filters apply to syscall ``nr`` with ``args`` (first match wins, as in
        the compiled filter)."""
        for rule in self.rules:
            if any(self.table[s] == nr for s in rule.syscalls) and _matches(rule.when, args):
                return rule
        return None


def _matches(cond: ArgCondition | None, args: tuple[int, ...]) -> bool:
    if cond is None:
        return True
    low = args[cond.arg] & 0xFFFFFFFF
    return bool(low & cond.value) if cond.op == "any_bits" else low == cond.value


@cache
def syscall_table() -> dict[str, int]:
    raw = json.loads(SYSCALL_TABLE.read_text())
    table = raw.get("syscalls")
    if raw.get("architecture") != "x86_64" or not isinstance(table, dict):
        raise ProfileError(f"{SYSCALL_TABLE} is not an x86_64 syscall table")
    return {str(k): int(v) for k, v in table.items()}


def load_profile(path: Path = DEFAULT_PROFILE) -> Profile:
    """Parse and check a profile. Anything unexpected is an error, never a silently weaker
    filter."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ProfileError(f"cannot read seccomp profile {path}: {exc}") from exc
    return parse_profile(raw, str(path))


def parse_profile(raw: Any, where: str = "profile") -> Profile:
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: a profile is a JSON object")
    unknown = set(raw) - {"name", "description", "architecture", "default_action", "rules"}
    if unknown:
        raise ProfileError(f"{where}: unknown keys {sorted(unknown)}")
    if raw.get("architecture") != "x86_64":
        raise ProfileError(f"{where}: architecture must be x86_64")
    if raw.get("default_action", "allow") != "allow":
        raise ProfileError(f"{where}: default_action must be allow (profiles are denylists)")
    table = syscall_table()
    rules = []
    for i, r in enumerate(raw.get("rules", [])):
        at = f"{where}: rules[{i}]"
        if not isinstance(r, dict) or set(r) - {"syscalls", "action", "when", "comment"}:
            raise ProfileError(f"{at}: expected {{syscalls, action, when?, comment?}}")
        names = r.get("syscalls")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ProfileError(f"{at}: syscalls must be a non-empty list of names")
        missing = [n for n in names if n not in table]
        if missing:
            raise ProfileError(f"{at}: unknown syscalls {missing}")
        action = r.get("action")
        if action not in ("deny", "kill", "enosys"):
            raise ProfileError(f"{at}: action must be deny, kill or enosys")
        rules.append(Rule(tuple(names), action, _parse_condition(r.get("when"), at), str(r.get("comment", ""))))
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{where}: name is required")
    return Profile(name, tuple(rules), table)


def _parse_condition(raw: Any, at: str) -> ArgCondition | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"arg", "op", "value"}:
        raise ProfileError(f"{at}: when must be {{arg, op, value}}")
    arg, op, value = raw["arg"], raw["op"], raw["value"]
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise ProfileError(f"{at}: when.value {value!r} is not an integer") from None
    if not isinstance(arg, int) or not 0 <= arg <= 5:
        raise ProfileError(f"{at}: when.arg must be 0..5")
    if op not in ("any_bits", "eq") or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise ProfileError(f"{at}: when.op must be any_bits or eq with a 32-bit value")
    return ArgCondition(arg, op, value)


# ---------------------------------------------------------------------------------------------
# Classic BPF assembly


class _Program:
    """Straight-line BPF with forward jumps to labels, resolved at the end (the kernel only
    accepts forward jumps, of at most 255 instructions for conditional ones)."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int | str, int | str, int]] = []
        self.labels: dict[str, int] = {}

    def emit(self, op: int, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        self.code.append((op, jt, jf, k))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (op, jt, jf, k) in enumerate(self.code):
            out += struct.pack("<HBBI", op, self._offset(pc, jt), self._offset(pc, jf), k)
        if len(self.code) > 4096:
            raise ProfileError("seccomp filter longer than the kernel's 4096 instructions")
        return bytes(out)

    def _offset(self, pc: int, target: int | str) -> int:
        if isinstance(target, int):
            return target
        off = self.labels[target] - pc - 1
        if not 0 <= off <= 255:
            raise ProfileError(f"seccomp filter jump of {off} to {target} is out of range")
        return off


def _ret(action: str, mode: Mode, errno: int = errno_mod.EPERM) -> int:
    if action == "allow":
        return RET_ALLOW
    if action == "enosys":
        return RET_ERRNO | errno_mod.ENOSYS
    if action == "notify":
        return RET_USER_NOTIF
    if mode is Mode.SUPERVISED:
        return RET_TRACE
    return RET_KILL_PROCESS if action == "kill" else RET_ERRNO | errno


def _compile(
    checks: Iterable[tuple[int, ArgCondition | None, str]], on_foreign_abi: int, mode: Mode
) -> bytes:
    """``checks`` are (syscall number, condition, action) in priority order."""
    p = _Program()
    checks = list(checks)
    p.emit(_LD_W_ABS, _OFF_ARCH)
    p.emit(_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0)
    p.emit(_RET_K, on_foreign_abi)
    p.emit(_LD_W_ABS, _OFF_NR)
    p.emit(_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1)
    p.emit(_RET_K, on_foreign_abi)
    # One comparison per syscall, each jumping to its own block; the blocks follow the
    # default return, so every jump is forward.
    for i, (nr, _, _) in enumerate(checks):
        p.emit(_JMP_JEQ_K, nr, f"b{i}", 0)
    p.emit(_RET_K, RET_ALLOW)
    for i, (_, cond, action) in enumerate(checks):
        p.label(f"b{i}")
        if cond is not None:
            p.emit(_LD_W_ABS, _OFF_ARGS + 8 * cond.arg)
            op = _JMP_JSET_K if cond.op == "any_bits" else _JMP_JEQ_K
            # Matched: fall to the action. Not matched: allowed (a later rule for the same
            # syscall would have been unreachable in the jump table anyway).
            p.emit(op, cond.value, 1, 0)
            p.emit(_RET_K, RET_ALLOW)
        p.emit(_RET_K, _ret(action, mode))
    return p.assemble()


def _rule_checks(profile: Profile) -> list[tuple[int, ArgCondition | None, str]]:
    seen: set[int] = set()
    checks: list[tuple[int, ArgCondition | None, str]] = []
    for rule in profile.rules:
        for name in rule.syscalls:
            nr = profile.table[name]
            if nr in seen:
                raise ProfileError(f"{profile.name}: syscall {name} appears in two rules")
            seen.add(nr)
            checks.append((nr, rule.when, rule.action))
    return checks


def enforcement_filter(profile: Profile, mode: Mode) -> bytes:
    """The filter the runtime loads inside the sandbox (see the module docstring)."""
    return _compile(_rule_checks(profile), RET_KILL_PROCESS, mode)


def notification_filter(profile: Profile) -> bytes:
    """The filter installed before the runtime starts: reported rules and the setup markers
    notify the supervisor; everything else (foreign ABIs included, which the enforcement
    filter kills) is left to the enforcement filter."""
    checks: list[tuple[int, ArgCondition | None, str]] = [
        (nr, cond, "notify" if action in REPORTED else "allow") for nr, cond, action in _rule_checks(profile)
    ]
    checks = [c for c in checks if c[2] == "notify"]
    checks.append((profile.table["prctl"], ArgCondition(0, "eq", PR_SET_SECCOMP), "notify"))
    checks.append((profile.table["seccomp"], ArgCondition(0, "eq", SECCOMP_SET_MODE_FILTER), "notify"))
    return _compile(checks, RET_ALLOW, Mode.SUPERVISED)


# ---------------------------------------------------------------------------------------------
# User notification

_NOTIF_RECV = 0xC0502100
_NOTIF_SEND = 0xC0182101
_NOTIF_ID_VALID = 0x40082102
_FLAG_CONTINUE = 1
_NOTIF = struct.Struct("<QII iIQ6Q")
_RESP = struct.Struct("<QqiI")


def notification_available() -> str | None:
    """None when this kernel can supervise syscalls by user notification, else why not."""
    try:
        actions = Path("/proc/sys/kernel/seccomp/actions_avail").read_text().split()
    except OSError as exc:
        return f"cannot read the kernel's seccomp actions: {exc}"
    if "user_notif" not in actions:
        return "the kernel has no SECCOMP_RET_USER_NOTIF"
    return None


@dataclass(slots=True)
class Violation:
    syscall: str
    action: str
    count: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"syscall": self.syscall, "action": self.action, "count": self.count}


class Supervisor:
    """Answers the notifications of one run. :meth:`handle` is called when the listener is
    readable; it never blocks and never lets a reported syscall through once the runtime's
    setup is over."""

    def __init__(self, profile: Profile, listener: int, on_kill: Callable[[], None]) -> None:
        self.profile = profile
        self.listener = listener
        self.on_kill = on_kill
        self.enforcing = False
        self.violations: dict[tuple[str, str], Violation] = {}
        self._names = profile.names_by_number
        self._buf = bytearray(_NOTIF.size)
        self._lock = threading.Lock()

    def handle(self) -> bool:
        """Answer one pending notification; False once the listener has no more users."""
        self._buf[:] = bytes(len(self._buf))  # the kernel refuses a non-zeroed struct
        try:
            fcntl.ioctl(self.listener, _NOTIF_RECV, self._buf, True)
        except OSError as exc:
            if exc.errno in (errno_mod.ENOENT, errno_mod.EINTR, errno_mod.EAGAIN):
                return True  # the caller died or was interrupted before we read it
            return False
        nid, _pid, _flags, nr, _arch, _ip, *args = _NOTIF.unpack(self._buf)
        if self._is_setup_marker(nr, tuple(args)):
            self.enforcing = True
            self._reply(nid, 0, 0, _FLAG_CONTINUE)
            return True
        if not self.enforcing:
            # The runtime setting the sandbox up (bwrap's own mounts and unshare).
            self._reply(nid, 0, 0, _FLAG_CONTINUE)
            return True
        rule = self.profile.rule_for(nr, tuple(args))
        action = rule.action if rule is not None else "deny"
        name = self._names.get(nr, f"syscall_{nr}")
        with self._lock:
            v = self.violations.setdefault((name, action), Violation(name, action))
            v.count += 1
        if action == "kill":
            # Before answering: the caller stays blocked in the syscall until it dies.
            self.on_kill()
        self._reply(nid, 0, -errno_mod.EPERM, 0)
        return True

    def _is_setup_marker(self, nr: int, args: tuple[int, ...]) -> bool:
        low = args[0] & 0xFFFFFFFF
        return (nr == self.profile.table["prctl"] and low == PR_SET_SECCOMP) or (
            nr == self.profile.table["seccomp"] and low == SECCOMP_SET_MODE_FILTER
        )

    def _reply(self, nid: int, val: int, error: int, flags: int) -> None:
        try:
            fcntl.ioctl(self.listener, _NOTIF_SEND, bytearray(_RESP.pack(nid, val, error, flags)), True)
        except OSError:
            pass  # the caller is gone (ENOENT); nothing to answer

    def report(self) -> list[dict[str, Any]]:
        with self._lock:
            return [v.as_dict() for v in sorted(self.violations.values(), key=lambda v: (v.syscall, v.action))]
