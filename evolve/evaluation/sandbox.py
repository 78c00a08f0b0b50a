"""Isolation layers for untrusted processes (the genome, and the scorer that loads its model).

Each layer is used when the operating system offers it and reported by name otherwise missing:

- **landlock** (Linux >= 5.13, unprivileged): the process may read only system and Python
  directories plus the paths it is given, write only its scratch directory, open no TCP
  connections, and (ABI >= 6) signal no process outside itself. This is what keeps the
  validation data, the trusted package files and secrets on disk out of reach.
- **namespaces** (`unshare`; root, or any user where user namespaces are enabled): PID (init of
  its own namespace: when it dies the kernel kills everything it left behind), mount (a fresh
  /proc with only its own processes; private tmpfs on /tmp and /dev/shm and every other mount
  read-only: evolve.evaluation.mounts), IPC (no SysV or POSIX
  IPC shared with anyone) and network (no interface but a loopback that is down: no TCP, UDP
  or abstract sockets), so nothing survives an evaluation and no other process is visible.
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

from evolve.evaluation import syscalls

# Landlock ABI constants (include/uapi/linux/landlock.h).
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446      # x86_64 and aarch64 alike
_PR_SET_NO_NEW_PRIVS = 38
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ALL_V1 = (1 << 13) - 1          # execute .. make_sym
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_MAKE_CHAR, _FS_MAKE_BLOCK = 1 << 6, 1 << 11
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/dri",
            "/dev/nvidia-caps")
_NET_ALL = (1 << 0) | (1 << 1)      # bind_tcp, connect_tcp (ABI >= 4)
_SCOPE_ALL = (1 << 0) | (1 << 1)    # abstract unix sockets, signals (ABI >= 6)

# Read-only roots every Python/torch process needs; everything else is unreadable.
# Of /etc only what the dynamic loader, libc, Python and CUDA read (measured with strace for
# import torch, a training step and torch.export): not /etc/shadow and the like, which a genome
# running as uid 0 could otherwise read as the files' owner.
ETC_READ = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ld.so.preload", "nsswitch.conf",
            "passwd", "group", "localtime", "timezone", "hosts", "host.conf", "resolv.conf",
            "gai.conf", "os-release", "alternatives", "mime.types", "ssl", "nvidia",
            "OpenCL", "vulkan")
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/opt", "/proc", "/sys",
               "/dev", "/run/nvidia-persistenced", "/var/lib/nvidia",
               *(f"/etc/{name}" for name in ETC_READ))
# Never readable under those roots: other processes' cgroup membership (host pids).
SYSTEM_HIDDEN = ("/sys/fs/cgroup",)


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


def carve(roots: list[str], hidden: list[str]) -> list[tuple[str, bool]]:
    """Read rules for `roots` minus the `hidden` subtrees, as (path, full) pairs: full=True
    grants reading everything beneath path; full=False only listing that directory's names.

    Landlock rules only add rights, so a hidden directory inside a root (the stdlib's
    validation packages inside the Python prefix) is carved out by granting the root's other
    entries one by one, down the path to it: a few hundred rules."""
    hidden = [os.path.realpath(h) for h in hidden]
    rules: list[tuple[str, bool]] = []

    def walk(path: str) -> None:
        real = os.path.realpath(path)
        inside = [h for h in hidden if h == real or h.startswith(real.rstrip("/") + "/")]
        if not inside:
            rules.append((path, True))
        elif real not in inside:
            rules.append((path, False))
            try:
                names = sorted(os.listdir(path))
            except OSError:
                return
            for name in names:
                walk(os.path.join(path, name))

    for root in roots:
        walk(root)
    return rules


def apply_landlock(read: list[str], write: list[str], hidden: list[str] = ()) -> str | None:
    """Restrict this process (and everything it starts) for good. Returns an error or None.
    `hidden`: paths under the read roots that stay unreadable (see carve)."""
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
        # /dev: the few devices a training process needs, and the GPU's nodes (which need
        # ioctl); nothing else (not the kernel log, not disks), and nothing created there.
        dev_rights = _FS_READ_FILE | _FS_WRITE_FILE | _FS_READ_DIR | (_FS_IOCTL_DEV if abi >= 5 else 0)
        devices = [d for d in _DEVICES if os.path.exists(d)]
        devices += sorted(str(p) for p in Path("/dev").glob("nvidia*"))
        rules = [(p, read_rights if full else _FS_READ_DIR) for p, full in carve(read, list(hidden))]
        # Writable directories: everything but device nodes.
        rules += [(p, fs & ~(_FS_MAKE_CHAR | _FS_MAKE_BLOCK)) for p in write]
        rules += [("/dev", _FS_READ_DIR)] + [(d, dev_rights) for d in devices]
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


def harden() -> str | None:
    """Drop every capability, then install the seccomp filter (evolve.evaluation.syscalls): the
    last step before untrusted code runs. Returns an error or None."""
    return syscalls.drop_capabilities() or syscalls.apply_seccomp()


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


# (evolve.evaluation.zygote builds the same by hand, for genomes forked from it)
ROOT_NAMESPACES = ("--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--net")
# Strongest first. Root can create namespaces directly; an unprivileged user needs a user
# namespace first (--map-root-user: root inside it, nobody special outside).
_NS_CANDIDATES = (
    (("unshare", *ROOT_NAMESPACES), ("pidns", "mountns", "ipcns", "netns")),
    (("unshare", "--user", "--map-root-user", *ROOT_NAMESPACES), ("userns", "pidns", "mountns", "ipcns", "netns")),
    (("unshare", "--pid", "--fork", "--kill-child"), ("pidns",)),
    (("unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child"), ("userns", "pidns")),
)
_said: set[str] = set()


@functools.lru_cache(maxsize=1)
def namespaces() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(command prefix, layer names) of the strongest set of namespaces this system lets us
    create, tried once per process by running `python -c pass` under each; ((), ()) if none.

    In them the program is init of its own PID namespace (when it dies, the kernel kills every
    process it left behind, setsid() or not), sees a fresh /proc with only its own processes,
    has its own SysV/POSIX IPC and a network namespace with nothing but a loopback that is
    down (no TCP, no UDP, no abstract sockets shared with the host), and its own mount table
    (evolve.evaluation.runner mounts private tmpfs on /tmp and /dev/shm there)."""
    for prefix, layers in _NS_CANDIDATES:
        try:
            r = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True,
                               timeout=30)
            if r.returncode == 0:
                return prefix, layers
        except (OSError, subprocess.SubprocessError):
            pass
    return (), ()


def import_seconds(prefix: tuple[str, ...], device: str, cache: Path) -> float:
    """Wall seconds for a fresh `python -c "import torch"` (plus CUDA init on cuda) under
    `prefix`: what a genome needs before its first batch. Measured once per machine, Python,
    torch and prefix, and kept in `cache` (a JSON file of the engine's, out of genomes' reach);
    the minimum of three runs, so a busy moment does not inflate it."""
    import json

    code = "import torch" + ("; torch.cuda.init()" if device.startswith("cuda") else "")
    key = f"{sys.executable} {prefix} {code} {_torch_version()}"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), (int, float)):
        return float(known[key])
    runs = []
    for _ in range(3):
        t = time.monotonic()
        r = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, timeout=600)
        if r.returncode == 0:
            runs.append(time.monotonic() - t)
    seconds = min(runs) if runs else 10.0
    known[key] = seconds
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache)
    except OSError:
        pass
    return seconds


def _torch_version() -> str:
    try:
        from importlib.metadata import version
        return version("torch")
    except Exception:
        return "?"


def say_missing(layers: tuple[str, ...]) -> None:
    """One line on stderr, once per process, for each isolation layer this system lacks."""
    missing = [n for n in ("pidns", "mountns", "ipcns", "netns") if n not in layers]
    if landlock_abi() < 1:
        missing.append("landlock")
    text = ", ".join(m for m in missing if m not in _said)
    if text:
        _said.update(missing)
        print(f"sandbox: not available here: {text} (genomes run with the other layers; the "
              "`sandbox` field of each result lists what was active)", file=sys.stderr)


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


MAX_PROCS = 256                      # processes in the genome's session before it is a fork bomb


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


def end_child(proc, timeout: float | None) -> None:
    """Wait up to `timeout` s for `proc` (a Popen-like child of this process) to exit, SIGKILL
    its session if it has not, kill what is left of the session while its pid is still held
    (exited, not reaped), then reap it. A pid killed after it was reaped may name another
    process by then: another evaluation's genome or scorer."""
    end = None if timeout is None else time.monotonic() + timeout
    while proc.returncode is None:
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                break
        except ChildProcessError:
            return                                   # reaped elsewhere
        if end is not None and time.monotonic() > end:
            break
        time.sleep(0.01)
    if proc.returncode is None:
        kill_session(proc.pid)
        proc.wait()


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
