"""Scoring one submitted model: run the trusted scorer process and accept its verdict, or not.

`start_scorer(...)` starts `python -m evolve.evaluation.scorer` when the genome starts (it warms
up: imports, model process), with its stdout on a pipe that only this process holds.
`run_scorer(...)` is called by the supervisor after the genome's process tree is dead. It copies
the genome's model file into a private job directory made only now (read with O_NOFOLLOW and a
regular-file check, so a symlink or FIFO the genome left in its scratch directory is refused,
never followed), writes the eval rows and token bytes beside it, and hands the scorer the job.

`parse_verdict(exit_code, stdout)` is the acceptance rule: a verdict counts only when the scorer
exited 0 and printed exactly one line holding one JSON object with a known status; anything else
(a crash, a kill, garbage, two records) is `crash` with a reason, never `ok`. The scorer is
trusted code, but it parses an untrusted archive and talks to the model process, so its
ending is checked like any other process's.

This module does not build EvalResults or decide statuses beyond that rule; the supervisor does.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np

from evolve.evaluation import sandbox
from evolve.evaluation.result import Status

MAX_VERDICT = 1 << 16        # bytes of scorer stdout read; a verdict is a few hundred


def copy_regular(src: Path, dst: Path, max_bytes: int) -> str | None:
    """Copy src to dst if src is a regular file (not a link, FIFO or device) of at most
    max_bytes. Returns None, or why it was refused."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"{src.name} is a symbolic link, not a regular file"
        return f"cannot open {src.name}: {e.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return f"{src.name} is not a regular file"
        if st.st_size > max_bytes:
            return f"{src.name} is larger than {max_bytes >> 20} MiB"
        with open(dst, "wb") as out:
            while True:
                chunk = os.read(fd, 1 << 22)
                if not chunk:
                    break
                out.write(chunk)
                if out.tell() > max_bytes:
                    return f"{src.name} is larger than {max_bytes >> 20} MiB"
    finally:
        os.close(fd)
    return None


def parse_verdict(exit_code: int | None, stdout: bytes) -> dict:
    """The scorer's record if it ended well, else a crash record saying why."""
    if exit_code != 0:
        how = f"signal {-exit_code}" if exit_code is not None and exit_code < 0 else f"exit {exit_code}"
        return {"status": "crash", "reason": f"scorer ended with {how} and no accepted verdict"}
    lines = stdout.decode("utf-8", "replace").strip().splitlines()
    if len(lines) != 1:
        return {"status": "crash", "reason": f"scorer printed {len(lines)} records, expected one"}
    try:
        record = json.loads(lines[0])
    except ValueError:
        return {"status": "crash", "reason": "scorer printed a malformed record"}
    if not isinstance(record, dict) or record.get("status") not in {s.value for s in Status}:
        return {"status": "crash", "reason": "scorer printed a record without a known status"}
    return record


def start_scorer(settings: dict, env: dict[str, str], log: Path, preexec_fn=None,
                 zygote=None) -> subprocess.Popen:
    """Start a scorer before its job exists (evolve.evaluation.scorer.main): it and its model
    process import torch while the genome trains (or, forked from `zygote`, have it already,
    evolve.evaluation.zygote). Low CPU priority (nice 10) so that warming up does not take
    cores from a training genome; the scorer restores it when its job comes."""
    if zygote is not None:
        try:
            return zygote.spawn_scorer([json.dumps(settings)], env, str(log.parent), log)
        except OSError:
            pass                            # the zygote failed us: start this one cold

    def prepare():
        os.nice(10)
        if preexec_fn is not None:
            preexec_fn()

    with open(log, "wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "evolve.evaluation.scorer", json.dumps(settings)],
            cwd=log.parent, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=f,
            start_new_session=True, preexec_fn=prepare)


def run_scorer(p: subprocess.Popen, model: Path, jobdir: Path, *, eval_rows: np.ndarray,
               token_bytes: np.ndarray, task, landlock: bool, max_model_bytes: int,
               log: Path) -> dict:
    """Score `model` (the genome's file) with the started scorer `p`, in `jobdir` (private,
    made after the genome's tree died). Returns the accepted record or a crash/timeout one."""
    problem = copy_regular(model, jobdir / "model.pt2", max_model_bytes)
    if problem:
        return {"status": "invalid", "reason": f"submitted model refused: {problem}"}
    np.save(jobdir / "eval_rows.npy", eval_rows)
    np.save(jobdir / "token_bytes.npy", token_bytes)
    job = {"program": str(jobdir / "model.pt2"), "eval_rows": str(jobdir / "eval_rows.npy"),
           "token_bytes": str(jobdir / "token_bytes.npy"), "device": task.device,
           "weights_header": str(jobdir / "weights.json"), "weights": str(jobdir / "weights.bin"),
           "batch_size": task.eval_batch_size, "vocab_size": task.vocab_size,
           "seq_len": task.seq_len, "autocast": task.autocast,
           # Why: the scorer stops itself (a timeout record) a little before we kill it.
           "deadline_s": max(1.0, task.score_s - 5.0),
           "dir": str(jobdir), "landlock": landlock,
           "read_roots": list(sandbox.SYSTEM_READ) + sandbox.python_read_roots()}
    (jobdir / "job.json").write_text(json.dumps(job))
    try:
        out, _ = p.communicate(input=(str(jobdir / "job.json") + "\n").encode(),
                               timeout=task.score_s)
    except subprocess.TimeoutExpired:
        _kill(p)
        p.communicate()
        return {"status": "timeout", "reason": f"scoring took longer than {task.score_s:g} s"}
    finally:
        _kill(p)
    record = parse_verdict(p.returncode, out[:MAX_VERDICT])
    if record["status"] == "crash" and p.returncode != 0:
        tail = _last_line(log)
        if tail:
            record["reason"] += f": {tail}"
    return record


def discard(p: subprocess.Popen | None) -> None:
    """End a started scorer that will not be used (and its model process)."""
    if p is None or p.poll() is not None:
        return
    for stream in (p.stdin, p.stdout):
        try:
            stream.close()
        except OSError:
            pass
    _kill(p)
    p.wait()


def _kill(p) -> None:
    """SIGKILL the scorer's session, only while its pid is its own: a started Popen not yet
    reaped (its returncode unset), or the zygote's child (the zygote checks)."""
    if not isinstance(p, subprocess.Popen):
        p.kill()
    elif p.returncode is None:
        sandbox.kill_session(p.pid)


def _last_line(path: Path, max_bytes: int = 4096) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - max_bytes))
        lines = f.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:200] if lines else ""
