"""A template process that genome processes are forked from, with torch already imported.

A fresh Python needs 3-4 s on the 2-core development machine to import torch and torch._dynamo
(which every torch.optim optimizer and torch.export load), once per genome, while the training
budget itself may be a few seconds in tests and 60 s on the CPU task. The zygote imports them
once, and forks one child per evaluation on the supervisor's request. The child builds the
genome's walls exactly as `unshare --pid --fork --kill-child --mount-proc --ipc --net` and
evolve.evaluation.runner do for a cold start: its own session, the evaluation's memory cgroup,
new PID, mount, IPC and network namespaces with a /proc of its own, then (as PID 1 of its
namespace) the runner's rlimits, private tmpfs, read-only mounts, landlock and seccomp filter,
and only then the genome. The supervisor sees the child as it sees `unshare`: a session leader
whose exit status is the genome's (128 + n for signal n), reported by the zygote, which is its
parent.

What the zygote must not give a genome, and why it cannot:
- another genome's state: the zygote never runs genome code, and every genome is forked from
  it, never from another genome; a genome cannot reach the zygote (other PID namespace,
  landlock signal scoping, no ptrace);
- the engine's secrets: the zygote is started with the genome's scrubbed environment (a forked
  child's /proc/self/environ is the zygote's initial environment block);
- free time: the supervisor's start-up allowance for a forked genome covers only its own
  module body (its imports are done), not a cold import.

Used for CPU tasks where the namespaces need no user namespace (root): a forked process must
not inherit a CUDA context, and user namespaces would need the uid maps `unshare` writes.
Elsewhere the supervisor starts genomes cold. Nothing here decides a status.

Run as `python -m evolve.evaluation.zygote FD` (FD: its end of a SOCK_SEQPACKET socket pair).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWNET, _CLONE_NEWPID = 0x20000, 0x08000000, 0x40000000, 0x20000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
_PR_SET_PDEATHSIG = 1
MAX_MESSAGE = 1 << 20          # bytes of one request (a genome's environment and settings)
CHANNEL_FD = 3                 # where the harness channel lands in the child


# -- the zygote process ---------------------------------------------------------------------------
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def walled(entry) -> None:
    """In a fresh child of ours: new mount, IPC, network and PID namespaces, mounts private,
    then fork PID 1 of the new namespace, which mounts its own /proc and runs `entry()`; this
    process waits for it and exits with its status (128 + n for signal n), as `unshare --pid
    --fork --kill-child --mount-proc --ipc --net` would. Never returns."""
    libc = _libc()
    code = 70
    try:
        _check(libc.unshare(_CLONE_NEWNS | _CLONE_NEWIPC | _CLONE_NEWNET | _CLONE_NEWPID),
               "unshare")
        _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
        # Only this process writes to `alive` (never, in fact): the child sees the pipe end once
        # we are gone. getppid() cannot tell it (0 across the namespace either way).
        watch, alive = os.pipe()
        pid = os.fork()
        if pid == 0:                                 # PID 1 of the new namespace
            try:
                os.close(alive)
                _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
                # Killed between the fork and the prctl, the parent sent no signal: nothing
                # would ever kill this genome (a supervisor SIGKILLed as a genome started left
                # one behind, under load).
                if select.select([watch], [], [], 0)[0]:
                    os._exit(70)
                os.close(watch)
                _check(libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                                  None), "mount /proc")
                import numpy

                numpy.random.seed()                  # not the zygote's stream (random reseeds itself)
                entry()
                os._exit(0)
            except SystemExit as e:
                os._exit(_exit_code(e))
            except BaseException:                    # noqa: BLE001 - the child must never return
                traceback.print_exc()                # as Python would: the genome's own error
                sys.stderr.flush()
                os._exit(1)
        os.close(watch)
        _, status = os.waitpid(pid, 0)
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    except BaseException as e:                       # noqa: BLE001 - the child must never return
        _say(e)
    finally:
        os._exit(code)


def _say(e: BaseException) -> None:
    try:
        print(f"evolve.evaluation.runner: sandbox failed: {type(e).__name__}: {e}",
              file=sys.stderr, flush=True)
    except Exception:
        pass


def killed_with(parent: int):
    """A preexec_fn for a child of `parent` (this process's pid, read before the fork): SIGKILLed
    when the thread that started it ends (crash, kill -9), so nothing it starts outlives the
    engine, and gone at once if `parent` died before the signal was armed."""
    def arm() -> None:
        _check(_libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
        if os.getppid() != parent:
            os._exit(70)
    return arm


def detach(parent: int, fds: dict[int, int], cwd: str, env: dict[str, str]) -> None:
    """In a fresh child: its own session, killed with `parent`, descriptors moved to the
    numbers given (target: source; everything else closed), stdin from /dev/null unless given,
    `cwd`, and exactly the environment `env`."""
    os.setsid()
    _check(_libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
    if os.getppid() != parent:                       # the parent died before the prctl
        os._exit(70)
    if 0 not in fds:
        fds = {**fds, 0: os.open(os.devnull, os.O_RDONLY)}
    # Two steps (copies above every target first), so that no target overwrites a source.
    moved = {target: fcntl.fcntl(source, fcntl.F_DUPFD, 64) for target, source in fds.items()}
    for target, tmp in moved.items():
        os.dup2(tmp, target)
    os.closerange(max(moved) + 1, 65536)
    for fd in range(3, max(moved) + 1):
        if fd not in moved:
            try:
                os.close(fd)
            except OSError:
                pass
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)


def _child(request: dict, fds: list[int], zygote: int) -> None:
    """In the forked child: a genome (the runner, walled as a cold start is) or a scorer
    (trusted: its own session at low priority). Never returns."""
    moved_stdio = False
    try:
        for cgroup in request.get("cgroups") or ():
            with open(Path(cgroup) / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))
        if request["kind"] == "scorer":
            stdin, stdout, stderr = fds
            detach(zygote, {0: stdin, 1: stdout, 2: stderr}, request["cwd"], request["env"])
            moved_stdio = True
            os.nice(10)
            from evolve.evaluation import scorer

            scorer.FORK_HOST = True                  # its model process forks from it, walled
            sys.argv = [scorer.__file__, *request["argv"]]
            scorer.main()
            os._exit(0)
        channel, out, err = fds
        detach(zygote, {1: out, 2: err, CHANNEL_FD: channel}, request["cwd"], request["env"])
        moved_stdio = True
        os.environ["AUTOEVOLVE_RUNNER"] = json.dumps(dict(request["config"], channel_fd=CHANNEL_FD))

        def run_genome():
            from evolve.evaluation import runner

            sys.argv = [runner.__file__, request["genome"]]
            runner.main()

        walled(run_genome)
    except SystemExit as e:
        os._exit(_exit_code(e))
    except BaseException as e:                       # noqa: BLE001 - the child must never return
        try:                                         # to its stderr file, moved or not yet
            os.write(2 if moved_stdio else fds[2],
                     f"evolve.evaluation.runner: sandbox failed: {type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
    os._exit(70)


def _exit_code(e: SystemExit) -> int:
    """The status Python itself exits with for an uncaught SystemExit."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    try:
        print(e.code, file=sys.stderr, flush=True)
    except Exception:
        pass
    return 1


def serve(sock: socket.socket) -> None:
    """Fork a child for each request; report each child's exit. Ends when the supervisor does."""
    from evolve.evaluation import sandbox

    me = os.getpid()
    children: set[int] = set()                      # forked and not yet reaped
    sock.send(b'{"ready": true}')
    while True:
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            try:
                message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 3)
            except OSError:
                return
            if not message:
                return                               # the supervisor is gone
            request = json.loads(message)
            if "kill" in request:
                for fd in fds:
                    os.close(fd)
                # Only a child not yet reaped: until then its pid is its own (after, the number
                # may name any process, another evaluation's included).
                if int(request["kill"]) in children:
                    sandbox.kill_session(int(request["kill"]))
                continue
            if len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                sock.send(json.dumps({"id": request.get("id"), "error": "expected 3 fds"}).encode())
                continue
            try:
                pid = os.fork()
            except OSError as e:
                pid, problem = None, str(e)
            if pid == 0:
                sock.close()
                _child(request, fds, me)
            for fd in fds:
                os.close(fd)
            if pid:
                children.add(pid)
            reply = {"id": request["id"], "pid": pid} if pid else {"id": request["id"], "error": problem}
            sock.send(json.dumps(reply).encode())
        while True:
            try:
                ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if ended is None:
                break
            # What is left of its session dies while its pid is still held (a zombie), then it
            # is reaped; a forked genome's own tree is in its PID namespace and is gone already.
            sandbox.kill_session(ended.si_pid)
            pid, status, usage = os.wait4(ended.si_pid, 0)
            children.discard(pid)
            sock.send(json.dumps({"exited": pid, "status": status,
                                  "maxrss_kb": usage.ru_maxrss}).encode())


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    # What every genome imports, once (see the module docstring); never a genome's code.
    import numpy  # noqa: F401
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401
    import torch.export  # noqa: F401
    import torch.nn.functional  # noqa: F401

    from torch._export.serde import serialize  # noqa: F401  (the model process loads with it)

    import kernels  # noqa: F401  (the model process registers the autoevolve:: ops)
    from evolve import harness  # noqa: F401
    from evolve.evaluation import model_host, mounts, runner, sandbox, scorer, syscalls  # noqa: F401

    serve(sock)


# -- the supervisor's end -------------------------------------------------------------------------
class Forked:
    """A genome's process forked by the zygote: what the supervisor needs of a Popen."""

    def __init__(self, zygote: "Zygote", pid: int):
        self.zygote, self.pid = zygote, pid
        self.reaped = False

    def wait4(self, block: bool):
        """(pid, wait status, rusage) once the process ended, else (0, None, None); like
        os.wait4 on a child of ours (the zygote is its parent and reports its exit)."""
        out = self.zygote.wait(self.pid, block)
        self.reaped = self.reaped or bool(out[0])
        return out

    def kill(self) -> None:
        """SIGKILL its session; the zygote does it, and only while the process is unreaped."""
        if not self.reaped:
            self.zygote.kill(self.pid)


def wait_polling(proc, timeout: float | None, what: str) -> int:
    """Popen.wait for a process known only through proc.poll() (ours, or the zygote's child)."""
    end = None if timeout is None else time.monotonic() + timeout
    while proc.poll() is None:
        if end is not None and time.monotonic() > end:
            raise subprocess.TimeoutExpired(what, timeout)
        time.sleep(0.01)
    return proc.returncode


class ForkedPopen:
    """A scorer forked by the zygote, with what evolve.evaluation.verdict uses of a Popen."""

    def __init__(self, child: Forked, stdin, stdout):
        self.child, self.pid, self.stdin, self.stdout = child, child.pid, stdin, stdout
        self.returncode: int | None = None

    def _set(self, status) -> int:
        if os.WIFSIGNALED(status):
            self.returncode = -os.WTERMSIG(status)
        else:
            self.returncode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status, _ = self.child.wait4(block=False)
            if pid:
                self._set(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        return wait_polling(self, timeout, "scorer")

    def kill(self) -> None:
        self.child.kill()

    def communicate(self, input: bytes | None = None, timeout: float | None = None):
        """Write `input`, close stdin, read stdout to its end, wait (as Popen.communicate)."""
        end = None if timeout is None else time.monotonic() + timeout
        try:
            if input:
                self.stdin.write(input)
            self.stdin.close()
        except (OSError, ValueError):
            pass
        chunks = []
        if not self.stdout.closed:
            fd = self.stdout.fileno()
            while True:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired("scorer", timeout)
                readable, _, _ = select.select([fd], [], [], left)
                if not readable:
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
            self.stdout.close()
        self.wait(None if end is None else max(0.0, end - time.monotonic()) + 5)
        return b"".join(chunks), None


class Zygote:
    """The supervisor's handle on one zygote process. Thread-safe."""

    def __init__(self, env: dict[str, str], cwd: str, preexec_fn=None):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "evolve.evaluation.zygote", str(theirs.fileno())],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), start_new_session=True,
            preexec_fn=preexec_fn)
        theirs.close()
        self.sock = ours
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict[int, dict] = {}
        self._exits: dict[int, tuple[int, int]] = {}
        self._next = 0
        self.ready = False
        self.lost = False
        threading.Thread(target=self._read, name="zygote-reader", daemon=True).start()

    def wait_ready(self, timeout: float) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self.ready or self.lost, timeout)
            return self.ready and not self.lost

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self.lost = True
                    self._cond.notify_all()
                    return
                msg = json.loads(data)
                if msg.get("ready"):
                    self.ready = True
                elif "exited" in msg:
                    self._exits[int(msg["exited"])] = (int(msg["status"]), int(msg["maxrss_kb"]))
                else:
                    self._replies[int(msg["id"])] = msg
                self._cond.notify_all()

    def spawn(self, request: dict, fds: tuple[int, int, int], timeout: float = 30.0) -> Forked:
        """Fork a genome's process: request = cwd, env, config (the runner's), genome, cgroup;
        fds = (channel, stdout, stderr). Raises OSError when it cannot."""
        with self._cond:
            self._next += 1
            rid = self._next
        with self._send_lock:
            socket.send_fds(self.sock, [json.dumps({**request, "id": rid}).encode()], list(fds))
        with self._cond:
            if not self._cond.wait_for(lambda: rid in self._replies or self.lost, timeout):
                raise OSError("the zygote did not answer")
            if rid not in self._replies:
                raise OSError("the zygote is gone")
            reply = self._replies.pop(rid)
        if reply.get("error"):
            raise OSError(f"the zygote could not fork: {reply['error']}")
        return Forked(self, int(reply["pid"]))

    def kill(self, pid: int) -> None:
        """Ask the zygote to kill the session of its child `pid` if it has not reaped it."""
        try:
            with self._send_lock:
                self.sock.send(json.dumps({"kill": pid}).encode())
        except OSError:
            pass                        # the zygote is gone, and its children with it

    def wait(self, pid: int, block: bool):
        with self._cond:
            if block:
                self._cond.wait_for(lambda: pid in self._exits or self.lost)
            if pid in self._exits:
                status, maxrss = self._exits.pop(pid)
                return pid, status, SimpleNamespace(ru_maxrss=maxrss)
            if self.lost:
                # The zygote died, and its children with it (PDEATHSIG): a kill, not the genome's.
                return pid, signal.SIGKILL, None
            return 0, None, None

    def spawn_scorer(self, argv: list[str], env: dict[str, str], cwd: str,
                     log: Path) -> "ForkedPopen":
        """Fork a scorer (evolve.evaluation.scorer.main with `argv`): stdin and stdout are pipes
        to us, stderr goes to `log`. Raises OSError when it cannot."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            child = self.spawn({"kind": "scorer", "argv": argv, "env": env, "cwd": cwd},
                               (in_r, out_w, log_fd))
        except OSError:
            for fd in (in_w, out_r):
                os.close(fd)
            raise
        finally:
            for fd in (in_r, out_w, log_fd):
                os.close(fd)
        return ForkedPopen(child, os.fdopen(in_w, "wb"), os.fdopen(out_r, "rb"))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def shared(env: dict[str, str], cwd: str, preexec_fn=None) -> Zygote | None:
    """The zygote of this process for `env` and `cwd`, started (and waited for) on first use
    and shared by every supervisor that asks with the same; a dead one is replaced. None when
    it would not start."""
    key = json.dumps([env, cwd], sort_keys=True)
    with _LOCK:
        z = _ZYGOTES.get(key)
        if z is not None and (z.lost or z.proc.poll() is not None):
            z.close()
            z = None
        if z is None:
            # Started from one long-lived thread: PR_SET_PDEATHSIG fires when the *thread*
            # that started a child ends, and the zygote must live as long as this process.
            z = _STARTER.submit(Zygote, env, cwd, preexec_fn).result()
            if not z.wait_ready(READY_S):
                z.close()
                _ZYGOTES.pop(key, None)
                return None
            _ZYGOTES[key] = z
        return z


READY_S = 120.0                # seconds for the zygote's imports, on a busy machine
_ZYGOTES: dict[str, Zygote] = {}
_LOCK = threading.Lock()
_STARTER = ThreadPoolExecutor(1, thread_name_prefix="zygote-starter")


if __name__ == "__main__":
    main()
