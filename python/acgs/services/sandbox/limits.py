"""Resource limits for a sandboxed run: a cgroup per run (v1 or v2, picked per controller, since
hybrid hosts have some controllers in each) and the rlimits set in the child before it execs.

Each feature takes the first hierarchy that has it: memory and pids limits, the CPU quota, CPU
accounting (``cpu.stat`` exists in every non-root v2 group even with no controller enabled),
and killing the whole tree (``cgroup.kill`` in v2, the v1 freezer, or a signal loop).
Groups live under ``<hierarchy>/<parent>/<instance>/<run>``; the instance is one controller
process, so a controller that starts after a crash can tell stale groups from live ones.
"""

from __future__ import annotations

import errno
import math
import os
import resource
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """The effective limits of one run, as the constitution granted them."""

    cpu_seconds: float
    memory_mb: int
    disk_mb: int
    timeout_s: float
    pids: int
    network: bool


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each feature lives on this host; None where the host lacks it."""

    unified: Path | None
    memory: Path | None
    pids: Path | None
    cpu_quota: Path | None
    cpu_usage: Path | None
    freezer: Path | None
    cgroup_kill: bool

    @property
    def hierarchies(self) -> list[Path]:
        seen: list[Path] = []
        for p in (self.unified, self.memory, self.pids, self.cpu_quota, self.cpu_usage, self.freezer):
            if p is not None and p not in seen:
                seen.append(p)
        return seen

    def is_v2(self, hierarchy: Path | None) -> bool:
        return hierarchy is not None and hierarchy == self.unified

    def describe(self) -> dict[str, str | None]:
        def name(p: Path | None) -> str | None:
            if p is None:
                return None
            return f"v2 ({p})" if self.is_v2(p) else f"v1 ({p})"

        return {
            "memory": name(self.memory),
            "pids": name(self.pids),
            "cpu_quota": name(self.cpu_quota),
            "cpu_usage": name(self.cpu_usage),
            "kill": "v2 cgroup.kill" if self.cgroup_kill else ("v1 freezer" if self.freezer else "signal loop"),
        }

    def missing(self) -> list[str]:
        return [k for k in ("memory", "pids", "cpu_usage") if getattr(self, k) is None]


def _mounts() -> list[tuple[str, Path, set[str]]]:
    out: list[tuple[str, Path, set[str]]] = []
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
            out.append((parts[2], Path(parts[1]), set(parts[3].split(","))))
    return out


def detect_layout(root: Path = CGROUP_ROOT) -> Layout:
    """Per-controller detection: a pure v2 host has everything in the unified hierarchy; a
    hybrid one (v2 at ``unified/`` with few controllers) keeps memory, pids and cpu in v1."""
    unified: Path | None = None
    v2_controllers: set[str] = set()
    v1: dict[str, Path] = {}
    for kind, path, opts in _mounts():
        if not str(path).startswith(str(root)):
            continue
        if kind == "cgroup2":
            unified = path
            try:
                v2_controllers = set((path / "cgroup.controllers").read_text().split())
            except OSError:
                v2_controllers = set()
        else:
            for ctrl in ("memory", "pids", "cpu", "cpuacct", "freezer"):
                if ctrl in opts:
                    v1.setdefault(ctrl, path)

    def pick(v2_name: str, v1_name: str) -> Path | None:
        if unified is not None and v2_name in v2_controllers:
            return unified
        return v1.get(v1_name)

    cpu_usage: Path | None
    if unified is not None and (unified / "cpu.stat").exists():
        cpu_usage = unified
    else:
        cpu_usage = v1.get("cpuacct")
    cgroup_kill = unified is not None and _v2_has_kill(unified)
    return Layout(
        unified=unified,
        memory=pick("memory", "memory"),
        pids=pick("pids", "pids"),
        cpu_quota=pick("cpu", "cpu"),
        cpu_usage=cpu_usage,
        # Only to stop forks while killing; cgroup.kill does that on its own.
        freezer=None if cgroup_kill else v1.get("freezer"),
        cgroup_kill=cgroup_kill,
    )


def _v2_has_kill(unified: Path) -> bool:
    # cgroup.kill (Linux 5.14) exists only in non-root groups: look in a throwaway one.
    probe = unified / f".acgs-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        return (probe / "cgroup.kill").exists()
    finally:
        try:
            probe.rmdir()
        except OSError:
            pass


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in _read(path).splitlines():
            k, _, v = line.partition(" ")
            if v.strip().lstrip("-").isdigit():
                out[k] = int(v)
    except OSError:
        pass
    return out


@dataclass
class Cgroup:
    """The cgroup of one run, in every hierarchy that carries one of its features."""

    layout: Layout
    relpath: str
    paths: dict[Path, Path] = field(default_factory=dict)

    @classmethod
    def create(cls, layout: Layout, relpath: str, limits: Limits, *, cpu_cores: float, extra_pids: int) -> Cgroup:
        """Make the groups and set the limits; ``extra_pids`` covers the runtime's own
        processes and threads (bwrap's monitor and reaper, gVisor's Sentry)."""
        cg = cls(layout, relpath)
        try:
            for h in layout.hierarchies:
                path = h / relpath
                _mkdirs(h, relpath, v2=layout.is_v2(h), layout=layout)
                cg.paths[h] = path
            cg._apply(limits, cpu_cores, extra_pids)
        except BaseException:
            cg.remove()
            raise
        return cg

    def set_limits(self, limits: Limits, *, cpu_cores: float, extra_pids: int) -> None:
        """Set the limits again, on a group that already has some (the warm pool's hand-off).
        Fails (EBUSY) when the group already uses more memory than the new limit."""
        # Swappiness and the CPU quota do not depend on the run: set when the group was made.
        self._apply(limits, cpu_cores, extra_pids, per_run_only=True)

    def _apply(self, limits: Limits, cpu_cores: float, extra_pids: int, *, per_run_only: bool = False) -> None:
        lay = self.layout
        if lay.memory is not None:
            mem = limits.memory_mb * MiB
            p = self.paths[lay.memory]
            if lay.is_v2(lay.memory):
                _write(p / "memory.max", str(mem))
                if (p / "memory.swap.max").exists():
                    _write(p / "memory.swap.max", "0")
            else:
                memsw = p / "memory.memsw.limit_in_bytes"
                try:
                    _write(p / "memory.limit_in_bytes", str(mem))
                except OSError as exc:
                    # v1 keeps limit <= memsw: raising the limit of a group that has one
                    # (a warm sandbox's, at hand-off) takes memsw first.
                    if exc.errno != errno.EINVAL or not memsw.exists():
                        raise
                    _write(memsw, str(mem))
                    _write(p / "memory.limit_in_bytes", str(mem))
                if memsw.exists():
                    # Without this the group swaps instead of reaching its limit.
                    _write(memsw, str(mem))
                if not per_run_only and (p / "memory.swappiness").exists():
                    try:
                        _write(p / "memory.swappiness", "0")
                    except OSError:
                        pass
        if lay.pids is not None:
            _write(self.paths[lay.pids] / "pids.max", str(limits.pids + extra_pids))
        if lay.cpu_quota is not None and cpu_cores > 0 and not per_run_only:
            p = self.paths[lay.cpu_quota]
            period = 100_000
            quota = max(1000, int(cpu_cores * period))
            if lay.is_v2(lay.cpu_quota):
                _write(p / "cpu.max", f"{quota} {period}")
            else:
                _write(p / "cpu.cfs_period_us", str(period))
                _write(p / "cpu.cfs_quota_us", str(quota))

    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files a child writes ``0`` to, joining every group."""
        return [p / "cgroup.procs" for p in self.paths.values()]

    # -- accounting ------------------------------------------------------------------------

    def cpu_seconds(self) -> float | None:
        lay = self.layout
        if lay.cpu_usage is None:
            return None
        p = self.paths[lay.cpu_usage]
        try:
            if lay.is_v2(lay.cpu_usage):
                return _keyed(p / "cpu.stat").get("usage_usec", 0) / 1e6
            return int(_read(p / "cpuacct.usage")) / 1e9
        except (OSError, ValueError):
            return None

    def memory_peak_mb(self) -> float | None:
        lay = self.layout
        if lay.memory is None:
            return None
        p = self.paths[lay.memory]
        name = "memory.peak" if lay.is_v2(lay.memory) else "memory.max_usage_in_bytes"
        try:
            return int(_read(p / name)) / MiB
        except (OSError, ValueError):
            return None

    def oom_killed(self) -> bool:
        lay = self.layout
        if lay.memory is None:
            return False
        p = self.paths[lay.memory]
        if lay.is_v2(lay.memory):
            return _keyed(p / "memory.events").get("oom_kill", 0) > 0
        return _keyed(p / "memory.oom_control").get("oom_kill", 0) > 0

    def memory_limit_reached(self) -> bool:
        lay = self.layout
        if lay.memory is None:
            return False
        p = self.paths[lay.memory]
        if lay.is_v2(lay.memory):
            return _keyed(p / "memory.events").get("max", 0) > 0
        try:
            return int(_read(p / "memory.failcnt")) > 0
        except (OSError, ValueError):
            return False

    def pids_limit_reached(self) -> bool:
        lay = self.layout
        if lay.pids is None:
            return False
        return _keyed(self.paths[lay.pids] / "pids.events").get("max", 0) > 0

    def has_processes(self) -> bool:
        """Whether any process is left (one hierarchy is enough: a process is in all)."""
        for p in self.paths.values():
            return bool(_procs(p))
        return False

    def pids(self) -> set[int]:
        found: set[int] = set()
        for p in self.paths.values():
            found |= _procs(p)
        return found

    # -- teardown --------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL every process of the run, including ones that left the sandbox's process
        tree (double forks): all of them stay in the group."""
        _kill_group(self.layout, self.paths)

    def remove(self) -> None:
        """Kill what is left, then remove the groups (the kernel refuses to remove a group
        with live processes, so this retries briefly)."""
        if not self.paths:
            return
        if self.pids():
            self.kill()
        for h, p in list(self.paths.items()):
            if _rmdir_retry(p):
                del self.paths[h]


def _procs(group: Path) -> set[int]:
    try:
        return {int(x) for x in _read(group / "cgroup.procs").split()}
    except (OSError, ValueError):
        return set()


def _mkdirs(hierarchy: Path, relpath: str, *, v2: bool, layout: Layout) -> None:
    parts = Path(relpath).parts
    cur = hierarchy
    for i, part in enumerate(parts):
        if v2:
            _enable_v2_controllers(cur, layout)
        cur = cur / part
        try:
            cur.mkdir()
        except FileExistsError:
            if i == len(parts) - 1:
                raise


def _enable_v2_controllers(group: Path, layout: Layout) -> None:
    """v2 hands a controller to a child only when every ancestor enables it for its subtree."""
    wanted = [
        name
        for name, h in (("memory", layout.memory), ("pids", layout.pids), ("cpu", layout.cpu_quota))
        if layout.is_v2(h)
    ]
    try:
        enabled = set(_read(group / "cgroup.subtree_control").split())
    except OSError:
        enabled = set()
    missing = [c for c in wanted if c not in enabled]
    if not missing:
        return
    try:
        _write(group / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
    except OSError as exc:
        raise OSError(exc.errno, f"cannot enable {missing} in {group}/cgroup.subtree_control: {exc.strerror}") from exc


def _kill_group(layout: Layout, paths: dict[Path, Path]) -> None:
    if not paths:
        return
    if layout.cgroup_kill and layout.unified in paths:
        p = paths[layout.unified]
        try:
            _write(p / "cgroup.kill", "1")
            _wait_empty(paths.values())
            return
        except OSError:
            pass
    freezer = paths.get(layout.freezer) if layout.freezer is not None else None
    if freezer is not None:
        # Frozen processes cannot fork while we collect them; SIGKILL is delivered on thaw.
        try:
            _write(freezer / "freezer.state", "FROZEN")
        except OSError:
            freezer = None
    for _ in range(50):
        pids: set[int] = set()
        for p in paths.values():
            pids |= _procs(p)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if freezer is not None:
            try:
                _write(freezer / "freezer.state", "THAWED")
            except OSError:
                pass
        _wait_empty(paths.values(), 0.2)
    if freezer is not None:
        try:
            _write(freezer / "freezer.state", "THAWED")
        except OSError:
            pass


def _wait_empty(groups: Iterable[Path], timeout: float = 2.0) -> bool:
    groups = list(groups)
    end = time.monotonic() + timeout
    while True:
        if not any(_procs(g) for g in groups):
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.001)


def _rmdir_retry(path: Path, timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    pause = 0.0005
    while True:
        try:
            # Children first (nothing should create them, but a v2 group could hold some).
            for child in sorted((c for c in path.iterdir() if c.is_dir()), reverse=True):
                _rmdir_retry(child, 0.2)
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            # EBUSY: the last tasks are still being released; that takes microseconds.
            if exc.errno != errno.EBUSY or time.monotonic() > end:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.02)


def sweep(layout: Layout, parent: str, prefix: str, live_instances: set[str]) -> list[str]:
    """Kill and remove the groups named ``<prefix>-<instance>`` whose instance is not live
    (see :func:`acgs.services.sandbox.workdir.sweep`). Returns what was removed."""
    removed: list[str] = []
    for h in layout.hierarchies:
        base = h / parent
        try:
            instances = [d for d in base.iterdir() if d.is_dir() and d.name.startswith(prefix + "-")]
        except OSError:
            continue
        for inst in instances:
            if inst.name.removeprefix(prefix + "-") in live_instances:
                continue
            for run in [d for d in inst.iterdir() if d.is_dir()]:
                _kill_group(layout, {h: run})
                if _rmdir_retry(run):
                    removed.append(str(run))
            if _rmdir_retry(inst):
                removed.append(str(inst))
    return removed


def remove_instance(layout: Layout, parent: str, instance: str) -> None:
    """A controller's own groups, at its orderly stop (its runs are over by then)."""
    for h in layout.hierarchies:
        inst = h / parent / instance
        if inst.is_dir():
            for run in [d for d in inst.iterdir() if d.is_dir()]:
                _kill_group(layout, {h: run})
                _rmdir_retry(run)
            _rmdir_retry(inst)


# ---------------------------------------------------------------------------------------------
# rlimits


@dataclass(frozen=True, slots=True)
class Rlimits:
    """rlimits for the sandbox's first process (inherited by its children). The cgroup is the
    real bound for memory, pids and CPU across the tree; these catch a single process early
    and hold where a controller is missing."""

    values: tuple[tuple[int, int], ...]

    @classmethod
    def for_limits(cls, limits: Limits, *, address_space: bool, files: int = 1024) -> Rlimits:
        vals = [
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_NOFILE, files),
            # Per process; the cgroup's counter covers the tree. +1 s so that the cgroup
            # check, which names the limit, normally fires first.
            (resource.RLIMIT_CPU, math.ceil(limits.cpu_seconds) + 1),
            (resource.RLIMIT_FSIZE, limits.disk_mb * MiB),
        ]
        # RLIMIT_NPROC counts every process of the host uid, so it cannot bound one run;
        # the pids controller does. RLIMIT_AS only where no memory controller exists: it
        # turns an OOM kill, which the cgroup reports, into allocation failures it does not.
        if address_space:
            vals.append((resource.RLIMIT_AS, limits.memory_mb * MiB))
        return cls(tuple(vals))

    def apply(self) -> None:
        for which, value in self.values:
            resource.setrlimit(which, (value, value))
