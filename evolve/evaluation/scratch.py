"""The genome's scratch directories, seen from the supervisor: how much disk a tree takes, how
much more the genome's processes keep alive in files deleted from it (`held_bytes`), how to
remove whatever a genome left in one, and the sweep of directories that supervisors which died
left behind.

Everything here treats the directory as hostile: no recursion (a genome nests directories
thousands deep), no link followed, nothing read by a path the genome could swap. It does not
create scratch directories or decide what a genome may do there (see evolve.evaluation.supervisor
and evolve.evaluation.sandbox).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Iterable

SCRATCH_LIMIT = 8 * 2 ** 30          # bytes the genome may write in its scratch directory
MAX_SCRATCH_ENTRIES = 50_000         # files and directories in it: a walk of 150,000 cost the
                                     # supervisor 0.6 s of CPU (adversary round 11), so 50,000
                                     # ~0.2 s; torch.compile's caches for a model: hundreds
MAX_DEPTH = 128                      # directories nested in it (an inductor cache nests ~5)
MAX_HELD_STATS = 200_000             # stat and kcmp calls one count of held files may make
                                     # (~0.3 s of the supervisor's CPU; an honest genome: a
                                     # few thousand)


def _read_tail(f, max_bytes: int) -> bytes:
    """The last max_bytes of an open file, read through its descriptor (never by path)."""
    try:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - max_bytes))
        return f.read(max_bytes)
    except OSError:
        return b""


def _dir_size(path: Path, max_entries: int | None = None) -> int:
    """Bytes the tree under path takes on disk (allocated blocks of every entry, directories
    and links included: an adversary filled 600 MB with empty directories that a sum of file
    sizes saw as 1 KB), walked without recursion (a genome nested directories 1,100 deep and
    os.walk raised RecursionError) and without following links. Past `max_entries` entries,
    or below MAX_DEPTH directories, it stops and returns SCRATCH_LIMIT + 1: that is a fault by
    itself. So does a directory it cannot list, except one the genome removed meanwhile.

    Each directory is opened relative to its parent's descriptor and each entry stat()ed
    relative to its directory, so an entry costs the same at any depth and no path is too
    long (adversary round 10: a chain 1,900 deep made each walk by full paths cost the
    supervisor 1.55 s of CPU, uncharged to the genome, for 0.2 s of the genome's)."""
    import errno

    max_entries = MAX_SCRATCH_ENTRIES if max_entries is None else max_entries
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    gone = (errno.ENOENT, errno.ENOTDIR)
    # Why O_NOATIME: a directory's access time tells its owner when it was listed, i.e. when
    # the supervisor looks (adversary round 12 timed its hiding to the walk; where the owner
    # differs, without CAP_FOWNER, the kernel refuses the flag and the walk goes without it).
    try:
        root = os.open(path, flags | os.O_NOATIME)
        flags |= os.O_NOATIME
    except PermissionError:
        try:
            root = os.open(path, flags)
        except OSError as err:
            return 0 if err.errno in gone else SCRATCH_LIMIT + 1
    except OSError as err:
        return 0 if err.errno in gone else SCRATCH_LIMIT + 1
    stack: list = []                       # (descriptor, its listing), one per open level
    total, entries = 0, 0
    try:
        stack.append((root, os.scandir(root)))
        while stack:
            fd, listing = stack[-1]
            try:
                e = next(listing, None)
            except OSError:
                e = None                   # the directory went away while it was listed
            if e is None:
                listing.close()
                os.close(fd)
                stack.pop()
                continue
            entries += 1
            if entries > max_entries:
                return SCRATCH_LIMIT + 1
            try:
                total += e.stat(follow_symlinks=False).st_blocks * 512
                if e.is_dir(follow_symlinks=False):
                    if len(stack) >= MAX_DEPTH:
                        return SCRATCH_LIMIT + 1
                    child = os.open(e.name, flags, dir_fd=fd)
                    try:
                        stack.append((child, os.scandir(child)))
                    except OSError:
                        os.close(child)
                        raise
            except OSError as err:
                if err.errno not in gone:
                    return SCRATCH_LIMIT + 1
        return total
    finally:
        for fd, listing in stack:
            listing.close()
            os.close(fd)


def held_bytes(pids: Iterable[int], device: int) -> int:
    """Bytes of inodes without a name on `device` (the scratch directory's filesystem: deleted
    files, and directories) that the processes `pids` keep allocated. The walk of `_dir_size`
    cannot see them; adversaries held 3 files of 4 GiB each way below, past the scratch limit,
    on the host's disk. Each inode counts once.

    Per thread (/proc/PID/task/TID: a process whose main thread exited alone lists nothing at
    /proc/PID, adversary round 12), through stat() of the kernel's links, which reaches an
    inode named or not without opening it:
    - its descriptors (fd/; unlinked_fill.py, round 11; a removed directory held open,
      dir_hold.py, round 14), each descriptor table once (kcmp: threads share one; reading it
      per thread let 900 threads cost the supervisor 5.6 s a check, fd_fanout.py, round 14);
    - the program it runs, its working and root directories (exe, cwd, root; exe_hold.py,
      round 13);
    - the deleted files its address space maps, from its maps, each sized through
      /proc/TID/map_files/RANGE (once per process: threads share their mappings).
    Files held in flight (a descriptor sent over a unix socket and not yet received) are out of
    reach: the genome's seccomp filter refuses sendmsg, which carries them
    (evolve.evaluation.syscalls). memfd and /tmp, /dev/shm files are memory (other devices),
    and the memory cgroup bounds them.

    What cannot be measured is a fault by itself, SCRATCH_LIMIT + 1, as `_dir_size` returns
    for a directory it cannot list: more than MAX_HELD_STATS calls (stat, kcmp), a live
    thread whose descriptors or maps this process may not read (a non-dumpable process hides them from a
    supervisor without CAP_SYS_PTRACE), or a deleted mapping whose file it may not stat
    (map_files needs CAP_SYS_ADMIN). A thread that has already let go of its memory (it is
    exiting: the kernel makes its files root's then) is passed over."""
    sizes: dict[int, int] = {}
    stats = 0                                  # stat() and kcmp() calls: bounded by the cap

    def count(path: str) -> None:
        nonlocal stats
        stats += 1
        try:
            st = os.stat(path)
        except OSError:
            return
        # any inode without a name: a directory keeps its blocks too (round 14, dir_hold.py:
        # a directory grown by 12,000 long names, emptied, removed and held open kept 4.5 MiB)
        if st.st_nlink == 0 and st.st_dev == device:
            sizes[st.st_ino] = max(sizes.get(st.st_ino, 0), st.st_blocks * 512)

    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue                           # the process is gone
        mapped = False
        tables: list[int] = []                 # a thread of each table of this process read
        for tid in tasks:
            base = f"/proc/{pid}/task/{tid}"
            for link in ("exe", "cwd", "root"):
                count(f"{base}/{link}")
            # The threads of a process mostly share one descriptor table: read each table
            # once (round 14, fd_fanout.py: 900 threads over 4,000 descriptors cost the
            # supervisor 5.6 s a check, read per thread), and stop at MAX_HELD_STATS calls, a
            # fault by itself. (Processes that share a table are read once each.)
            stats += len(tables)
            if not _table_seen(int(tid), tables):
                try:
                    names = os.listdir(f"{base}/fd")
                except PermissionError:
                    if _let_go(base):
                        continue
                    return SCRATCH_LIMIT + 1   # hidden (PR_SET_DUMPABLE 0, an unreadable exec)
                except OSError:
                    continue                   # the thread is gone
                tables.append(int(tid))
                for name in names:
                    count(f"{base}/fd/{name}")
            if stats > MAX_HELD_STATS:
                return SCRATCH_LIMIT + 1
            if not mapped:
                found = _deleted_mappings(base, tid, device)
                if found is None:
                    return SCRATCH_LIMIT + 1
                for inode, n in found.items():
                    sizes[inode] = max(sizes.get(inode, 0), n)
                mapped = bool(found) or _has_maps(base)
    return sum(sizes.values())


def _table_seen(tid: int, tables: list[int]) -> bool:
    """Whether thread `tid` shares its descriptor table with one of the threads `tables`
    (kcmp KCMP_FILES; where kcmp is not available, never: each table is then read)."""
    for other in tables:
        if _kcmp(tid, other, _KCMP_FILES) == 0:
            return True
    return False


_KCMP = {"x86_64": 312, "aarch64": 272}.get(os.uname().machine)
_KCMP_FILES = 2


_LIBC = []


def _kcmp(a: int, b: int, kind: int) -> int:
    """kcmp(2): 0 when the two tasks share the resource, else 1, 2, 3 or -1 (an error)."""
    if _KCMP is None:
        return -1
    if not _LIBC:
        import ctypes
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0].syscall(_KCMP, a, b, kind, 0, 0)


def _let_go(base: str) -> bool:
    """Whether the thread at `base` (/proc/PID/task/TID) has no memory left: it is exiting."""
    try:
        with open(f"{base}/statm") as f:
            return not any(int(x) for x in f.read().split())
    except (OSError, ValueError):
        return True                            # gone meanwhile


def _has_maps(base: str) -> bool:
    try:
        with open(f"{base}/maps") as f:
            return bool(f.read(1))
    except OSError:
        return False


def _deleted_mappings(base: str, tid: str, device: int) -> dict[int, int] | None:
    """inode -> allocated bytes of each deleted file of `device` that the thread at `base`
    maps, or None when one cannot be measured (maps or a map_files link not readable by us,
    in a thread that still has its memory)."""
    out: dict[int, int] = {}
    try:
        with open(f"{base}/maps") as f:
            lines = f.read().splitlines()
    except PermissionError:
        return {} if _let_go(base) else None
    except OSError:
        return {}
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].endswith("(deleted)"):
            continue
        try:
            major, minor = (int(x, 16) for x in parts[3].split(":"))
            inode = int(parts[4])
        except ValueError:
            continue
        if os.makedev(major, minor) != device or not inode:
            continue
        try:
            # /proc/TID/map_files (a thread's own /proc entry: the links of a process whose
            # main thread exited are gone from /proc/PID/map_files)
            st = os.stat(f"/proc/{tid}/map_files/{parts[0]}")
        except FileNotFoundError:
            continue                           # unmapped meanwhile
        except OSError:
            if _let_go(base):
                continue
            return None
        if st.st_nlink == 0 and st.st_dev == device:
            out[st.st_ino] = max(out.get(st.st_ino, 0), st.st_blocks * 512)
    return out


def disk_used(scratch: Path, pids: Iterable[int]) -> int:
    """What a genome takes on the scratch filesystem: its scratch tree, plus the deleted files
    its processes `pids` still hold (`held_bytes`)."""
    try:
        device = os.stat(scratch).st_dev
    except OSError:
        return SCRATCH_LIMIT + 1
    held = held_bytes(pids, device)           # first: the pids are freshest now
    return held + _dir_size(scratch)


def unlinked_bytes(f) -> int:
    """Allocated bytes of an open file whose name is gone (the walk misses it)."""
    try:
        st = os.fstat(f.fileno())
    except OSError:
        return 0
    return st.st_blocks * 512 if st.st_nlink == 0 else 0


def remove_tree(path: Path) -> None:
    """Remove a directory the genome wrote into, whatever it made there: no recursion (deep
    nests), no link followed, directories it made unreadable opened up first; what a path
    string cannot reach (past PATH_MAX) goes with `rm -rf`. Best effort."""
    stack, dirs = [str(path)], []
    while stack:
        d = stack.pop()
        dirs.append(d)
        try:
            os.chmod(d, 0o700)
        except OSError:
            pass
        try:
            with os.scandir(d) as entries:
                for e in entries:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        else:
                            os.unlink(e.path)
                    except OSError:
                        pass
        except OSError:
            pass
    for d in reversed(dirs):                 # children before their parents
        try:
            os.rmdir(d)
        except OSError:
            pass
    if os.path.lexists(path):                # paths past PATH_MAX: GNU rm walks by descriptor
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_scratch(root: Path) -> int:
    """Remove scratch directories left by supervisors that died (their pid is gone)."""
    removed = 0
    if not root.is_dir():
        return 0
    for d in root.iterdir():
        m = re.match(r"(?:eval|score)-(\d+)-", d.name)
        if m and not _pid_alive(int(m.group(1))):
            remove_tree(d)
            removed += 1
    return removed
