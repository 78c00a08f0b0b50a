"""The trusted scorer: val_bpb of a submitted model, computed from its logits by trusted code.

Run by the supervisor as `python -m evolve.evaluation.scorer JOB.json` after the genome's process
tree is dead. It never executes the genome's model itself. It:

1. reads the exported program (model.pt2, copied out of the genome's scratch directory) into
   memory once and refuses archives that would run code while parsed (pickles, symbolic-shape
   expressions, guard code: evolve.evaluation.archive_check, stdlib zipfile and json only;
   this process never parses the graph or the weights with torch);
2. starts the model process (evolve.evaluation.model_host) in its walls and sends it the
   program's bytes: it loads them, refuses any graph with an op outside the allow-list
   (evolve.evaluation.allowlist) before the program has ever run, and from then on receives
   only input tokens, batch by batch; the targets, byte counts and verdict stay here;
3. computes, from the logits that come back, cross-entropy in fp32 with fp64 sums over the
   UTF-8 bytes of the targets: val_bpb = nats / (ln 2 x bytes); targets with zero bytes (BOS)
   are not scored;
4. mixes probe batches among the scored ones (evolve.evaluation.probes: causality with real-text
   suffixes at cuts over every position, row permutation, state) and compares target
   log-probabilities with absolute tolerances; a failed probe is CHEAT.

The job file names: program, eval_rows (uint16 [rows, SEQ_LEN + 1], packed by the supervisor
from its in-memory copy of the validation split), token_bytes (int32 [VOCAB_SIZE]), device,
batch_size, vocab_size, deadline_s. The verdict is one JSON line on this process's original
stdout, a pipe only the supervisor holds (everything else this process prints goes to stderr);
the supervisor accepts it only with exit status 0. This module never raises past main().
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import mmap
import os
import random
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

from evolve.evaluation import model_host, probes, zygote
from evolve.evaluation.archive_check import check_archive

PACKAGE_ROOT = Path(__file__).resolve().parents[2]        # holds evolve/ and kernels/
HOST_ENV_KEEP = ("PATH", "LANG", "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "LD_LIBRARY_PATH",
                 "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TRITON_INTERPRET", "NVIDIA_VISIBLE_DEVICES",
                 "NVIDIA_DRIVER_CAPABILITIES")


class ModelFailure(Exception):
    """The model process failed or broke the protocol; status says how to record it."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


# Set in a scorer forked from the zygote (evolve.evaluation.zygote), which has torch and the
# model process's modules imported: its model process is then forked from it, walled as a cold
# one is, instead of importing them all again.
FORK_HOST = False


class _ForkedHost:
    """A model process forked by this scorer: what ModelProcess uses of a Popen."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        from evolve.evaluation.zygote import wait_polling

        return wait_polling(self, timeout, "model process")


def _fork_host(env: dict, sock_fd: int, memfd: int, log) -> _ForkedHost:
    """Fork the model process from this (single-threaded) scorer: its own session, killed with
    us, the socket and the logits memfd at 3 and 4, stdout and stderr to the log, cwd /, exactly
    `env` (its settings JSON rewritten for those numbers), then the namespaces of a cold start
    (evolve.evaluation.zygote.walled) and model_host.main as PID 1's child."""
    me = os.getpid()
    log_fd = log.fileno() if hasattr(log, "fileno") else os.open(os.devnull, os.O_WRONLY)
    pid = os.fork()
    if pid == 0:
        try:
            zygote.detach(me, {1: log_fd, 2: log_fd, 3: sock_fd, 4: memfd}, "/", env)
            config = json.loads(os.environ[model_host.ENV])
            os.environ[model_host.ENV] = json.dumps({**config, "out_fd": 4})

            def run():
                sys.argv = [model_host.__file__, "3"]
                model_host.main()

            zygote.walled(run)
        finally:
            os._exit(70)
    return _ForkedHost(pid)


class ModelProcess:
    """The scorer's end of one model process (evolve.evaluation.model_host)."""

    def __init__(self, settings: dict, deadline: float = math.inf):
        """Start the model process now (it imports torch while the scorer waits or works).
        `settings`: device, batch_size, seq_len, vocab_size, autocast, landlock, read_roots,
        model_address_space_bytes, host_dir (its temporary directory while it loads),
        model_log (where its stdout and stderr go); threads and cores (granted to it, as to the
        genome) and cpu_clock (time its passes by their CPU seconds per thread)."""
        from evolve.evaluation import sandbox

        self.deadline = deadline
        self.cpu_threads = int(settings.get("threads") or 0) if settings.get("cpu_clock") else 0
        self.cpu_cores = list(settings.get("cores") or [])
        self.vocab = int(settings["vocab_size"])
        self.cuda = str(settings["device"]).startswith("cuda")
        if self.cuda:
            model_host.prepare_pin()        # reads /proc/self/maps: before main() applies landlock
        self.pinned: dict[tuple[int, int], int] = {}     # (slot, bytes) -> address, if pinned
        # Two output slots of the largest logits a batch can have (fp64); pages are only
        # materialised where the model process writes, so fp32 logits use half of each.
        self.slot_bytes = int(settings["batch_size"]) * int(settings["seq_len"]) * self.vocab * 8
        self.memfd = os.memfd_create("autoevolve-logits", os.MFD_CLOEXEC)
        os.ftruncate(self.memfd, 2 * self.slot_bytes)
        self.shared = mmap.mmap(self.memfd, 2 * self.slot_bytes)
        ours, theirs = socket.socketpair()
        env = {k: os.environ[k] for k in HOST_ENV_KEEP if k in os.environ}
        # Why TMPDIR: torch.export.load unpacks through tempfile; it is used only while the
        # program loads, before the model process gives up every file right.
        tmp = Path(settings["host_dir"])
        tmp.mkdir(parents=True, exist_ok=True)
        # Why OMP_WAIT_POLICY: between forward passes the model's idle OpenMP threads would
        # spin on the cores the scorer needs for the previous batch.
        env.update({"OMP_WAIT_POLICY": "PASSIVE", "HOME": "/", "TMPDIR": str(tmp),
                    "PYTHONPATH": str(PACKAGE_ROOT), "PYTHONNOUSERSITE": "1",
                    "PYTHONDONTWRITEBYTECODE": "1", "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1",
                    model_host.ENV: json.dumps({
                        "device": settings["device"], "autocast": settings.get("autocast", ""),
                        "landlock": bool(settings.get("landlock")),
                        "read_roots": settings.get("read_roots", []),
                        "harden": bool(settings.get("harden")),
                        "out_fd": self.memfd, "slot_bytes": self.slot_bytes,
                        "threads": settings.get("threads") or 0,
                        "cores": settings.get("cores") or [],
                        "address_space_bytes": settings.get("model_address_space_bytes")})})
        self.log = open(settings["model_log"], "wb") if settings.get("model_log") else subprocess.DEVNULL
        if FORK_HOST:
            self.proc = _fork_host(env, theirs.fileno(), self.memfd, self.log)
            theirs.close()
            self.sock = ours
            return
        self.proc = subprocess.Popen(
            [*sandbox.namespaces()[0], sys.executable, "-m", "evolve.evaluation.model_host",
             str(theirs.fileno())],
            cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            pass_fds=(theirs.fileno(), self.memfd), start_new_session=True,
            preexec_fn=zygote.killed_with(os.getpid()))
        theirs.close()
        self.sock = ours

    def _timeout(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ModelFailure("timeout", "scoring ran past its time limit")
        self.sock.settimeout(left)

    def _reply(self) -> tuple[bytes, int, int, int, int]:
        self._timeout()
        try:
            head = model_host.recv_exact(self.sock, model_host.REPLY.size)
        except socket.timeout:
            raise ModelFailure("timeout", "the model process took longer than the scoring limit")
        if head is None:
            code = self.proc.poll()
            raise ModelFailure("crash", "the model process died" +
                               (f" (exit {code})" if code is not None else ""))
        tag, code, rows, cols, n = model_host.REPLY.unpack(bytes(head))
        if tag == b"F":
            text = model_host.recv_exact(self.sock, min(n, 1000)) or b""
            raise ModelFailure("invalid", text.decode("utf-8", "replace"))
        return tag, code, rows, cols, n

    def load(self, blob: bytes, weights: tuple[bytes, bytes] | None = None) -> int | None:
        """Send the program (and the weights snapshot that replaces its parameters and
        buffers); the host checks it against the allow-list before it ever runs and answers
        with its parameter count (or a refusal, raised as ModelFailure)."""
        self._timeout()
        head, data = weights if weights is not None else (b"", b"")
        try:
            self.sock.sendall(model_host.PROGRAM.pack(b"P", len(blob)) + blob)
            self.sock.sendall(model_host.PROGRAM.pack(b"W", len(head)) + head
                              + model_host.PROGRAM.pack(b"D", len(data)))
            self.sock.sendall(data)
        except OSError:
            pass        # the host refused the program and closed; its reply says why
        tag, _, _, _, n = self._reply()
        if tag != b"K" or n > 1000:
            raise ModelFailure("crash", "the model process broke the protocol while loading")
        try:
            info = json.loads(bytes(model_host.recv_exact(self.sock, n) or b"{}"))
            self.non_embedding_params = int(info.get("non_embedding_params", info["num_params"]))
            return int(info["num_params"])
        except (ValueError, KeyError, TypeError):
            raise ModelFailure("crash", "the model process broke the protocol while loading")

    def send(self, x, slot: int) -> None:
        """Ask for the logits of input tokens x (uint16 numpy [rows, T]) in output slot 0 or 1."""
        import numpy as np

        rows, cols = x.shape
        self._timeout()
        self.sock.sendall(model_host.REQUEST.pack(b"R", rows, cols, slot)
                          + np.ascontiguousarray(x, dtype="<u2").tobytes())

    def receive(self, shape: tuple[int, int], slot: int):
        """The logits of the request sent for `slot`: (tensor [rows, T, V] viewing the shared
        slot, dtype name). Valid until the slot is asked for again."""
        import torch

        rows, cols = shape
        tag, code, r, c, v = self._reply()
        if tag != b"L" or code >= len(model_host.DTYPES):
            raise ModelFailure("crash", "the model process broke the protocol")
        if (r, c, v) != (rows, cols, self.vocab):
            raise ModelFailure("invalid", f"model returned {(r, c, v)}, expected logits "
                                          f"{(rows, cols, self.vocab)}")
        dtype = getattr(torch, model_host.DTYPES[code])
        nbytes = r * c * v * torch.empty((), dtype=dtype).element_size()
        t = torch.frombuffer(self.shared, dtype=torch.uint8, count=nbytes,
                             offset=slot * self.slot_bytes)
        if self.cuda and (slot, nbytes) not in self.pinned:
            # the copy to the GPU that scores it runs by DMA (see model_host.pin)
            self.pinned[(slot, nbytes)] = t.data_ptr() if model_host.pin(t) else 0
        return t.view(dtype).view(r, c, v), model_host.DTYPES[code]

    def timed_pass(self, x, backward: bool) -> float:
        """Seconds, on this process's clock, for the model process to run one forward (and
        with `backward`, forward + backward) pass of input tokens x (uint16 numpy [rows, T]).
        On a cpu clock: as the genome's budget clock counts (evolve.evaluation.clock), the
        model process's CPU seconds plus the granted cores' idle seconds during the pass, per
        granted core, so that other load does not lower the recorded throughput and a graph
        that leaves cores idle is not timed as if it used them."""
        import numpy as np

        from evolve.evaluation.clock import idle_core_seconds, tree_cpu_seconds

        rows, cols = x.shape
        payload = np.ascontiguousarray(x, dtype="<u2").tobytes()
        self._timeout()
        c0 = tree_cpu_seconds(self.proc.pid) if self.cpu_threads else None
        i0 = idle_core_seconds(self.cpu_cores) if self.cpu_threads else None
        t = time.perf_counter()
        self.sock.sendall(model_host.REQUEST.pack(b"G", rows, cols, int(backward)) + payload)
        tag, _, r, c, _ = self._reply()
        elapsed = time.perf_counter() - t
        if c0 is not None:
            c1 = tree_cpu_seconds(self.proc.pid)
            i1 = idle_core_seconds(self.cpu_cores)
            if c1 is None:
                raise ModelFailure("crash", "the model process died")
            idle = max(0.0, i1 - i0) if i0 is not None and i1 is not None else 0.0
            elapsed = (max(0.0, c1 - c0) + idle) / self.cpu_threads
        if tag != b"D" or (r, c) != (rows, cols):
            raise ModelFailure("crash", "the model process broke the protocol")
        return elapsed

    def close(self) -> None:
        from evolve.evaluation import sandbox

        if self.sock is None:
            return                    # already closed

        try:
            self.sock.sendall(model_host.REQUEST.pack(b"Q", 0, 0, 0))
        except OSError:
            pass
        self.sock.close()
        sandbox.end_child(self.proc, timeout=2)
        if self.log is not subprocess.DEVNULL:
            self.log.close()
        for address in self.pinned.values():
            if address:
                model_host.unpin(address)
        self.pinned.clear()
        try:
            self.shared.close()
        except BufferError:
            pass                      # a tensor still views it; freed with the process
        os.close(self.memfd)
        self.sock = None


# The training speed of the submitted model, measured here (see model_tokens_per_sec).
BACKWARD_FLOOR = 3.0     # forward passes a training pass is charged at least


def model_tokens_per_sec(host: ModelProcess, x) -> float:
    """Tokens per second at which the submitted model can train at the eval shape: rows x T
    tokens over the faster of two training passes (forward, backward of a cross-entropy loss
    to every floating weight, buffers included, and AdamW's work over every element of the
    weights snapshot: model_host's _timed_pass; the first also warms autograd up and allocates
    the moments; noise on a busy machine only ever adds time), timed by this process around
    the model process's work. The genome has no part in it: its process tree is dead.
    Three passes in all: about 2 s for seeds/cpu.py at the CPU task's eval shape.

    x is the row probe's batch (score() passes it): a scored batch drawn after the program was
    fixed, its rows permuted, whose logits were checked against the scored ones. A graph whose
    cost depends on its input therefore cannot know the timed batch in advance, and a cheap
    path on it would have changed the row probe's results. (The timed batch used to be the
    first eval batch, which is the same for every evaluation: an adversary recognised its rows
    by three tokens each and ran a cheap path on it through `cond`; see allowlist.py.)

    It bounds the genome's recorded throughput (the supervisor keeps the smaller of this and
    the tokens the harness handed out per training second), so asking for batches and
    throwing them away does not raise it past what the model trains at. The exported graph is
    the genome's, and can make its backward nearly free (detached weights, weights kept in
    buffers, a gradient path through a zero): a pass is therefore charged at least
    BACKWARD_FLOOR forward passes. Honest models measured 3.4 (baseline.py, shrunk) to 4.8
    (cpu.py) forward passes per training pass on the development machine, so the floor does
    not bind them."""
    first = host.timed_pass(x, backward=True)
    forward = host.timed_pass(x, backward=False)
    second = host.timed_pass(x, backward=True)
    step = max(min(first, second), BACKWARD_FLOOR * forward)
    return x.shape[0] * x.shape[1] / step


def device_is_cpu(job: dict) -> bool:
    return not str(job["device"]).startswith("cuda")


def host_settings(job: dict) -> dict:
    """The model process's settings from a job (in-process use and tests): its temporary
    directory and log live in the job directory."""
    keys = ("device", "batch_size", "seq_len", "vocab_size", "autocast", "landlock", "read_roots",
            "model_address_space_bytes", "model_log", "threads", "cores", "cpu_clock")
    out = {k: job[k] for k in keys if k in job}
    out["host_dir"] = str(Path(job["dir"]) / "host-tmp")
    return out


def score(job: dict, host: "ModelProcess | None" = None) -> dict:
    """Score the job's program; `host` is a model process started earlier (else one is
    started now). The host is closed on every path."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    if device_is_cpu(job):
        # Why: on CPU the model process does the heavy work; idle OpenMP threads of this process
        # spin-wait on the same cores and slowed each of its forward passes ~40x (measured).
        torch.set_num_threads(1)
    t_start = time.monotonic()
    deadline = t_start + float(job.get("deadline_s", 600.0))
    device = job["device"]
    blob = Path(job["program"]).read_bytes()
    if host is None:
        host = ModelProcess(host_settings(job))
    host.deadline = deadline
    num_params = None
    try:
        problem = check_archive(io.BytesIO(blob))
        if problem:
            return {"status": "invalid", "reason": f"submitted model refused: {problem}"}
        rows_all = np.load(job["eval_rows"]).astype(np.int64)
        token_bytes = torch.from_numpy(np.load(job["token_bytes"]).astype(np.int64)).to(device)
        B = int(job["batch_size"])
        x_all = rows_all[:, :-1].astype(np.uint16)
        y_all = torch.from_numpy(rows_all[:, 1:]).to(device)
        n, T = x_all.shape
        # Unpredictable by the genome (the program is fixed before this draw); tests may fix it.
        rng = random.Random(job["probe_seed"]) if "probe_seed" in job else random.SystemRandom()
        plan = probes.plan(n, B, T, rng)
        plan.append(dataclasses.replace(plan[0], kind="state"))
        weights = None
        if job.get("weights"):
            weights = (Path(job["weights_header"]).read_bytes(), Path(job["weights"]).read_bytes())
        num_params = host.load(blob, weights)
        ref = np.full((n, T), np.nan, dtype=np.float32)      # target log-probs of scored rows
        results = []
        nats, nbytes = 0.0, 0
        # One request in flight ahead: the model computes batch i+1 while batch i is scored.
        host.send(probes.inputs(plan[0], x_all), 0)
        for i, req in enumerate(plan):
            if i + 1 < len(plan):
                host.send(probes.inputs(plan[i + 1], x_all), (i + 1) % 2)
            logits, _ = host.receive((B, T), i % 2)
            idx = torch.tensor(req.rows, device=device)
            y = y_all[idx]
            lp = -F.cross_entropy(logits.to(device).float().reshape(-1, logits.shape[-1]),
                                  y.reshape(-1), reduction="none").view(y.shape)
            del logits
            if req.kind == "score":
                w = token_bytes[y]
                batch_nats = -(lp.double() * (w > 0)).sum().item()
                if not math.isfinite(batch_nats):
                    return {"status": "diverged", "num_params": num_params,
                            "reason": "non-finite loss on an eval batch"}
                nats += batch_nats
                nbytes += int(w.sum().item())
                ref[list(req.rows)] = lp.cpu().numpy()
            results.append(lp.cpu().numpy())
        tol = probes.TOLERANCE
        worst = 0.0
        for req, lp in zip(plan[:-1], results[:-1]):
            if req.kind in ("causal", "rows"):
                change = probes.max_change(req, lp, ref)
                worst = max(worst, change)
                reason = probes.verdict(req.kind, change, tol)
                if reason:
                    return {"status": "cheat", "num_params": num_params, "reason": reason}
        change = float(np.nan_to_num(np.abs(results[-1] - results[0]), nan=np.inf).max())
        worst = max(worst, change)
        reason = probes.verdict("state", change, tol)
        if reason:
            return {"status": "invalid", "num_params": num_params, "reason": reason}
        try:
            timed = next(r for r in plan if r.kind == "rows")
            speed = model_tokens_per_sec(host, probes.inputs(timed, x_all))
            speed_problem = None
        except ModelFailure as f:
            if f.status == "timeout":
                raise
            speed, speed_problem = None, f.reason
    except ModelFailure as f:
        return {"status": f.status, "reason": f.reason, "num_params": num_params}
    finally:
        host.close()
    if nbytes <= 0:
        return {"status": "invalid", "reason": "eval set has no scored bytes"}
    bpb = nats / (math.log(2) * nbytes)
    out = {"status": "ok", "val_bpb": bpb, "num_params": num_params,
           "non_embedding_params": getattr(host, "non_embedding_params", num_params),
           "eval_bytes": nbytes,
           "probe_max_change": worst, "probe_rows": sum(len(r.rows) for r in plan if r.kind == "causal"),
           "model_tokens_per_sec": speed,
           "scoring_seconds": time.monotonic() - t_start}
    if speed_problem:
        out["speed_problem"] = speed_problem
    if device.startswith("cuda"):
        out["device_name"] = torch.cuda.get_device_name()
    if not math.isfinite(bpb):
        out.update(status="diverged", reason=f"val_bpb is {bpb}")
    return out


def main() -> None:
    """`python -m evolve.evaluation.scorer SETTINGS_JSON`, then one line on stdin: the job file.

    Started before its job exists (the supervisor starts it when the genome starts, at low CPU
    priority), it starts the model process at once, so both import torch while the genome
    trains; the job arrives on stdin after the genome's process tree is dead."""
    # The verdict channel: the original stdout (a pipe only the supervisor reads). Everything
    # else this process or its libraries print goes to stderr, so exactly one line comes out.
    verdict = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"     # before torch is imported
    host = None
    try:
        import numpy  # noqa: F401  (imported while waiting, with torch)
        import torch  # noqa: F401

        host = ModelProcess(json.loads(sys.argv[1]))
        line = sys.stdin.readline().strip()
        if not line:
            raise RuntimeError("no job was given")
        # Back to normal priority (root only; else it stays): this process, and the model
        # process's whole group (the session it leads: the namespace's PID 1 and the model
        # process itself, which a renice of the leader alone left at 10).
        for which, pid in ((os.PRIO_PROCESS, 0), (os.PRIO_PGRP, host.proc.pid)):
            try:
                os.setpriority(which, pid, 0)
            except OSError:
                pass
        job = json.loads(Path(line).read_text())
        if job.get("landlock"):
            from evolve.evaluation import sandbox
            err = sandbox.apply_landlock(read=job["read_roots"], write=[job["dir"]])
            if err:
                raise RuntimeError(f"sandbox: {err}")
        result = score(job, host)
        host = None
    except MemoryError:
        result = {"status": "oom", "reason": "scorer ran out of memory"}
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        oom = "out of memory" in str(e).lower()
        result = {"status": "oom" if oom else "crash",
                  "reason": f"scoring failed: {type(e).__name__}: {msg}",
                  "traceback": traceback.format_exc()[-2000:]}
    finally:
        if host is not None:
            host.close()
    verdict.write(json.dumps(result) + "\n")
    verdict.flush()


if __name__ == "__main__":
    main()
