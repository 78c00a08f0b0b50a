"""Isolation layers for untrusted processes (the genome, and the scorer that loads its model).

Each layer is used when the operating system offers it and reported by name otherwise missing:

- **landlock** (Linux >= 5.13, unprivileged): the process may read only system and Python
  directories plus the paths it is given, write only its scratch directory, open no TCP
  connections, and (ABI >= 6) signal no process outside itself. This is what keeps the
  validation data, the trusted package files and secrets on disk out of reach.
- **pidns**: the genome runs as init of its own PID namespace (`unshare --pid --fork
  --kill-child`), so when it dies the kernel kills every process it left behind, even ones that
  called setsid() to leave its session.
- **rlimits**: file size (disk fill), core dumps off, address space on CPU (memory bombs become
  MemoryError), process count (fork bombs; not enforced for root).

The supervisor always also kills the child's whole session and process group on every exit
path (`kill_session`). Nothing here decides a status; it only contains.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

# Landlock ABI constants (include/uapi/linux/landlock.h).
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446      # x86_64 and aarch64 alike
_PR_SET_NO_NEW_PRIVS = 38
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ALL_V1 = (1 << 13) - 1          # execute .. make_sym
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_ALL = (1 << 0) | (1 << 1)      # bind_tcp, connect_tcp (ABI >= 4)
_SCOPE_ALL = (1 << 0) | (1 << 1)    # abstract unix sockets, signals (ABI >= 6)

# Read-only roots every Python/torch process needs; everything else is unreadable.
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/proc",
               "/sys", "/dev", "/run/nvidia-persistenced", "/var/lib/nvidia")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


@functools.lru_cache(maxsize=1)
def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when unavailable (other OS, old kernel, seccomp)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        v = _libc().syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except Exception:
        return 0
    return max(0, int(v))


def python_read_roots() -> list[str]:
    """Directories Python needs to import the project and its dependencies: the interpreter's
    prefixes, the import path and the project root, but never the current directory (python -m
    puts it on sys.path, and it may be a home directory) nor the data cache."""
    import evolve
    from evolve.evaluation.task import home_dir

    project = Path(evolve.__file__).resolve().parent.parent
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), str(project)}
    cwd = os.getcwd()
    cache = str(home_dir().resolve())
    home = str(Path.home().resolve())
    for p in sys.path:
        p = os.path.realpath(p) if p else ""
        if not p or not os.path.isdir(p) or p in (cwd, home) or p.startswith(cache):
            continue
        roots.add(p)
    return sorted(roots)


def apply_landlock(read: list[str], write: list[str]) -> str | None:
    """Restrict this process (and everything it starts) for good. Returns an error or None."""
    abi = landlock_abi()
    if abi < 1:
        return "landlock unavailable"
    fs = _FS_ALL_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0) \
        | (_FS_IOCTL_DEV if abi >= 5 else 0)
    attr = _RulesetAttr(fs, _NET_ALL if abi >= 4 else 0, _SCOPE_ALL if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    libc = _libc()
    rfd = libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if rfd < 0:
        return f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}"
    file_rights = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (_FS_TRUNCATE if abi >= 3 else 0) \
        | (_FS_IOCTL_DEV if abi >= 5 else 0)
    read_rights = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
    try:
        # /dev: use existing devices (GPU nodes need ioctl), create nothing: a file made in
        # /dev/shm would outlive the evaluation and could carry weights to the next one.
        dev_rights = _FS_READ_FILE | _FS_WRITE_FILE | _FS_READ_DIR | (_FS_IOCTL_DEV if abi >= 5 else 0)
        rules = [(p, read_rights) for p in read] + [(p, fs) for p in write] + [("/dev", dev_rights)]
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue                      # a missing optional root is simply not granted
            try:
                if not os.path.isdir(path):
                    rights &= file_rights
                pb = _PathBeneath(rights & fs, fd)
                if libc.syscall(_SYS_ADD_RULE, rfd, 1, ctypes.byref(pb), 0) != 0:
                    return f"landlock_add_rule({path}) failed: {os.strerror(ctypes.get_errno())}"
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return "prctl(NO_NEW_PRIVS) failed"
        if libc.syscall(_SYS_RESTRICT, rfd, 0) != 0:
            return f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}"
    finally:
        os.close(rfd)
    return None


def apply_rlimits(address_space_bytes: int | None, file_size_bytes: int, nproc: int | None) -> None:
    """Set hard limits on this process; the genome cannot raise them again."""
    def setlim(which, value):
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass                              # a lower existing hard limit stays, which is fine
    setlim(resource.RLIMIT_CORE, 0)
    setlim(resource.RLIMIT_FSIZE, file_size_bytes)
    if address_space_bytes:
        setlim(resource.RLIMIT_AS, address_space_bytes)
    if nproc:
        setlim(resource.RLIMIT_NPROC, nproc)


@functools.lru_cache(maxsize=1)
def pidns_prefix() -> tuple[str, ...]:
    """Command prefix that runs a program as init of a new PID namespace, or () if not allowed."""
    for prefix in (("unshare", "--pid", "--fork", "--kill-child"),):
        try:
            r = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True,
                               timeout=30)
            if r.returncode == 0:
                return prefix
        except (OSError, subprocess.SubprocessError):
            pass
    return ()


def _session_of(pid: int) -> tuple[int, int] | None:
    """(process group, session) of a live process from /proc; None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None                                  # dead, waiting to be reaped
    return int(fields[2]), int(fields[3])            # pgrp, session


def session_members(sid: int) -> list[int]:
    """Live pids whose session or process group is sid (the genome's session leader's pid)."""
    out = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            ps = _session_of(int(name))
            if ps and sid in ps:
                out.append(int(name))
    return out


def kill_session(sid: int, rounds: int = 10) -> int:
    """SIGKILL the session/process group `sid` and every member found in /proc, repeating until
    none is left (a fork loop may add members between scans). Returns the members found."""
    found = 0
    for _ in range(rounds):
        try:
            os.killpg(sid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        members = session_members(sid) if sys.platform.startswith("linux") else []
        found += len(members)
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if not members:
            break
        time.sleep(0.05)
    return found
