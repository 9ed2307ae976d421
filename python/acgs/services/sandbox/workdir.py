"""Host-side state of runs: each controller process claims an *instance* directory (held by a
lock for its lifetime), and each run gets a private tmpfs of ``disk_mb`` under it, mounted as
the sandbox's work dir and ``/tmp``.

A tmpfs mounted by the controller, rather than inside the sandbox, lets the controller write
the request's files before the run and see afterwards whether the run filled it (the disk
limit); its pages are charged to the memory cgroup of whoever writes them. After a crash the
lock is gone, which is how the next controller knows whose mounts and groups to sweep.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

from acgs.errors import AcgsError, InvalidInputError

MiB = 1024 * 1024
_MS_NOSUID = 2
_MS_NODEV = 4
_MNT_DETACH = 2


class WorkDirError(AcgsError):
    """The host could not prepare or remove a run's work dir."""

    code = "sandbox_workdir_error"


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount_tmpfs(path: Path, options: str) -> None:
    rc = _libc().mount(b"tmpfs", os.fsencode(path), b"tmpfs", _MS_NOSUID | _MS_NODEV, options.encode())
    if rc != 0:
        e = ctypes.get_errno()
        raise WorkDirError(f"cannot mount a tmpfs at {path}: {os.strerror(e)}")


def _umount(path: Path) -> None:
    if _libc().umount2(os.fsencode(path), _MNT_DETACH) != 0:
        e = ctypes.get_errno()
        if e not in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more)
            raise WorkDirError(f"cannot unmount {path}: {os.strerror(e)}")


def _mounts_under(root: Path) -> list[Path]:
    prefix = str(root).rstrip("/") + "/"
    out = []
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 1:
                # /proc/mounts escapes spaces as \040; our paths never contain any.
                mp = parts[1]
                if mp.startswith(prefix):
                    out.append(Path(mp))
    except OSError:
        pass
    return sorted(out, key=lambda p: len(p.parts), reverse=True)


class Instance:
    """One controller process's claim: ``<root>/<id>/`` for its runs and ``<root>/<id>.lock``
    held with flock until the process ends (the kernel drops it on a crash too)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # The sandbox user must be able to reach its work dir through these.
        os.chmod(root, 0o711)
        self.id = secrets.token_hex(6)
        self.lock_path = root / f"{self.id}.lock"
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self.cgroup_name = cgroup_name(root, self.id)
        self.dir = root / self.id
        self.dir.mkdir(mode=0o711)
        os.chmod(self.dir, 0o711)

    def close(self) -> None:
        for m in _mounts_under(self.dir):
            try:
                _umount(m)
            except WorkDirError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self.lock_path.unlink()
        except OSError:
            pass
        os.close(self._lock_fd)


def runs_dir_tag(root: Path) -> str:
    """Tells apart the controllers that keep their runs in different directories, so that
    none sweeps another's cgroups (liveness is only known for the instances of one dir)."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]


def cgroup_name(root: Path, instance: str) -> str:
    return f"{runs_dir_tag(root)}-{instance}"


def is_live(root: Path, instance: str) -> bool:
    """Whether the controller instance that owns ``instance`` still runs."""
    try:
        fd = os.open(root / f"{instance}.lock", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def sweep(root: Path) -> tuple[set[str], list[str]]:
    """Unmount and delete the run dirs of dead instances. Returns the live instances and
    what was removed."""
    live: set[str] = set()
    removed: list[str] = []
    if not root.is_dir():
        return live, removed
    names = {p.name.removesuffix(".lock") for p in root.iterdir()}
    for name in sorted(names):
        if is_live(root, name):
            live.add(name)
            continue
        inst = root / name
        for m in _mounts_under(inst):
            try:
                _umount(m)
                removed.append(str(m))
            except WorkDirError:
                pass
        if inst.exists():
            shutil.rmtree(inst, ignore_errors=True)
            removed.append(str(inst))
        try:
            (root / f"{name}.lock").unlink()
        except OSError:
            pass
    return live, removed


#: Longest file name component and path a request may give (Linux's NAME_MAX and a margin
#: under PATH_MAX for the work dir's own path).
NAME_MAX = 255
PATH_MAX = 3072


def check_files(files: Mapping[str, bytes], limit_bytes: int) -> dict[PurePosixPath, bytes]:
    """Validate the request's file names and total size. A name is a relative path of plain
    components: no empty, ``.`` or ``..`` component (PurePosixPath would quietly drop a
    ``.``, so ``.`` alone or ``./a`` next to ``a`` are refused here, not discovered later), no
    NUL, none that is both a file and another file's directory."""
    out: dict[PurePosixPath, bytes] = {}
    total = 0
    for name, content in files.items():
        raw = name.split("/")
        if not name or "\0" in name or any(part in ("", ".", "..") for part in raw):
            raise InvalidInputError(f"file name {name!r} must be a relative path inside the work dir")
        if len(os.fsencode(name)) > PATH_MAX or any(len(os.fsencode(part)) > NAME_MAX for part in raw):
            raise InvalidInputError(f"file name {name[:64]!r}... is too long")
        p = PurePosixPath(name)
        if p.parts[0] == ".tmp":
            raise InvalidInputError(f"file name {name!r}: .tmp is reserved")
        out[p] = content
        total += len(content)
    for p in out:
        for parent in p.parents:
            if parent in out:
                raise InvalidInputError(f"file name {str(p)!r} needs {str(parent)!r} to be a directory, but it is a file")
    if total > limit_bytes:
        raise InvalidInputError(f"files total {total} bytes, over the disk limit of {limit_bytes} bytes")
    return out


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` or raise: a short write (a full tmpfs returns one before ENOSPC)
    is retried, never taken for the whole."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def mount_capped(path: Path, size_bytes: int) -> None:
    """A private tmpfs of ``size_bytes`` at ``path`` (an existing directory), for files the
    controller writes on a run's behalf (gVisor's debug log): full is full, never the host's
    disk."""
    _mount_tmpfs(path, f"size={max(size_bytes // 1024, 64)}k,mode=0700")


def unmount(path: Path) -> None:
    _umount(path)


def is_full(path: Path, slack: int = 8192) -> bool:
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < slack


@dataclass
class WorkDir:
    """A run's tmpfs: ``workspace/`` (the sandbox's cwd, with the request's files) and
    ``tmp/`` (the sandbox's /tmp), both counted against one size."""

    path: Path
    size_bytes: int

    @property
    def workspace(self) -> Path:
        return self.path / "workspace"

    @property
    def tmp(self) -> Path:
        return self.path / "tmp"

    @classmethod
    def create(
        cls, parent: Path, name: str, size_mb: int, uid: int, gid: int, files: Mapping[PurePosixPath, bytes]
    ) -> WorkDir:
        path = parent / name
        path.mkdir(mode=0o700)
        wd = cls(path, size_mb * MiB)
        try:
            _mount_tmpfs(path, f"size={size_mb}m,mode=0700,uid={uid},gid={gid}")
            for d in (wd.workspace, wd.tmp):
                d.mkdir()
                os.chown(d, uid, gid)
            os.chmod(wd.tmp, 0o1777)
            wd._write_files(files, uid, gid)
        except OSError as exc:
            wd.remove()
            raise _file_error(exc) from exc
        except BaseException:
            wd.remove()
            raise
        return wd

    def write_files(self, files: Mapping[PurePosixPath, bytes], uid: int, gid: int) -> None:
        """Put a run's files into a work dir made earlier (the warm pool's): only safe while
        nothing but the controller has written to it, which is the pool's rule."""
        try:
            self._write_files(files, uid, gid)
        except OSError as exc:
            raise _file_error(exc) from exc

    def _write_files(self, files: Mapping[PurePosixPath, bytes], uid: int, gid: int) -> None:
        for rel, content in files.items():
            target = self.workspace / rel
            for parent_dir in reversed(target.relative_to(self.workspace).parents):
                d = self.workspace / parent_dir
                if not d.exists():
                    d.mkdir()
                    os.chown(d, uid, gid)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                write_all(fd, content)
                os.fchown(fd, uid, gid)
            finally:
                os.close(fd)

    def used_bytes(self) -> int:
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def full(self) -> bool:
        """Whether the run reached its disk limit (less than one page left)."""
        try:
            st = os.statvfs(self.path)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < 4096 * 2 or st.f_favail == 0

    def remove(self) -> None:
        _umount(self.path)
        shutil.rmtree(self.path, ignore_errors=True)


def _file_error(exc: OSError) -> AcgsError:
    """What a failure to write the request's files means for the client: its files do not
    fit or cannot exist (a 4xx), or the host failed (the run fails)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return InvalidInputError("the request's files do not fit in the disk limit (file system blocks and inodes count)")
    if exc.errno in (errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ELOOP):
        return InvalidInputError(f"the request's files cannot be laid out in the work dir: {exc.strerror}")
    return WorkDirError(f"cannot prepare the work dir: {exc}")
