"""Syscall walls for untrusted processes: every capability dropped, and a seccomp filter.

A genome (and the model process) may run as uid 0, for instance when the engine runs as root.
Namespaces and landlock do not cover everything root can do: an adversary carried weights
between evaluations in the kernel keyring, slowed the machine's monotonic clock with adjtimex
(the supervisor's budget clock), and could make device nodes or open a vsock socket to the
host. `drop_capabilities` gives up every capability for good (bounding set, securebits locked);
`apply_seccomp` refuses the syscalls a training script never needs (keyrings, clock and
hostname changes, modules, mounts and namespaces, io_uring, bpf, perf, ptrace-like reads),
socket families other than IPv4 and IPv6 (pathname unix sockets reach the host), socketpairs
other than streams, sendmsg (descriptors in flight in a socket hide deleted files from the
scratch limit), file notifications (inotify, fanotify, F_NOTIFY: they show when the supervisor
walks the scratch directory), clone with a namespace flag, and setpriority on a whole user. x86_64 and aarch64; elsewhere the filter is reported missing.

Nothing here decides a status. Run: imported by evolve.evaluation.sandbox.harden.
"""

from __future__ import annotations

import ctypes
import os


def _libc():
    return ctypes.CDLL(None, use_errno=True)


_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP, _PR_SET_SECUREBITS, _PR_CAP_AMBIENT = 24, 28, 47
_SECUREBITS_LOCKED_NOROOT = 0x2f      # noroot, no_setuid_fixup, keep_caps: set and locked


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> str | None:
    """Give up every capability for good, even as uid 0: no clock or hostname changes, no
    device nodes, no raising limits, no kernel log. Returns an error or None."""
    libc = _libc()
    libc.prctl(_PR_SET_SECUREBITS, _SECUREBITS_LOCKED_NOROOT, 0, 0, 0)   # fails if not root: fine
    libc.prctl(_PR_CAP_AMBIENT, 4, 0, 0, 0)                               # clear all ambient
    for cap in range(64):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)                        # EINVAL past the last
    header = _CapHeader(0x20080522, 0)                                    # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        return f"capset failed: {os.strerror(ctypes.get_errno())}"
    return None


# x86_64 and aarch64 syscall numbers of what a training script never needs and a genome could
# use to leave its walls: keyrings (state across evaluations), the clock, the hostname, kernel
# modules, namespaces, io_uring (sockets past this filter), bpf, perf, ptrace-like reads, and
# the page-cache probes (mincore, fadvise, readahead, RWF_NOWAIT reads) an adversary used to
# carry bits from one evaluation to the next through a readable file's cached pages, and file
# metadata writes that landlock does not cover (extended attributes, times, owners: an
# adversary carried trained weights between evaluations in xattrs), and sendmsg: a descriptor
# sent over a socket and never received keeps its file's blocks allocated where neither the
# scratch walk nor the processes' descriptors show it (evolve.evaluation.scratch.held_bytes);
# send() and sendto() carry bytes only, and stay. And file notifications (inotify, fanotify,
# and fcntl F_NOTIFY below): a watch on the scratch directory told an adversary when the
# supervisor's walk ran, and it let go of its disk for the few milliseconds of each walk. chmod stays allowed: linkers
# and compilers (torch.compile's C++ path) set modes on what they build; outside the scratch
# directory the read-only mounts of evolve.evaluation.sandbox refuse it where a mount namespace
# exists.
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_DENY = {
    "x86_64": {"add_key": 248, "request_key": 249, "keyctl": 250, "adjtimex": 159,
               "clock_adjtime": 305, "clock_settime": 227, "settimeofday": 164,
               "sethostname": 170, "setdomainname": 171, "mknod": 133, "mknodat": 259,
               "kexec_load": 246, "kexec_file_load": 320, "reboot": 169, "init_module": 175,
               "finit_module": 313, "delete_module": 176, "swapon": 167, "swapoff": 168,
               "acct": 163, "mount": 165, "umount2": 166, "pivot_root": 155, "unshare": 272,
               "setns": 308, "io_uring_setup": 425, "io_uring_enter": 426,
               "io_uring_register": 427, "bpf": 321, "perf_event_open": 298,
               "userfaultfd": 323, "process_vm_readv": 310, "process_vm_writev": 311,
               "ptrace": 101, "ioprio_set": 251, "syslog": 103, "mincore": 27,
               "cachestat": 451, "fadvise64": 221, "readahead": 187, "preadv2": 327,
               "pwritev2": 328, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190,
               "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199,
               "setxattrat": 463, "removexattrat": 466, "utime": 132, "utimes": 235,
               "futimesat": 261, "utimensat": 280, "chown": 92, "fchown": 93, "lchown": 94,
               "fchownat": 260, "sendmsg": 46, "sendmmsg": 307, "inotify_init": 253,
               "inotify_init1": 294, "fanotify_init": 300, "fanotify_mark": 301},
    "aarch64": {"add_key": 217, "request_key": 218, "keyctl": 219, "adjtimex": 171,
                "clock_adjtime": 266, "clock_settime": 112, "settimeofday": 170,
                "sethostname": 161, "setdomainname": 162, "mknodat": 33, "kexec_load": 104,
                "kexec_file_load": 294, "reboot": 142, "init_module": 105, "finit_module": 273,
                "delete_module": 106, "swapon": 224, "swapoff": 225, "acct": 89, "mount": 40,
                "umount2": 39, "pivot_root": 41, "unshare": 97, "setns": 268,
                "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
                "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
                "process_vm_readv": 270, "process_vm_writev": 271, "ptrace": 117,
                "ioprio_set": 30, "syslog": 116, "mincore": 232, "cachestat": 451,
                "fadvise64": 223, "readahead": 213, "preadv2": 286, "pwritev2": 287,
                "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14,
                "lremovexattr": 15, "fremovexattr": 16, "setxattrat": 463,
                "removexattrat": 466, "utimensat": 88, "fchownat": 54, "fchown": 55,
                "sendmsg": 211, "sendmmsg": 269, "inotify_init1": 26, "fanotify_init": 262,
                "fanotify_mark": 263},
}
# Conditional rules: (syscall, numbers per arch): socket families other than IPv4 and IPv6
# (unix, vsock, packet, netlink...), clone with a namespace flag, setpriority on a whole user.
_SOCKET = {"x86_64": 41, "aarch64": 198}
_SOCKETPAIR = {"x86_64": 53, "aarch64": 199}
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = {"x86_64": 435, "aarch64": 435}
_SETPRIORITY = {"x86_64": 141, "aarch64": 140}
_FCNTL = {"x86_64": 72, "aarch64": 25}
_F_NOTIFY = 1026                      # fcntl command: directory change notifications (dnotify)
_CLONE_NEW_ANY = 0x7E020080           # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME
_EPERM, _ENOSYS = 1, 38


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


def seccomp_program(arch: str) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions (see `apply_seccomp`)."""
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000
    nr, arg0 = 0, 16                                   # offsets in struct seccomp_data
    prog = [_bpf(LD, 4), _bpf(JEQ, _AUDIT_ARCH[arch], 1, 0), _bpf(RET, ERRNO | _EPERM),
            _bpf(LD, nr), _bpf(JGE, 0x40000000, 0, 1), _bpf(RET, ERRNO | _EPERM)]   # x32 ABI
    for number in _DENY[arch].values():
        prog += [_bpf(JEQ, number, 0, 1), _bpf(RET, ERRNO | _EPERM)]
    # clone3 cannot be inspected (its flags are in memory): ENOSYS makes libc fall back to clone
    prog += [_bpf(JEQ, _CLONE3[arch], 0, 1), _bpf(RET, ERRNO | _ENOSYS)]
    prog += [_bpf(JEQ, _CLONE[arch], 0, 4), _bpf(LD, arg0), _bpf(JSET, _CLONE_NEW_ANY, 0, 1),
             _bpf(RET, ERRNO | _EPERM), _bpf(LD, nr)]
    prog += [_bpf(JEQ, _SETPRIORITY[arch], 0, 4), _bpf(LD, arg0), _bpf(JEQ, 2, 0, 1),     # PRIO_USER
             _bpf(RET, ERRNO | _EPERM), _bpf(LD, nr)]
    # fcntl(fd, F_NOTIFY, ...): dnotify, the oldest of the file notifications refused above
    arg1 = arg0 + 8
    prog += [_bpf(JEQ, _FCNTL[arch], 0, 4), _bpf(LD, arg1), _bpf(JEQ, _F_NOTIFY, 0, 1),
             _bpf(RET, ERRNO | _EPERM), _bpf(LD, nr)]
    # socket(): IPv4 and IPv6 only (in the genome's network namespace they reach nothing but
    # its own loopback). No AF_UNIX: a pathname socket is a file on the host's filesystem that
    # the network namespace does not cover and landlock cannot refuse to connect to; an
    # adversary reached a listener on the host and carried state across evaluations. The
    # harness channel and multiprocessing pipes come from socketpair(), not socket().
    prog += [_bpf(JEQ, _SOCKET[arch], 0, 5), _bpf(LD, arg0),
             _bpf(JEQ, 2, 2, 0), _bpf(JEQ, 10, 1, 0), _bpf(RET, ERRNO | _EPERM), _bpf(LD, nr)]
    # socketpair(): SOCK_STREAM only (type & 0xF == 1, flags such as SOCK_CLOEXEC aside). An
    # unconnected datagram socket of a pair can sendto() a pathname unix socket on the host:
    # an adversary reached a host listener that way once socket(AF_UNIX) was refused.
    ALU_AND = 0x54
    prog += [_bpf(JEQ, _SOCKETPAIR[arch], 0, 5), _bpf(LD, arg0 + 8), _bpf(ALU_AND, 0xF),
             _bpf(JEQ, 1, 1, 0), _bpf(RET, ERRNO | _EPERM), _bpf(LD, nr)]
    prog.append(_bpf(RET, ALLOW))
    return prog


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def apply_seccomp() -> str | None:
    """Install the filter on this process and everything it starts. Returns an error or None."""
    import platform

    arch = platform.machine()
    if arch not in _DENY:
        return f"seccomp: no syscall table for {arch}"
    prog = seccomp_program(arch)
    filters = (_SockFilter * len(prog))(*[_SockFilter(c, jt, jf, k) for c, jt, jf, k in prog])
    fprog = _SockFprog(len(prog), filters)
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return "prctl(NO_NEW_PRIVS) failed"
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:                # SECCOMP_MODE_FILTER
        return f"seccomp failed: {os.strerror(ctypes.get_errno())}"
    return None
