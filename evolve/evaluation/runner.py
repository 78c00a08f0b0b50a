"""Entry point of the genome's process: contain it, connect the harness, run the genome.

The supervisor starts `python -m evolve.evaluation.runner GENOME.py` with the harness configuration in the
environment variable AUTOEVOLVE_RUNNER (JSON: task constants, the channel's file descriptor, the
sandbox settings). Before a single line of the genome runs, this trusted preamble:

1. sets resource limits (evolve.evaluation.sandbox.apply_rlimits), and with granted cores pins
   the process to them with as many torch threads (the genome may change both; on a cpu clock
   more threads only spend its budget faster);
2. in its own mount namespace, mounts private tmpfs on /tmp and /dev/shm;
3. restricts the filesystem, network and signals with landlock when the kernel has it, then
   drops every capability and installs a seccomp filter (evolve.evaluation.syscalls);
4. connects `evolve.harness` to the supervisor's socket;

and then runs the genome as `__main__` with runpy. If the genome returns without calling
harness.submit, the process exits with code 0 and the supervisor records INVALID. Nothing this
process prints or returns is a measurement.
"""

from __future__ import annotations

import json
import os
import runpy
import sys

PRIVATE_TMP_BYTES = 2 * 2 ** 30     # each of /tmp and /dev/shm (tmpfs pages are memory)


def _reap_as_init() -> None:
    """As PID 1 of a namespace the kernel drops signals the process sends itself (a genome's
    os.kill(os.getpid(), SIGSEGV) would be ignored), so PID 1 stays a tiny trusted waiter: it
    forks the genome, waits for it and exits with its status (128 + signal number for a
    signal). When it exits, the kernel kills everything left in the namespace."""
    pid = os.fork()
    if pid == 0:
        return                                   # the child goes on to run the genome
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def main() -> None:
    config = json.loads(os.environ["AUTOEVOLVE_RUNNER"])
    if os.getpid() == 1:
        _reap_as_init()
    genome = sys.argv[1]
    from evolve.evaluation import mounts, sandbox

    sandbox.apply_rlimits(config.get("address_space_bytes"), int(config["file_size_bytes"]),
                          config.get("nproc"))
    if config.get("threads"):
        from evolve.evaluation.clock import grant_cores

        grant_cores(int(config["threads"]), config.get("cores") or [])
    # Private /tmp and /dev/shm (tmpfs in this evaluation's own mount namespace): writable,
    # since they vanish with it; multiprocessing's semaphores (torch.compile's workers) need it.
    private = mounts.mount_private_tmp(PRIVATE_TMP_BYTES, keep=config.get("read_roots", [])) \
        if config.get("private_tmp") else []
    if config.get("private_tmp"):
        # Everything else read-only: no chmod, xattr or access-time state outside scratch.
        err = mounts.readonly_mounts([os.getcwd(), *private])
        if err:
            print(f"evolve.evaluation.runner: sandbox failed: {err}", file=sys.stderr, flush=True)
            os._exit(70)
    if config.get("landlock"):
        err = sandbox.apply_landlock(read=config["read_roots"], write=[os.getcwd(), *private],
                                     hidden=config.get("hidden", []))
        if err:
            print(f"evolve.evaluation.runner: sandbox failed: {err}", file=sys.stderr, flush=True)
            os._exit(70)
    if config.get("harden"):
        err = sandbox.harden()
        if err:
            print(f"evolve.evaluation.runner: sandbox failed: {err}", file=sys.stderr, flush=True)
            os._exit(70)
    from evolve import harness

    harness._configure(config["harness"], int(config["channel_fd"]))
    sys.argv = [genome]
    sys.path.insert(0, os.path.dirname(os.path.abspath(genome)))
    runpy.run_path(genome, run_name="__main__")


if __name__ == "__main__":
    main()
