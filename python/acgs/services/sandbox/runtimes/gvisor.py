"""gVisor (``runsc``): the agent's code talks to gVisor's own kernel (the Sentry), which runs
as an unprivileged, seccomp-confined process and reaches the host only through a narrow set of
syscalls and a file proxy (the Gofer).

Each run is an OCI bundle: a read-only root with ``/usr`` bound read-only, the run's tmpfs as
:data:`WORKSPACE` and ``/tmp``, uid 65534 with no capabilities and no_new_privs, and the
seccomp profile translated to OCI, which the Sentry enforces (``--oci-seccomp``). runsc
starts inside the run's cgroup with ``--ignore-cgroups``, so the same cgroup bounds the
Sentry, the Gofer and everything the code does. The Sentry logs each syscall its seccomp
filter refuses ("Syscall N: denied by seccomp") in its debug log, which is how violations are
counted; ``--debug-command=boot`` keeps that log to the Sentry.

The Debian build (December 2022) has the ptrace and KVM platforms; KVM hangs under the
paravirtualised KVM of the project's machines, so ptrace is the default.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import time
from pathlib import Path
from typing import Any

from acgs.services.sandbox.limits import MiB, Rlimits
from acgs.services.sandbox.runtimes.base import (
    SANDBOX_GID,
    SANDBOX_UID,
    WORKSPACE,
    Job,
    Outcome,
    RuntimeName,
    RuntimeStatus,
    ETC_FILES,
    ETC_NET_FILES,
    GROUP,
    PASSWD,
    RuntimeUnavailable,
    tool_version,
    which,
)
from acgs.services.sandbox.runtimes import network
from acgs.services.sandbox.runtimes.launch import Host, Launch, outcome, run_resources, spawn_and_watch
from acgs.services.sandbox.seccomp import Profile
from acgs.services.sandbox.workdir import is_full, mount_capped, unmount

ISOLATION = (
    "application kernel (gVisor Sentry) between the code and the host kernel; the Sentry "
    "itself seccomp-confined; uid 65534 with no capabilities; read-only /usr; private tmpfs "
    "work dir; seccomp profile enforced by the Sentry; cgroup limits over the whole sandbox"
)

#: The Sentry's and Gofer's own threads count against the pids controller: a limit below
#: about 128 can keep a bare shell from starting (measured), so runs get this much on top.
PIDS_OVERHEAD = 256
#: Memory for the Sentry and Gofer themselves, on top of the run's memory_mb.
MEMORY_OVERHEAD_MB = 128
#: The Sentry's debug log (read for violations) lives on a tmpfs of this size: a run that
#: makes it chatty fills that, never the host's disk. Lines past it are dropped by runsc.
DEBUG_LOG_CAP = 8 * MiB

_DENIED = re.compile(rb"Syscall (\d+): (denied|killed) by seccomp")
#: The Sentry (a Go program) dying, e.g. when the pids limit stops it from creating threads.
_FATAL = re.compile(rb"^(?:panic|fatal error): (.+)$", re.MULTILINE)

_OCI_ACTIONS = {"deny": ("SCMP_ACT_ERRNO", 1), "kill": ("SCMP_ACT_KILL", None)}


def oci_seccomp(profile: Profile) -> dict[str, Any]:
    """The profile as an OCI ``linux.seccomp`` object. ``any_bits`` conditions become one
    entry per bit (OCI compares ``(arg & mask) == value``). ``enosys`` rules are left out:
    this runsc answers every ERRNO rule with EPERM whatever ``errnoRet`` says, and EPERM
    from clone3 makes glibc give up instead of falling back to clone; the Sentry's own
    clone3 is what the rule would have hidden from the host, and it never reaches the host."""
    syscalls: list[dict[str, Any]] = []
    for rule in profile.rules:
        if rule.action == "enosys":
            continue
        action, errno = _OCI_ACTIONS[rule.action]
        base: dict[str, Any] = {"names": list(rule.syscalls), "action": action}
        if errno is not None:
            base["errnoRet"] = errno
        cond = rule.when
        if cond is None:
            syscalls.append(base)
        elif cond.op == "eq":
            syscalls.append({**base, "args": [{"index": cond.arg, "value": cond.value, "op": "SCMP_CMP_EQ"}]})
        else:
            for bit in range(32):
                mask = 1 << bit
                if cond.value & mask:
                    syscalls.append(
                        {
                            **base,
                            "args": [{"index": cond.arg, "value": mask, "valueTwo": mask, "op": "SCMP_CMP_MASKED_EQ"}],
                        }
                    )
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": syscalls}


class GvisorRuntime:
    name: RuntimeName = "gvisor"

    def __init__(self, host: Host, binary: str | None = None, platform: str = "ptrace") -> None:
        self.host = host
        self.binary = binary or which("runsc")
        self.platform = platform
        self.state_root = host.instance.dir / "runsc"
        self.rootfs = host.instance.dir / "gvisor-rootfs"
        self._seccomp = oci_seccomp(host.profile)
        self.debug_log_cap = DEBUG_LOG_CAP

    def probe(self) -> RuntimeStatus:
        details: dict[str, object] = {
            "platform": self.platform,
            "seccomp_profile": self.host.profile.name,
            "syscall_monitoring": "Sentry debug log (denied by seccomp)",
            "cgroups": self.host.layout.describe(),
            # What a run allowed the network gets (never the host's namespace).
            "network": network.tools_problem() or "own namespace: slirp4netns and an egress filter",
        }
        if self.binary is None:
            return RuntimeStatus("gvisor", False, ISOLATION, "runsc is not installed (Debian package runsc)", None, details)
        version = tool_version([self.binary, "--version"])
        if os.geteuid() != 0:
            return RuntimeStatus("gvisor", False, ISOLATION, "the controller must run as root to start runsc", version, details)
        missing = self.host.layout.missing()
        if missing:
            return RuntimeStatus("gvisor", False, ISOLATION, f"no cgroup controller for {', '.join(missing)}", version, details)
        return RuntimeStatus("gvisor", True, ISOLATION, None, version, details)

    def run(self, job: Job) -> Outcome:
        if self.binary is None:
            raise RuntimeUnavailable("runsc is not installed")
        started = time.monotonic()
        if job.limits.network:
            problem = network.tools_problem()
            if problem is not None:
                raise RuntimeUnavailable(problem)
        self._ensure_rootfs()
        container = f"acgs-{job.execution_id}"
        bundle = self.host.instance.dir / f"{job.execution_id}.oci"
        logs = bundle / "logs"
        nsfd = -1
        net: network.UserNet | None = None
        logs_mounted = False
        try:
            with run_resources(self.host, job, extra_pids=PIDS_OVERHEAD, memory_overhead_mb=MEMORY_OVERHEAD_MB) as (cg, wd):
                logs.mkdir(parents=True)
                mount_capped(logs, self.debug_log_cap)
                logs_mounted = True
                netns: str | None = None
                if job.limits.network:
                    # A namespace of the run's own, served by slirp4netns and filtered before
                    # runsc starts; runsc's hostinet then uses host sockets *in it* (this
                    # runsc's netstack refuses to start on kernels like the project's: its
                    # "root namespace" test misfires). Held by our descriptor only, so it
                    # disappears with the run (or with the controller).
                    nsfd = network.new_namespace()
                    net = network.UserNet.attach(nsfd, cg.procs_files())
                    netns = f"/proc/{os.getpid()}/fd/{nsfd}"
                    (bundle / "resolv.conf").write_bytes(network.RESOLV_CONF)
                (bundle / "config.json").write_text(json.dumps(self._spec(job, wd.workspace, wd.tmp, netns, bundle)))
                argv = [
                    self.binary,
                    "--root", str(self.state_root),
                    "--platform", self.platform,
                    "--network", "host" if job.limits.network else "none",
                    "--ignore-cgroups",
                    "--oci-seccomp",
                    "--debug", "--debug-command", "boot", "--debug-log", f"{logs}/",
                    "run", "--bundle", str(bundle), container,
                ]  # fmt: skip
                launch = Launch(argv=argv, rlimits=Rlimits(((resource.RLIMIT_CORE, 0),)), drop_to=None)
                watched, _ = spawn_and_watch(self.host, job, cg, launch, started=started)
                full = wd.full()
                result = outcome(job, watched, cg, full, None)
                result.violations, fatal = self._read_log(logs)
                if any(v["action"] == "kill" for v in result.violations) and result.status == "completed":
                    result.status = "killed"
                if fatal is not None and result.status == "completed":
                    # The sandbox's kernel died under the run (contained: nothing survives it).
                    result.status = "killed" if result.limits_hit else "error"
                    result.error = f"the gVisor Sentry stopped: {fatal}"
                if is_full(logs) and result.error is None:
                    result.error = (
                        f"the gVisor debug log reached its cap ({self.debug_log_cap // 1024} KiB): "
                        "violations after that point are not counted"
                    )
                return result
        finally:
            # A killed runsc leaves its container state behind; the cgroup is gone, and so
            # is every process of the sandbox.
            self._forget(container)
            if net is not None:
                net.close()
            if nsfd >= 0:
                os.close(nsfd)
            if logs_mounted:
                unmount(logs)
            shutil.rmtree(bundle, ignore_errors=True)

    # -----------------------------------------------------------------------------------------

    def _ensure_rootfs(self) -> None:
        """A read-only root shared by the instance's runs: mount points, the /usr symlinks and
        the sandbox user's passwd and group."""
        if (self.rootfs / "etc" / "passwd").exists():
            return
        tmp = self.rootfs.with_name(self.rootfs.name + f".{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for d in ("usr", "etc", "proc", "dev", "tmp", WORKSPACE.strip("/")):
            (tmp / d).mkdir(parents=True, exist_ok=True)
        for name in ("bin", "sbin", "lib", "lib64"):
            p = Path("/") / name
            if p.is_symlink():
                os.symlink(os.readlink(p), tmp / name)
        (tmp / "etc" / "passwd").write_bytes(PASSWD)
        (tmp / "etc" / "group").write_bytes(GROUP)
        try:
            os.rename(tmp, self.rootfs)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another thread made it first

    def _spec(self, job: Job, workspace: Path, tmp: Path, netns: str | None = None, bundle: Path | None = None) -> dict[str, Any]:
        lim = job.limits
        mounts: list[dict[str, Any]] = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755"]},
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={min(lim.disk_mb, 64) * MiB}"],
            },
            {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro", "nosuid", "nodev"]},
            {"destination": WORKSPACE, "type": "bind", "source": str(workspace), "options": ["rbind", "rw", "nosuid", "nodev"]},
            {"destination": "/tmp", "type": "bind", "source": str(tmp), "options": ["rbind", "rw", "nosuid", "nodev"]},
        ]
        for name in list(ETC_FILES) + (list(ETC_NET_FILES) if lim.network else []):
            src = Path("/etc") / name
            if src.exists():
                mounts.append({"destination": str(src), "type": "bind", "source": str(src), "options": ["rbind", "ro"]})
        if lim.network and bundle is not None:
            mounts.append(
                {"destination": "/etc/resolv.conf", "type": "bind", "source": str(bundle / "resolv.conf"), "options": ["rbind", "ro"]}
            )
        rlimits = [
            {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
            {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            {"type": "RLIMIT_CPU", "hard": int(lim.cpu_seconds) + 1, "soft": int(lim.cpu_seconds) + 1},
            {"type": "RLIMIT_FSIZE", "hard": lim.disk_mb * MiB, "soft": lim.disk_mb * MiB},
        ]
        namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
        # Never the host's: a new empty one without network, the run's slirp4netns one with.
        namespaces.append({"type": "network", "path": netns} if lim.network and netns is not None else {"type": "network"})
        return {
            "ociVersion": "1.0.2",
            "process": {
                "user": {"uid": SANDBOX_UID, "gid": SANDBOX_GID},
                "args": list(job.argv),
                "env": ["PATH=/usr/local/bin:/usr/bin:/bin", f"HOME={WORKSPACE}", "TMPDIR=/tmp", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"],
                "cwd": WORKSPACE,
                "capabilities": {"bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []},
                "rlimits": rlimits,
                "noNewPrivileges": True,
            },
            "root": {"path": str(self.rootfs), "readonly": True},
            "hostname": "sandbox",
            "mounts": mounts,
            "linux": {
                "namespaces": namespaces,
                "seccomp": self._seccomp,
                "resources": {"memory": {"limit": lim.memory_mb * MiB}},
            },
        }

    def _forget(self, container: str) -> None:
        """Drop runsc's state of a container whose processes are all gone (the run's cgroup
        is empty by now). ``runsc delete -force`` would do the same after trying to signal a
        sandbox that no longer exists, which takes it over a second."""
        for f in self.state_root.glob(f"{container}_*"):
            try:
                f.unlink()
            except OSError:
                pass

    def _read_log(self, logs: Path) -> tuple[list[dict[str, Any]], str | None]:
        """Violations counted from the Sentry's debug log, and the Sentry's own fatal error."""
        names = self.host.profile.names_by_number
        counts: dict[tuple[str, str], int] = {}
        fatal: str | None = None
        for log in sorted(logs.glob("*boot*")):
            try:
                data = log.read_bytes()
            except OSError:
                continue
            for m in _DENIED.finditer(data):
                nr = int(m.group(1))
                rule = self.host.profile.rule_by_number(nr)
                if rule is not None and rule.action == "enosys":
                    continue  # a compatibility answer, not a violation
                action = "kill" if m.group(2) == b"killed" else (rule.action if rule is not None else "deny")
                key = (names.get(nr, f"syscall_{nr}"), action)
                counts[key] = counts.get(key, 0) + 1
            f = _FATAL.search(data)
            if f is not None and fatal is None:
                fatal = f.group(1).decode(errors="replace").strip()[:300]
        return [{"syscall": s, "action": a, "count": n} for (s, a), n in sorted(counts.items())], fatal
