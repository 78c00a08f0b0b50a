"""The genome's own view of the filesystem, made inside its mount namespace before any of its
code runs (called by evolve.evaluation.runner, trusted code, in the child):

- `mount_private_tmp`: fresh tmpfs on /tmp and /dev/shm, gone with the namespace, with the
  scratch directory and the read roots under them bound back;
- `readonly_mounts`: every other mount read-only and nosuid, so no state can be kept in file
  metadata (which landlock does not cover).

Nothing here decides a status or runs where a mount namespace is missing (the supervisor then
lists `tmpfs+rofs` as absent in the result's sandbox field).
"""

from __future__ import annotations

import ctypes
import os

from evolve.evaluation.sandbox import _libc

_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC = 1, 32, 4096, 16384
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_NOATIME, _MS_NODIRATIME, _MS_RELATIME = (
    2, 4, 8, 1024, 2048, 1 << 21)
# Per-mount flags a bind remount must carry over (inside a user namespace they are locked).
_MOUNT_FLAGS = {"nosuid": _MS_NOSUID, "nodev": _MS_NODEV, "noexec": _MS_NOEXEC,
                "noatime": _MS_NOATIME, "nodiratime": _MS_NODIRATIME, "relatime": _MS_RELATIME}


def mount_private_tmp(size_bytes: int, keep: list[str] = ()) -> list[str]:
    """In a new mount namespace: fresh tmpfs on /tmp and /dev/shm, gone when the namespace's
    last process ends, so nothing written there outlives the evaluation. The working directory
    (the scratch directory) and every path in `keep` (the project and Python directories) that
    live under them are bound back at their own paths, so a checkout or a virtual environment
    under /tmp still imports. Returns the paths mounted (empty when not permitted)."""
    libc = _libc()
    cwd = os.getcwd()
    done = []
    for target in ("/tmp", "/dev/shm"):
        if not os.path.isdir(target):
            continue
        under = sorted({os.path.realpath(p) for p in keep
                        if os.path.realpath(p).startswith(target + "/") and os.path.isdir(p)}, key=len)
        under = [p for i, p in enumerate(under)          # outermost only
                 if not any(p.startswith(q + "/") for q in under[:i])]
        # Read roots come back read-only (the kernel refuses writes whatever landlock grants
        # on the tmpfs above them); the scratch directory comes back writable, last.
        binds = [(p, True) for p in under]
        if cwd.startswith(target + "/"):
            binds.append((cwd, False))
        handles = [(p, ro, os.open(p, os.O_PATH | os.O_CLOEXEC)) for p, ro in binds]
        try:
            opts = f"size={size_bytes},mode=1777".encode()
            if libc.mount(b"tmpfs", target.encode(), b"tmpfs", 0, opts) != 0:
                continue
            done.append(target)
            for path, ro, fd in handles:
                os.makedirs(path, exist_ok=True)
                ok = libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None,
                                _MS_BIND | _MS_REC, None) == 0
                if ok and ro:
                    ok = libc.mount(None, path.encode(), None,
                                    _MS_BIND | _MS_REMOUNT | _MS_RDONLY, None) == 0
                if not ok:
                    raise OSError(ctypes.get_errno(), f"cannot bind {path} back")
        finally:
            for _, _, fd in handles:
                os.close(fd)
    os.chdir(cwd)
    return done


def _mounts() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of every mount this process sees."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")    # \040 is a space
            out.append((point, set(fields[5].split(","))))
    return out


def readonly_mounts(writable: list[str]) -> str | None:
    """In this process's own mount namespace: make every mount read-only and nosuid except
    /proc, /dev (devices) and the `writable` paths (the scratch directory, the private /tmp and
    /dev/shm), which are bound to themselves first when they are not mount points. Landlock
    does not cover metadata: without this a genome could chmod, set extended attributes on,
    or stamp the access time of files it may not write, state the next evaluation reads back
    (an adversary carried its trained weights across evaluations in xattrs). A read-only
    mount refuses them all and updates no access time. Returns an error or None."""
    libc = _libc()
    cwd = os.getcwd()
    keep = [os.path.realpath(p) for p in writable]
    points = {m for m, _ in _mounts()}
    for path in keep:
        if path not in points:
            flags = _MS_BIND | _MS_REC
            if libc.mount(path.encode(), path.encode(), None, flags, None) != 0:
                return f"cannot bind {path}: {os.strerror(ctypes.get_errno())}"
    for point, opts in _mounts():
        carried = _MS_BIND | _MS_REMOUNT | _MS_NOSUID
        for name, flag in _MOUNT_FLAGS.items():
            if name in opts:
                carried |= flag
        if point in keep:                          # writable, but never setuid or devices
            flags, what = carried | _MS_NODEV, "nosuid"
        elif point == "/proc" or point.startswith("/proc/") or point == "/dev" \
                or (point.startswith("/dev/") and point != "/dev/shm"):
            continue                               # devices, and the genome's own /proc
        else:
            flags, what = carried | _MS_RDONLY, "read-only"
        if libc.mount(None, point.encode(), None, flags, None) != 0 and \
                not (what == "read-only" and "ro" in opts):
            return f"cannot make {point} {what}: {os.strerror(ctypes.get_errno())}"
    os.chdir(cwd)       # the working directory now resolves through its writable bind
    return None
