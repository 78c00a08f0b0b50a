"""The harness: the fixed API a genome imports as `from evolve import harness`.

The API is documented once, in program.md ("The harness API"). In short: the constants DEVICE,
SEQ_LEN, VOCAB_SIZE, BOS_ID, BUDGET_S, AUTOCAST; `train_batches(batch_size)` yields (inputs, targets)
int64 tensors [batch_size, SEQ_LEN] on DEVICE until the budget is spent; `progress()` is the
fraction of the budget used; `log(step, loss)` records the training loss; `submit(model)` exports
the model with torch.export at the evaluation shape, runs the exported program once on that
shape (under autocast to AUTOCAST, as the scorer will) so that a model that cannot run fails in
seconds, and ends the process.

This module runs inside the genome's (untrusted) process, so nothing here is relied on for a
score: batches come from the supervisor over a socket (evolve.evaluation.channel), the supervisor keeps the
clock and stops serving batches when the budget is spent, and the exported model is scored by a
separate process (evolve.evaluation.scorer). A genome that tampers with this module only hurts itself.

Importing it outside `python -m evolve eval` (or the engine) exits with a message saying so.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time

from evolve.evaluation import channel

DEVICE: str = "cpu"
SEQ_LEN: int = 0
VOCAB_SIZE: int = 0
BOS_ID: int = 0
BUDGET_S: float = 0.0
EVAL_BATCH_SIZE: int = 0
AUTOCAST: str = ""              # dtype the scorer runs the model under torch.autocast in, or ""

MODEL_FILE = "model.pt2"        # written in the working directory (the scratch directory)
_sock: socket.socket | None = None
_t0: float | None = None        # supervisor's monotonic time at which the budget clock started
_done = False                   # the supervisor said the budget is spent
_pending = 0                    # batch requests whose reply has not been read


def _configure(config: dict, fd: int) -> None:
    """Called once by evolve.evaluation.runner before the genome runs."""
    global DEVICE, SEQ_LEN, VOCAB_SIZE, BOS_ID, BUDGET_S, EVAL_BATCH_SIZE, AUTOCAST, _sock
    DEVICE = config["device"]
    SEQ_LEN = int(config["seq_len"])
    VOCAB_SIZE = int(config["vocab_size"])
    BOS_ID = int(config["bos_id"])
    BUDGET_S = float(config["budget_s"])
    EVAL_BATCH_SIZE = int(config["eval_batch_size"])
    AUTOCAST = str(config.get("autocast") or "")
    _sock = socket.socket(fileno=fd)


def _send(blob: bytes) -> None:
    if _sock is not None:
        try:
            _sock.sendall(blob)
        except OSError:
            pass                # the supervisor is gone or closed the channel; it decides anyway


def progress() -> float:
    """Fraction of the training budget used (0.0 before the first batch, 1.0 when spent)."""
    if _done:
        return 1.0
    if _t0 is None:
        return 0.0
    return min(1.0, max(0.0, (time.monotonic() - _t0) / BUDGET_S))


def _request(rows: int) -> None:
    global _pending
    _send(channel.REQUEST.pack(b"B", rows))
    _pending += 1


def _receive() -> "tuple[bytes, bytearray | None]":
    global _t0, _done, _pending
    header = channel.recv_exact(_sock, channel.REPLY.size)
    _pending = max(0, _pending - 1)
    if header is None:
        return b"E", None
    tag, rows, cols, t0 = channel.REPLY.unpack(bytes(header))
    if tag == b"X":
        raise ValueError(f"harness.train_batches: batch_size must be 1..{channel.MAX_ROWS}")
    _t0 = t0
    if tag != b"D":
        _done = True
        return b"E", None
    payload = channel.recv_exact(_sock, rows * cols * 2)
    if payload is None:
        _done = True
        return b"E", None
    return b"D", payload


def _to_tensors(payload: bytearray, batch_size: int):
    import numpy as np
    import torch

    rows = np.frombuffer(payload, dtype=np.uint16).reshape(batch_size, SEQ_LEN + 1)
    t = torch.from_numpy(rows.astype(np.int64))
    if DEVICE != "cpu":
        t = t.pin_memory().to(DEVICE, non_blocking=True)
    # Contiguous copies (B x T int64, cheap next to a training step), so that a genome's
    # `targets.view(-1)` works as it would on any ordinary loader's tensors.
    return t[:, :-1].contiguous(), t[:, 1:].contiguous()


def train_batches(batch_size: int):
    """Yield (inputs, targets), each int64 [batch_size, SEQ_LEN] on DEVICE, from the training
    split only, until the budget is spent. Every row starts with BOS; documents are packed
    best-fit without padding. The next batch is requested before this one is yielded, so the
    supervisor packs it while the model trains (one batch in flight)."""
    if _sock is None:
        raise RuntimeError("harness is not connected (run the genome with python -m evolve eval)")
    batch_size = int(batch_size)
    if not 1 <= batch_size <= channel.MAX_ROWS:
        raise ValueError(f"harness.train_batches: batch_size must be 1..{channel.MAX_ROWS}")
    if _done:
        return
    _request(batch_size)
    while True:
        tag, payload = _receive()
        if tag != b"D":
            return
        _request(batch_size)
        yield _to_tensors(payload, batch_size)


def log(step: int, loss) -> None:
    """Record the training loss at a step (a float or a 0-d tensor; converting a CUDA tensor
    synchronises, so call it every few steps). A non-finite loss ends the run as diverged."""
    value = float(loss)
    if not math.isfinite(value):
        _send(channel.VALUE.pack(b"N", value))
        print(f"harness.log: loss is {value} at step {step}; ending the run as diverged",
              file=sys.stderr, flush=True)
        _exit(3)
    _send(channel.LOSS.pack(b"L", int(step), value))


def _exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def submit(model) -> None:
    """End training: export `model` with torch.export at [EVAL_BATCH_SIZE, SEQ_LEN] into the
    working directory for the scorer, then end the process. Never returns."""
    import torch

    model = getattr(model, "_orig_mod", model)       # unwrap torch.compile
    if not isinstance(model, torch.nn.Module):
        print(f"harness.submit: expected a torch.nn.Module, got {type(model).__name__}",
              file=sys.stderr, flush=True)
        _exit(4)
    if DEVICE.startswith("cuda"):
        _send(channel.VALUE.pack(b"M", torch.cuda.max_memory_allocated() / 2 ** 20))
        torch.cuda.synchronize()
    while _pending and not _done:   # a loop left early has a batch in flight: read it, or the
        _receive()                  # supervisor, blocked sending it, never reads the weights
    _send_weights(model)
    model.eval()
    example = torch.randint(0, VOCAB_SIZE, (EVAL_BATCH_SIZE, SEQ_LEN), device=DEVICE)
    try:
        with torch.no_grad():
            program = torch.export.export(model, (example,), strict=False)
        torch.export.save(program, MODEL_FILE)
    except Exception as e:  # any failure here is the genome's: report it in one line
        _submit_failed("the model could not be exported with torch.export", e)
    try:
        _run_once(program, example)
    except Exception as e:
        _submit_failed("the exported model failed on an eval-shaped batch"
                       + (f" under autocast to {AUTOCAST}" if AUTOCAST else ""), e)
    _send(channel.VALUE.pack(b"S", 0.0))
    _exit(0)


def _run_once(program, example) -> None:
    """The exported program once on an eval-shaped batch, as the scorer will run it: a graph
    that exports but cannot run (weights of two dtypes outside autocast, a shape only the trace
    accepted) fails here in seconds, rather than in the scorer after the whole budget. A
    convenience for honest genomes: it runs in the genome's process, so nothing relies on it."""
    import contextlib

    import torch

    ctx = torch.autocast(DEVICE.split(":")[0], dtype=getattr(torch, AUTOCAST)) \
        if AUTOCAST else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        logits = program.module()(example)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (
            EVAL_BATCH_SIZE, SEQ_LEN, VOCAB_SIZE):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
        raise ValueError(f"it returned {shape}, expected logits "
                         f"{(EVAL_BATCH_SIZE, SEQ_LEN, VOCAB_SIZE)}")


def _submit_failed(what: str, e: Exception) -> None:
    first = (str(e).strip().splitlines() or [""])[0][:300]
    print(f"harness.submit: {what}: {type(e).__name__}: {first}", file=sys.stderr, flush=True)
    _exit(4)


def _send_weights(model) -> None:
    """The model's parameters and buffers as they are now, first thing in submit: the scorer
    uses these, and the supervisor times their arrival against the end of the budget, so the
    export that follows (seconds) cannot hide more training."""
    import json

    import torch

    header, chunks, seen = [], [], set()
    named = list(model.named_parameters()) + list(model.named_buffers())
    for prefix, module in model.named_modules():       # plain tensor attributes, which
        for key, value in vars(module).items():        # torch.export lifts as constants
            if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter):
                named.append((f"{prefix}.{key}" if prefix else key, value))
    for name, t in named:
        if name in seen or not isinstance(t, torch.Tensor):
            continue
        seen.add(name)
        data = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        header.append([name, str(t.dtype).replace("torch.", ""), list(t.shape)])
        chunks.append(data.numpy().tobytes())
    head = json.dumps(header).encode()
    payload = b"".join(chunks)
    _send(channel.WEIGHTS.pack(b"W", len(head), len(payload)) + head + payload)


def _run_directly() -> bool:
    """True when a genome file was started as a script (python seeds/cpu.py): no supervisor."""
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None) or ""
    # A script has no __spec__; `python -m tool` (pytest, the runner itself) has one.
    return (not os.environ.get("AUTOEVOLVE_RUNNER") and main_file.endswith(".py")
            and getattr(main, "__spec__", None) is None)


if _run_directly():
    print("this file is a genome: evaluate it with  python -m evolve eval "
          f"{sys.argv[0] or 'FILE'}", file=sys.stderr)
    raise SystemExit(2)
